// sprig experiment iterative, l1-vs-fpgm and taylor end to end with tiny settings: the MLflow
// local store (a parent run and nested children with params, stepped metrics and artifacts),
// the HTML report with its charts, the tables on stdout, and bad flags giving one-line errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cli_test_util.h"
#include "tests/mlruns_test_util.h"
#include "tests/sanitized.h"

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
  return sprig::testing::temp_dir("test_experiments");
}

// Each named chart is in the page, with `series` series in the sidecar, each with points.
void check_charts(const fs::path& html, const std::vector<std::pair<std::string, int>>& charts) {
  REQUIRE(fs::exists(html));
  std::string page = read_text(html);
  auto sidecar = nlohmann::json::parse(read_text(html.string() + ".charts.json"));
  for (auto& [id, series] : charts) {
    CAPTURE(id);
    CHECK(page.find("id=\"chart-" + id + "\"") != std::string::npos);
    bool found = false;
    for (const auto& c : sidecar["charts"])
      if (c["id"] == id) {
        found = true;
        CHECK(c["series"].size() == size_t(series));
        for (const auto& s : c["series"]) CHECK(s["points"].get<int>() > 0);
      }
    CHECK(found);
  }
}

// Under ASan + UBSan (30-40x slower kernels) a quarter of the samples: no check here depends on
// how many, only on the flags' echo (kTrainSamples) and the runs' shapes.
constexpr int kTrainSamples = sprig::testing::kSanitized ? 250 : 1000;
constexpr int kTestSamples = sprig::testing::kSanitized ? 200 : 500;
const std::string kQuick = " --train-samples " + std::to_string(kTrainSamples) +
                           " --test-samples " + std::to_string(kTestSamples) + " --threads 2";

}  // namespace

TEST_CASE("experiment --help lists the experiments; each has --help") {
  Result r = run("experiment --help");
  CHECK(r.code == 0);
  for (const char* name : {"iterative", "l1-vs-fpgm", "taylor", "gradual-vs-instant", "friedman",
                           "pipeline", "prune-quantize"}) {
    CAPTURE(name);
    CHECK(r.out.find(name) != std::string::npos);
    Result h = run(std::string("experiment ") + name + " --help");
    CHECK(h.code == 0);
    CHECK(h.out.find("--local-store") != std::string::npos);
    CHECK(h.out.find("--train-samples") != std::string::npos);
  }
  CHECK(run("experiment iterative --help").out.find("--total-trials") != std::string::npos);
}

TEST_CASE("iterative: base model as parent run, one child run per trial, report with charts") {
  fs::path dir = temp_dir() / "iterative";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "iterative.html";
  Result r = run("experiment iterative --total-trials 2 --initial-trials 1 --max-epochs 1 " +
                 std::string("--prune-iterations 1") + kQuick + " --local-store " + store.string() +
                 " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());
  CHECK(r.out.find("trial 2/2") != std::string::npos);
  CHECK(r.out.find("Trials (objective: test_accuracy)") != std::string::npos);

  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-iterative", parent, children);
  CHECK(parent.param("model") == "flatten linear(300) relu linear(100) relu linear(10)");
  CHECK(parent.param("train_samples") == std::to_string(kTrainSamples));
  CHECK(parent.param("total_trials") == "2");
  auto acc = parent.metric("test_accuracy");
  REQUIRE(acc.size() == 1);  // one point per base training epoch
  CHECK(acc[0].step == 1);
  CHECK(acc[0].value > 0.3);
  CHECK(parent.metric("train_loss").size() == 1);
  CHECK(parent.artifact("summary.txt"));
  CHECK(read_text(parent.dir / "artifacts" / "summary.txt").find("266,610") != std::string::npos);
  CHECK(parent.artifact("model/base.safetensors"));
  CHECK(parent.artifact("iterative.html"));
  CHECK(parent.status() == "3");  // FINISHED

  REQUIRE(children.size() == 2);
  double best = -1.0;
  for (const Run& c : children) {
    CAPTURE(c.id);
    double amount = std::stod(c.param("amount"));
    CHECK(amount >= 0.1);
    CHECK(amount <= 0.99);
    CHECK(c.param("method") == "magnitude");
    CHECK(c.param("scope") == "global");
    // Global magnitude pruning of the weights to the amount; the 410 biases stay.
    double sparsity = c.last("sparsity");
    CHECK(sparsity == doctest::Approx(amount * (266200.0 / 266610.0)).epsilon(0.001));
    double a = c.last("test_accuracy");
    CHECK(a > 0.1);
    CHECK(a <= 1.0);
    CHECK(c.last("objective") == doctest::Approx(a));
    auto ft = c.metric("finetune_test_accuracy");
    REQUIRE(ft.size() == 1);
    CHECK(ft[0].step == 1);
    CHECK(c.metric("step_sparsity").size() == 1);
    CHECK(c.artifact("summary.txt"));
    CHECK(c.status() == "3");
    best = std::max(best, a);
  }
  CHECK(parent.last("best_test_accuracy") == doctest::Approx(best));
  check_charts(html, {{"accuracy-vs-sparsity", 3},
                      {"bo-trace", 2},
                      {"base-curves", 1},
                      {"base-loss", 1},
                      {"best-layer-sparsity", 1}});
}

TEST_CASE("iterative: sparsity objective with an accuracy floor, two pruning steps") {
  fs::path dir = temp_dir() / "iterative-sparsity";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "r.html";
  Result r =
      run("experiment iterative --total-trials 2 --initial-trials 2 --max-epochs 1 "
          "--prune-iterations 2 --objective sparsity --max-accuracy-drop 0.05 --experiment-name "
          "sparse-search" +
          std::string(kQuick) + " --local-store " + store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());
  Run parent;
  std::vector<Run> children;
  load_runs(store, "sparse-search", parent, children);
  CHECK(parent.param("max_accuracy_drop") == "0.0500");
  double base = parent.last("test_accuracy");
  REQUIRE(children.size() == 2);
  for (const Run& c : children) {
    double s = c.last("sparsity"), a = c.last("test_accuracy"), y = c.last("objective");
    bool feasible = a >= base - 0.05;
    CHECK(c.tag("feasible") == (feasible ? "true" : "false"));
    if (feasible)
      CHECK(y == doctest::Approx(s));
    else
      CHECK(y < 0.0);
    CHECK(c.metric("step_sparsity").size() == 2);
    // 1 epoch over 2 steps: the first step is fine-tuned, the second is not.
    CHECK(c.metric("finetune_test_accuracy").size() == 1);
  }
}

TEST_CASE("prune-quantize: dense, pruned and pruned + int8 runs, one table, report with charts") {
  fs::path dir = temp_dir() / "pq";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "pq.html";
  Result r =
      run("experiment prune-quantize --base-epochs 1 --finetune-epochs 1 --calibrate 200 "
          "--qat-epochs 1 --batches 1,4 --repeats 2" +
          std::string(kQuick) + " --local-store " + store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());
  for (const char* row : {"dense float", "pruned float", "pruned + int8 (QAT)", "ms at batch 4"})
    CHECK_MESSAGE(r.out.find(row) != std::string::npos, row);
  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-prune-quantize", parent, children);
  CHECK(parent.param("amount") == "0.9000");
  CHECK(parent.last("nonzero") == 126698);
  REQUIRE(children.size() == 2);
  const Run& pruned =
      children[0].param("formats").find("int8") == std::string::npos ? children[0] : children[1];
  const Run& int8 = &pruned == &children[0] ? children[1] : children[0];
  CHECK(int8.param("formats").find("int8 ") != std::string::npos);
  CHECK(int8.metric("qat_test_accuracy").size() == 1);
  // 90% pruned: at most a tenth of the weights stay (biases and rounding aside). A kept weight
  // takes 3 bytes in int8 (value, 16-bit column) against 6 in float CSR; biases, row pointers
  // and the per-channel scales keep the int8 file a little above half the float one.
  CHECK(pruned.last("nonzero") <= 0.1 * 126698 + 200);
  CHECK(int8.last("nonzero") <= pruned.last("nonzero"));
  CHECK(int8.last("file_bytes") <= 0.55 * pruned.last("file_bytes"));
  CHECK(int8.last("file_bytes") <= parent.last("file_bytes") / 6);
  for (const Run* run : std::vector<const Run*>{&parent, &pruned, &int8}) {
    CHECK(run->last("ms_batch_1") > 0);
    CHECK(run->last("ms_batch_4") > 0);
    CHECK(run->last("test_accuracy") > 0.1);
  }
  check_charts(html, {{"accuracy", 1}, {"size", 1}, {"latency", 2}});
}

TEST_CASE("l1-vs-fpgm: one child per method and amount, shrunk specs, report with charts") {
  fs::path dir = temp_dir() / "l1fpgm";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "l1.html";
  Result r =
      run("experiment l1-vs-fpgm --base-epochs 1 --finetune-epochs 1 --amounts 0.5" +
          std::string(kQuick) + " --local-store " + store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());
  // The table, with seed 001's shapes: half the filters of each conv layer.
  CHECK(r.out.find("126,698") != std::string::npos);
  CHECK(r.out.find("conv(4,3,pad=1) relu conv(8,3,pad=1) relu flatten linear(10)") !=
        std::string::npos);
  CHECK(r.out.find("63,066") != std::string::npos);
  CHECK(r.out.find("642,890") != std::string::npos);

  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-l1-vs-fpgm", parent, children);
  CHECK(parent.last("params") == 126698);
  CHECK(parent.metric("epoch_seconds").size() == 1);
  REQUIRE(children.size() == 2);
  std::vector<std::string> methods;
  for (const Run& c : children) {
    methods.push_back(c.param("method"));
    CHECK(c.param("amount") == "0.5000");
    CHECK(c.param("spec_after") == "conv(4,3,pad=1) relu conv(8,3,pad=1) relu flatten linear(10)");
    CHECK(c.last("params") == 63066);
    CHECK(c.last("flops") == 642890);
    auto ft = c.metric("finetune_test_accuracy");
    REQUIRE(ft.size() == 2);  // just pruned (step 0) and after the fine-tuning epoch
    CHECK(ft[0].step == 0);
    CHECK(ft[1].step == 1);
    CHECK(c.last("test_accuracy") == doctest::Approx(ft[1].value));
    CHECK(c.artifact("summary.txt"));
  }
  std::sort(methods.begin(), methods.end());
  CHECK(methods == std::vector<std::string>{"fpgm", "l1"});
  check_charts(html, {{"accuracy", 1}, {"size", 2}, {"epoch-time", 1}, {"finetune-curves", 3}});
}

TEST_CASE("l1-vs-fpgm on resnet20: dependency groups shrink blocks and the residual stream") {
  fs::path dir = temp_dir() / "l1fpgm_resnet";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "l1.html";
  Result r = run(
      "experiment l1-vs-fpgm --model resnet20 --batch-size 32 --base-epochs 1 --finetune-epochs 1 "
      "--methods l1 --amounts 0.25 --train-samples 64 --test-samples 32 --threads 2 "
      "--local-store " +
      store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  // Tables show a ResNet by its layers' widths: the stem and each block's two convs.
  CHECK(r.out.find("widths 16/16/16/16/16/16/16/32/32/32/32/32/32/64/64/64/64/64/64/10") !=
        std::string::npos);
  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-l1-vs-fpgm", parent, children);
  REQUIRE(children.size() == 1);
  const Run& c = children[0];
  // A quarter of every group: 4 of each stage-1 block's 16 inner channels, 16 of the stream's 64.
  CHECK(c.param("spec_after").find("res[conv1:conv(12,3,pad=1,bias=0)") != std::string::npos);
  CHECK(c.param("spec_after").find("shortcut(") != std::string::npos);
  CHECK(c.last("params") < parent.last("params"));
  CHECK(c.last("flops") < 0.75 * parent.last("flops"));
}

TEST_CASE("taylor: from a --base checkpoint, summaries before and after, seed 002's counts") {
  fs::path dir = temp_dir() / "taylor";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::path store = dir / "mlruns", html = dir / "t.html", ck = dir / "cnn2.safetensors";
  Result t = run("train --model cnn2 --epochs 1 --limit-train " + std::to_string(kTrainSamples) +
                 " --limit-test " + std::to_string(kTestSamples) + " --threads 2 --quiet --out " +
                 ck.string());
  REQUIRE_MESSAGE(t.code == 0, t.out);
  Result r = run("experiment taylor --base " + ck.string() + " --finetune-epochs 2" + kQuick +
                 " --local-store " + store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());
  for (const char* s : {"126,698", "79,120", "78,920", "before pruning", "after pruning"})
    CHECK_MESSAGE(r.out.find(s) != std::string::npos, s);

  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-taylor", parent, children);
  CHECK(parent.param("base") == ck.string());
  CHECK(parent.metric("test_accuracy").size() == 1);  // evaluated, not trained here
  CHECK(parent.metric("train_loss").empty());
  CHECK(parent.artifact("model/original.safetensors"));
  REQUIRE(children.size() == 1);
  const Run& c = children[0];
  CHECK(c.param("method") == "taylor");
  CHECK(c.param("amount") == "0.3750");
  CHECK(c.param("spec_after") == "conv(5,3,pad=1) relu conv(10,3,pad=1) relu flatten linear(10)");
  CHECK(c.last("params") == 78920);
  CHECK(c.metric("finetune_test_accuracy").size() == 3);  // epoch 0 (just pruned), 1, 2
  CHECK(c.artifact("summary_before.txt"));
  CHECK(c.artifact("summary_after.txt"));
  CHECK(read_text(c.dir / "artifacts" / "summary_after.txt").find("78,920") != std::string::npos);
  CHECK(c.artifact("model/pruned.safetensors"));
  // No training curve of the original when it was loaded: only the pruned model's.
  check_charts(html, {{"accuracy-per-epoch", 1}, {"params", 2}});
  std::string page = read_text(html);
  CHECK(page.find("<pre") != std::string::npos);
}

TEST_CASE("pipeline: train, Taylor + shrink, prune the classifier, pack, run, one report") {
  fs::path dir = temp_dir() / "pipeline";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns", html = dir / "p.html", out = dir / "out";
  // CSR throughout: the storage checked below. Measured (auto), the classifier's dense and CSR
  // forms tie at batch 1 on AVX2 and either can be kept.
  Result r = run("experiment pipeline --epochs 1 --finetune-epochs 1 --pack-format csr" +
                 std::string(kQuick) + " --out-dir " + out.string() + " --local-store " +
                 store.string() + " --report " + html.string());
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(last_line(r.out) == html.string());
  for (const char* f : {"cnn2.safetensors", "cnn2_pruned.safetensors", "cnn2_sparse.safetensors",
                        "cnn2_packed.safetensors"})
    CHECK_MESSAGE(fs::exists(out / f), f);
  // Seed 002's recipe gives its shrunk counts; 90% of the 7,840 x 10 classifier is pruned.
  CHECK(r.out.find("78,920 parameters (78,920 nonzero)") != std::string::npos);
  CHECK(r.out.find("78,920 parameters (8,360 nonzero)") != std::string::npos);

  // The packed file runs through `sprig run` with the accuracy the pipeline reported.
  Run parent;
  std::vector<Run> children;
  load_runs(store, "sprig-pipeline", parent, children);
  CHECK(children.empty());
  CHECK(parent.status() == "3");  // FINISHED
  CHECK(parent.metric("test_accuracy").size() == 1);
  CHECK(parent.metric("finetune_test_accuracy").size() == 1);
  double packed = parent.last("test_accuracy_packed");
  CHECK(packed == doctest::Approx(parent.last("test_accuracy_sparse")).epsilon(1e-9));
  Result ran = run("run --in " + (out / "cnn2_packed.safetensors").string() + " --limit-test " +
                   std::to_string(kTestSamples) + " --threads 2 --json");
  REQUIRE_MESSAGE(ran.code == 0, ran.out);
  auto j = nlohmann::json::parse(last_line(ran.out));
  CHECK(j["test_accuracy"].get<double>() == doctest::Approx(packed).epsilon(1e-9));
  CHECK(parent.last("packed_bytes") < 0.15 * 507416);
  CHECK(parent.artifact("model/cnn2_packed.safetensors"));
  CHECK(parent.artifact("summary_final.txt"));
  check_charts(html, {{"accuracy", 2}, {"layer-sparsity", 1}, {"sizes", 1}});
}

TEST_CASE("bad experiment flags are one-line errors and write nothing") {
  fs::path dir = temp_dir() / "bad";
  fs::remove_all(dir);
  fs::path store = dir / "mlruns";
  struct Case {
    std::string args, what;
  };
  for (const Case& c : std::vector<Case>{
           {"experiment nosuch", "nosuch"},
           {"experiment", "iterative"},
           {"experiment iterative --total-trials 0", "--total-trials"},
           {"experiment iterative --max-accuracy-drop 1.5", "--max-accuracy-drop"},
           {"experiment iterative --max-accuracy-drop -0.1", "--max-accuracy-drop"},
           {"experiment iterative --max-accuracy-drop nan", "--max-accuracy-drop"},
           {"experiment iterative --objective loss", "--objective"},
           {"experiment iterative --min-amount 0.6 --max-amount 0.4", "--min-amount"},
           {"experiment iterative --max-amount 1.0", "--max-amount"},
           {"experiment iterative --tracking-uri ftp://host", "--tracking-uri"},
           {"experiment iterative --threads -1", "--threads"},
           {"experiment iterative --train-samples 0", "--train-samples"},
           {"experiment l1-vs-fpgm --amounts 0.5,1.2", "--amounts"},
           {"experiment l1-vs-fpgm --methods l1,taylor", "--methods"},
           {"experiment taylor --base " + (dir / "missing.safetensors").string(), "missing"},
           {"experiment taylor --amount 1", "--amount"},
       }) {
    Result r = run(c.args + " --local-store " + store.string());
    CAPTURE(c.args);
    CAPTURE(r.out);
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK(r.out.find(c.what) != std::string::npos);
    CHECK(!fs::exists(store));
  }
}
