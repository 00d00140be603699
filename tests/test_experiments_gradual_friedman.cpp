// sprig experiment gradual-vs-instant and friedman end to end with tiny settings: the MLflow
// local store (one parent run, nested children with params and stepped metrics), the HTML
// report with its charts, and bad flags giving one-line errors before anything is written.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cli_test_util.h"
#include "tests/mlruns_test_util.h"

namespace fs = std::filesystem;
using sprig::testing::count_lines;
using sprig::testing::last_line;
using sprig::testing::load_runs;
using sprig::testing::Result;
using sprig::testing::run;
using Run = sprig::testing::StoredRun;
using sprig::testing::read_text;

namespace {

fs::path temp_dir() {
  return sprig::testing::temp_dir("test_experiments_gradual_friedman");
}

nlohmann::json chart(const nlohmann::json& charts, const std::string& id) {
  for (const auto& c : charts["charts"])
    if (c["id"] == id) return c;
  FAIL("no chart " << id);
  return {};
}

// Renders the report in headless Chromium (tests/report_check.py): every chart drawn, no text
// outside its chart, no console errors. Exit 2 means the checker cannot run here (no Chromium
// or websocket-client), which is reported rather than failed.
void check_rendering(const fs::path& html) {
  std::string cmd = "python3 " SPRIG_SOURCE_DIR "/tests/report_check.py " + html.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 2) {
    MESSAGE("report_check.py could not run: " << out);
    return;
  }
  CHECK_MESSAGE(code == 0, out);
}

// Expects a one-line error that names `what`, a non-zero exit and no local store written.
void expect_flag_error(const std::string& args, const std::string& what, const fs::path& store) {
  Result r = run(args + " --local-store " + store.string());
  CAPTURE(args);
  CAPTURE(r.out);
  CHECK(r.code != 0);
  CHECK(count_lines(r.out) == 1);
  CHECK(r.out.find(what) != std::string::npos);
  CHECK(!fs::exists(store));
}

}  // namespace

TEST_CASE("gradual-vs-instant: parent and child runs, stepped metrics, report with charts") {
  fs::path dir = temp_dir() / "gvi";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "gvi.html";
  Result r =
      run("experiment gradual-vs-instant --sparsities 0.5,0.9 --steps 1,2 --seeds 2 --epochs 1 "
          "--pretrain-epochs 1 --train-samples 600 --test-samples 300 --eval-samples 100 "
          "--batch-size 50 --threads 2 --local-store " +
          store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());
  CHECK(r.out.find("At 90% sparsity") != std::string::npos);

  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-gradual-vs-instant", parent, children);
  CHECK(parent.param("sparsities") == "0.5,0.9");
  CHECK(parent.param("steps") == "1,2");
  CHECK(parent.param("train_samples") == "600");
  CHECK(parent.metric("dense_test_accuracy").size() == 2);
  // Parent summaries: one point per sparsity, step = sparsity x 1000.
  auto mean1 = parent.metric("mean_test_accuracy_steps_1");
  REQUIRE(mean1.size() == 2);
  CHECK(mean1[0].step == 500);
  CHECK(mean1[1].step == 900);
  CHECK(fs::exists(parent.dir / "artifacts" / "gvi.html"));

  REQUIRE(children.size() == 8);  // 2 sparsities x 2 step counts x 2 seeds
  std::map<std::string, int> cells;
  for (const Run& c : children) {
    CAPTURE(c.id);
    double s = std::stod(c.param("sparsity"));
    int k = std::stoi(c.param("steps"));
    cells[c.param("sparsity") + "/" + c.param("steps")]++;
    CHECK(c.param("variant") == (k == 1 ? "instant" : "gradual"));
    // One point per pruning step, steps 1..k, with the cumulative targets.
    auto target = c.metric("target_sparsity");
    auto pruned = c.metric("pruned_accuracy");
    auto trained = c.metric("trained_accuracy");
    REQUIRE(target.size() == size_t(k));
    REQUIRE(pruned.size() == size_t(k));
    REQUIRE(trained.size() == size_t(k));
    for (int j = 0; j < k; ++j) {
      CHECK(target[j].step == j + 1);
      CHECK(pruned[j].step == j + 1);
      CHECK(target[j].value ==
            doctest::Approx(1.0 - std::pow(1.0 - s, double(j + 1) / k)).epsilon(1e-6));
    }
    // Global magnitude pruning reaches the target over the weights; biases stay dense.
    double sparsity = c.last("final_model_sparsity");
    CHECK(sparsity <= s);
    CHECK(sparsity > s - 0.01);
    double acc = c.last("test_accuracy");
    CHECK(acc > 0.3);  // well above chance after a short training
    CHECK(acc <= 1.0);
    CHECK(c.metric("train_loss").size() == 1);
    CHECK(c.metric("train_loss")[0].step == 1);
  }
  CHECK(cells.size() == 4);
  for (auto& [cell, n] : cells) CHECK_MESSAGE(n == 2, cell);

  REQUIRE(fs::exists(html));
  std::string page = read_text(html);
  CHECK(page.find("id=\"chart-accuracy\"") != std::string::npos);
  CHECK(page.find("id=\"chart-gain\"") != std::string::npos);
  CHECK(page.find("Finding") != std::string::npos);
  auto charts = nlohmann::json::parse(read_text(html.string() + ".charts.json"));
  auto acc = chart(charts, "accuracy");
  REQUIRE(acc["series"].size() == 2);
  CHECK(acc["series"][0]["name"] == "1 step (instant)");
  CHECK(acc["series"][1]["name"] == "2 steps");
  for (const auto& s : acc["series"]) CHECK(s["points"] == 2);
  auto gain = chart(charts, "gain");
  REQUIRE(gain["series"].size() == 2);
  CHECK(gain["series"][0]["error_bars"] == 0);  // instant against itself: 0 +- 0
  CHECK(gain["series"][1]["points"] == 2);
  check_rendering(html);
  fs::remove_all(dir);
  std::error_code ec;
  fs::remove(dir.parent_path(), ec);  // when the other cases are done too
}

TEST_CASE("friedman: three variants, loss curves, sizes, report with charts") {
  fs::path dir = temp_dir() / "friedman";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "friedman.html";
  Result r =
      run("experiment friedman --samples 600 --epochs 6 --patience 2 --begin-step 5 --end-step 25 "
          "--frequency 5 --threads 2 --local-store " +
          store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());

  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-friedman", parent, children);
  CHECK(parent.param("spec") == "linear(128) relu linear(1) relu");
  REQUIRE(children.size() == 3);
  std::map<std::string, Run> by;
  for (const Run& c : children) by[c.param("variant")] = c;
  REQUIRE(by.count("unpruned"));
  REQUIRE(by.count("whole model pruned"));
  REQUIRE(by.count("first Dense layer pruned"));
  CHECK(by["unpruned"].param("pruned_weights") == "none");
  CHECK(by["whole model pruned"].param("pruned_weights") == "0.weight,2.weight");
  CHECK(by["first Dense layer pruned"].param("pruned_weights") == "0.weight");
  CHECK(by["whole model pruned"].param("final_sparsity") == "0.8");
  CHECK(by["whole model pruned"].param("begin_step") == "5");

  for (auto& [name, c] : by) {
    CAPTURE(name);
    // One training and one validation point per epoch run, steps 1, 2, ...
    auto train = c.metric("train_mse"), val = c.metric("val_mse");
    REQUIRE(!train.empty());
    CHECK(train.size() <= 6);
    CHECK(val.size() == train.size());
    for (size_t i = 0; i < train.size(); ++i) CHECK(train[i].step == int64_t(i) + 1);
    CHECK(c.last("epochs_trained") == double(train.size()));
    double mse = c.last("test_mse");
    CHECK(std::isfinite(mse));
    CHECK(mse > 0.0);
    // The packed model predicts what the trained one does.
    CHECK(c.last("packed_test_mse") == doctest::Approx(mse).epsilon(1e-4));
    // 10 -> 128 -> 1 with biases: 1537 float32 parameters whatever the sparsity.
    CHECK(c.last("size_float32_bytes") == 1537 * 4);
    CHECK(c.last("size_gzip_bytes") > 0);
    CHECK(c.last("size_packed_bytes") > 0);
    CHECK(fs::exists(c.dir / "artifacts"));
  }
  // Pruned kernels reach the schedule's final sparsity (it ends at step 25 of 66).
  CHECK(by["whole model pruned"].last("final_pruned_sparsity") ==
        doctest::Approx(0.8).epsilon(0.01));
  CHECK(by["first Dense layer pruned"].last("final_pruned_sparsity") ==
        doctest::Approx(0.8).epsilon(0.01));
  auto sp = by["whole model pruned"].metric("pruned_sparsity");
  REQUIRE(!sp.empty());
  CHECK(sp.front().value < 0.8);  // gradual: not at the target after the first epoch
  // Zeros compress, and the packed sparse file holds 80% fewer weights.
  double gz_dense = by["unpruned"].last("size_gzip_bytes");
  CHECK(by["whole model pruned"].last("size_gzip_bytes") < 0.7 * gz_dense);
  CHECK(by["whole model pruned"].last("size_packed_bytes") <
        0.6 * by["unpruned"].last("size_packed_bytes"));

  REQUIRE(fs::exists(html));
  auto charts = nlohmann::json::parse(read_text(html.string() + ".charts.json"));
  auto curves = chart(charts, "loss-curves");
  CHECK(curves["kind"] == "line");
  CHECK(curves["series"].size() == 6);
  CHECK(curves["series"][0]["name"] == "unpruned train");
  CHECK(curves["series"][1]["name"] == "unpruned validation");
  CHECK(chart(charts, "sparsity")["series"].size() == 2);
  auto mse = chart(charts, "test-mse");
  CHECK(mse["kind"] == "bar");
  REQUIRE(mse["series"].size() == 2);
  for (const auto& s : mse["series"]) CHECK(s["points"] == 3);
  auto size = chart(charts, "size");
  REQUIRE(size["series"].size() == 3);
  for (const auto& s : size["series"]) CHECK(s["points"] == 3);
  std::string page = read_text(html);
  for (const char* id : {"chart-loss-curves", "chart-test-mse", "chart-size"})
    CHECK(page.find(std::string("id=\"") + id + "\"") != std::string::npos);
  check_rendering(html);
  fs::remove_all(dir);
  std::error_code ec;
  fs::remove(dir.parent_path(), ec);  // when the other cases are done too
}

TEST_CASE("gradual-vs-instant and friedman: bad flags are one-line errors, nothing written") {
  fs::path store = temp_dir() / "bad" / "mlruns";
  fs::remove_all(store.parent_path());
  const std::string gvi = "experiment gradual-vs-instant --train-samples 100 ";
  expect_flag_error(gvi + "--sparsities 0.5,1.0", "--sparsities", store);
  expect_flag_error(gvi + "--sparsities -0.1", "--sparsities", store);
  expect_flag_error(gvi + "--sparsities 0.5,0.5", "--sparsities lists 0.5 twice", store);
  expect_flag_error(gvi + "--steps 0", "--steps", store);
  expect_flag_error(gvi + "--steps 2,2", "--steps lists 2 twice", store);
  expect_flag_error(gvi + "--seeds 0", "--seeds", store);
  expect_flag_error(gvi + "--epochs 0", "--epochs", store);
  expect_flag_error(gvi + "--dataset friedman1", "friedman1", store);
  // 100 samples in batches of 64 give 2 optimizer steps: too few for 8 pruning steps.
  expect_flag_error(gvi + "--steps 1,8 --epochs 1", "--steps", store);

  const std::string fr = "experiment friedman --samples 300 ";
  expect_flag_error(fr + "--final-sparsity 1", "--final-sparsity", store);
  expect_flag_error(fr + "--epochs 0", "--epochs", store);
  expect_flag_error(fr + "--epochs 5,6", "--epochs takes one value or three", store);
  expect_flag_error(fr + "--patience 0", "--patience", store);
  expect_flag_error(fr + "--initial-sparsity 0.9 --final-sparsity 0.5", "initial", store);
  expect_flag_error(fr + "--begin-step 30 --end-step 30", "--end-step", store);
  // 201 training samples: 6 batches of 32 per epoch, 600 steps in 100 epochs.
  expect_flag_error(fr + "--end-step 100000", "--end-step 100000", store);
  expect_flag_error(fr + "--spec 'linear(8) relu linear(3)'", "one output", store);
  expect_flag_error(fr + "--dataset fashion-mnist", "--dataset", store);
  expect_flag_error(fr + "--spec 'linear(4) bogus'", "bogus", store);
  fs::remove_all(store.parent_path());
  std::error_code ec;
  fs::remove(store.parent_path().parent_path(), ec);
}
