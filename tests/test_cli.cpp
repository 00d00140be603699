// The sprig command end to end: help, training with --json and --out, eval, summary, and bad
// input giving one-line errors with a non-zero exit and no damage to existing files.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/text.h"
#include "kernels/cpu/conv.h"
#include "nn/checkpoint.h"
#include "tests/cli_test_util.h"

namespace fs = std::filesystem;

using sprig::testing::count_lines;
using sprig::testing::last_line;
using sprig::testing::Result;
using sprig::testing::run;

fs::path temp_dir() {
  return sprig::testing::temp_dir("test_cli");
}

TEST_CASE("--help works for every command") {
  for (const char* sub :
       {"", "train", "eval", "summary", "prune", "sensitivity", "pack", "run", "plan", "bench",
        "bench gemm", "bench conv", "bench linear", "bench model"}) {
    Result r = run(std::string(sub) + " --help");
    CAPTURE(sub);
    CHECK(r.code == 0);
    CHECK(r.out.find("Usage") != std::string::npos);
  }
}

TEST_CASE("train --json --out, then eval and summary of the checkpoint") {
  fs::path dir = temp_dir();
  std::string ck = (dir / "mlp.safetensors").string();
  Result r =
      run("train --model mlp --epochs 1 --limit-train 2000 --batch-size 50 --threads 2 "
          "--json --out " +
          ck);
  REQUIRE_MESSAGE(r.code == 0, r.out);
  auto j = nlohmann::json::parse(last_line(r.out));
  CHECK(j["epochs"] == 1);
  CHECK(j["params"] == 266610);
  CHECK(j["train_samples"] == 2000);
  CHECK(j["test_samples"] == 10000);
  CHECK(j["test_accuracy"].get<double>() > 0.6);
  CHECK(j["train_seconds"].get<double>() > 0.0);
  REQUIRE(fs::exists(ck));

  Result e = run("eval --in " + ck + " --json");
  REQUIRE_MESSAGE(e.code == 0, e.out);
  auto je = nlohmann::json::parse(last_line(e.out));
  // The checkpoint reproduces the accuracy measured at the end of training exactly.
  CHECK(je["test_accuracy"].get<double>() == j["test_accuracy"].get<double>());

  Result s = run("summary --in " + ck + " --json");
  REQUIRE_MESSAGE(s.code == 0, s.out);
  auto js = nlohmann::json::parse(last_line(s.out));
  CHECK(js["params"] == 266610);
  CHECK(js["nonzero"] == 266610);
  CHECK(js["layers"].size() == 6);

  Result t = run("summary --model cnn2");
  CHECK(t.code == 0);
  CHECK(t.out.find("126,698") != std::string::npos);

  // --limit-test evaluates on the first N test samples: the accuracy is a multiple of 1/N.
  Result q =
      run("train --model mlp --epochs 1 --limit-train 500 --limit-test 40 --threads 2 --json");
  REQUIRE_MESSAGE(q.code == 0, q.out);
  auto jq = nlohmann::json::parse(last_line(q.out));
  CHECK(jq["test_samples"] == 40);
  double hits = jq["test_accuracy"].get<double>() * 40;
  CHECK(hits == doctest::Approx(std::round(hits)).epsilon(1e-9));
  // So does eval's.
  Result eq = run("eval --in " + ck + " --limit-test 40 --json");
  REQUIRE_MESSAGE(eq.code == 0, eq.out);
  auto jeq = nlohmann::json::parse(last_line(eq.out));
  CHECK(jeq["samples"] == 40);
  hits = jeq["test_accuracy"].get<double>() * 40;
  CHECK(hits == doctest::Approx(std::round(hits)).epsilon(1e-9));
}

TEST_CASE("file names that are not UTF-8 work everywhere (Linux paths are bytes)") {
  fs::path dir = temp_dir();
  const std::string e9 = "\xe9";  // Latin-1 'e acute': a byte no UTF-8 text holds alone
  const fs::path data = dir / ("fm" + e9), ck = dir / ("w" + e9 + ".safetensors"),
                 pruned = dir / ("p" + e9 + ".safetensors"), packed = dir / ("k" + e9);
  fs::create_directory_symlink("/usr/share/datasets/fashion-mnist", data);
  const std::string quick = " --limit-train 256 --limit-test 100 --batch-size 64 --threads 2";
  Result t = run("train --model 'flatten linear(10)' --epochs 1 --data-dir '" + data.string() +
                 "' --json --out '" + ck.string() + "'" + quick);
  REQUIRE_MESSAGE(t.code == 0, t.out);
  // JSON is UTF-8: the bad byte prints as U+FFFD there, and the work is not lost.
  CHECK(t.out.find("\xef\xbf\xbd") != std::string::npos);
  REQUIRE(fs::exists(ck));
  // The run's data directory comes back from the checkpoint byte for byte.
  Result r = run("train --resume '" + ck.string() + "' --epochs 2 --json");
  CHECK_MESSAGE(r.code == 0, r.out);
  Result p =
      run("prune --in '" + ck.string() + "' --amount 0.5 --finetune-epochs 0 --data-dir '" +
          data.string() + "' --json --out '" + pruned.string() + "' --limit-train 256 --threads 2");
  CHECK_MESSAGE(p.code == 0, p.out);
  auto meta = sprig::nn::load_checkpoint(pruned.string()).metadata;
  CHECK(meta["pruned_from"] == sprig::printable(ck.string()));
  Result k = run("pack --in '" + pruned.string() + "' --repeats 1 --out '" + packed.string() + "'");
  CHECK_MESSAGE(k.code == 0, k.out);
  Result s = run("summary --in '" + pruned.string() + "' --json");
  CHECK_MESSAGE(s.code == 0, s.out);
}

TEST_CASE("--threads far above the processors is capped there, with a warning") {
  fs::path dir = temp_dir();
  const std::string ck = (dir / "f.safetensors").string();
  REQUIRE(run("train --dataset friedman1 --model 'linear(8) relu linear(1)' --epochs 1 --quiet "
              "--out " +
              ck)
              .code == 0);
  // 1000 spinning OpenMP threads on a few cores took minutes; capped, it is a quick eval.
  sprig::testing::Outcome o =
      sprig::testing::run_shell(sprig::testing::resource_limits() + "exec " + SPRIG_BINARY +
                                " eval --in " + ck + " --threads 1000 --json");
  CHECK_MESSAGE(o.code == 0, o.err);
  CHECK_MESSAGE(o.err.find("sprig: warning: --threads 1000 on ") == 0, o.err);
  CHECK(count_lines(o.err) == 1);
  CHECK(nlohmann::json::parse(last_line(o.out)).contains("test_mse"));
}

TEST_CASE("bench conv times forward and backward of the shape it is given") {
  Result r =
      run("bench conv --n 2 --c 3 --h 9 --w 8 --k 4 --r 3 --stride 2 --pad 1 --threads 1 "
          "--repeats 2 --json");
  REQUIRE_MESSAGE(r.code == 0, r.out);
  auto j = nlohmann::json::parse(last_line(r.out));
  CHECK(j["n"] == 2);
  CHECK(j["stride"] == 2);
  CHECK(j["forward_ms"].get<double>() > 0.0);
  CHECK(j["backward_gflops"].get<double>() > 0.0);
  // --sparsity: dense forward against csr_conv2d on the same weights, same outputs.
  Result s =
      run("bench conv --n 2 --c 8 --h 9 --w 8 --k 6 --r 3 --stride 2 --pad 1 --threads 1 "
          "--sparsity 0.75 --repeats 2 --rounds 2 --json");
  REQUIRE_MESSAGE(s.code == 0, s.out);
  auto k = nlohmann::json::parse(last_line(s.out));
  CHECK(k["kernel"] == "csr_conv2d");
  CHECK(k["nnz"] == 6 * 72 / 4);  // exactly a quarter of the weights kept
  CHECK(k["rounds"] == 2);
  CHECK(k["dense_ms"].get<double>() > 0.0);
  CHECK(k["sparse_ms"].get<double>() > 0.0);
  CHECK(k["speedup"].get<double>() >= k["speedup_min"].get<double>());
  CHECK(k["max_abs_diff"].get<double>() < 1e-4);
  // --direct: the float forward's kernels side by side, each against im2col + gemm; Winograd
  // where the CPU has it (3x3, stride 1).
  Result d =
      run("bench conv --n 2 --c 8 --h 9 --w 8 --k 6 --r 3 --pad 1 --threads 1 --direct --repeats 2 "
          "--rounds 2 --json");
  REQUIRE_MESSAGE(d.code == 0, d.out);
  auto jd = nlohmann::json::parse(last_line(d.out));
  CHECK(jd["kernel"] == "conv2d_direct");
  CHECK(jd["im2col_ms"].get<double>() > 0.0);
  CHECK(jd["direct_ms"].get<double>() > 0.0);
  CHECK(jd["speedup"].get<double>() >= jd["speedup_min"].get<double>());
  CHECK(jd["max_abs_diff"].get<double>() < 1e-4);
  CHECK(jd.contains("winograd_ms") ==
        sprig::cpu::conv2d_winograd_suits({2, 8, 9, 8, 6, 3, 3, 1, 1, 1}));
  if (jd.contains("winograd_ms")) {
    CHECK(jd["winograd_ms"].get<double>() > 0.0);
    CHECK(jd["winograd_max_abs_diff"].get<double>() < 1e-4);
  }
}

TEST_CASE("prune: global magnitude, filter pruning with shrink, and sensitivity") {
  fs::path dir = temp_dir();
  std::string base = (dir / "base.safetensors").string();
  // Each command evaluates: under ASan + UBSan (30-40x slower kernels) on the first 1,000 test
  // images, not all 10,000.
  const std::string limit_test = sprig::testing::kSanitized ? " --limit-test 1000" : "";
  Result t =
      run("train --model 'conv(6,3,pad=1) relu maxpool(2) flatten linear(32) relu linear(10)' "
          "--epochs 1 --limit-train 1000 --threads 2 --quiet --out " +
          base + limit_test);
  REQUIRE_MESSAGE(t.code == 0, t.out);

  std::string sparse = (dir / "sparse.safetensors").string();
  Result p = run("prune --in " + base + " --method magnitude --scope global --amount 0.8 " +
                 "--json --out " + sparse + limit_test);
  REQUIRE_MESSAGE(p.code == 0, p.out);
  auto j = nlohmann::json::parse(last_line(p.out));
  int64_t params = j["params_before"];
  CHECK(j["params_after"] == params);
  // 80% of the weights (not biases) are zero, so the model is a little under 80% sparse.
  CHECK(j["sparsity"].get<double>() > 0.78);
  CHECK(j["sparsity"].get<double>() < 0.80);
  CHECK(j["test_accuracy_before"].get<double>() > 0.5);
  CHECK(j["test_accuracy_after"].get<double>() > 0.3);
  Result s = run("summary --in " + sparse + " --json");
  REQUIRE(s.code == 0);
  auto js = nlohmann::json::parse(last_line(s.out));
  CHECK(js["nonzero"] == j["nonzero_after"]);
  // The masks are in the checkpoint: pruning the pruned model further keeps the old zeros.
  Result again = run("prune --in " + sparse +
                     " --method magnitude --scope global --amount 0.9 --json" + limit_test);
  REQUIRE(again.code == 0);
  CHECK(nlohmann::json::parse(last_line(again.out))["sparsity"].get<double>() > 0.88);
  // --limit-test evaluates on the first N test samples, before and after: multiples of 1/N.
  Result few = run("prune --in " + base + " --amount 0.5 --limit-test 40 --json");
  REQUIRE_MESSAGE(few.code == 0, few.out);
  auto jfew = nlohmann::json::parse(last_line(few.out));
  for (const char* key : {"test_accuracy_before", "test_accuracy_after"}) {
    CAPTURE(key);
    const double hits = jfew[key].get<double>() * 40;
    CHECK(hits == doctest::Approx(std::round(hits)).epsilon(1e-9));
  }

  std::string shrunk = (dir / "shrunk.safetensors").string();
  Result f = run("prune --in " + base + " --method l1 --granularity filter --amount 0.5 --shrink " +
                 "--finetune-epochs 1 --limit-train 500 --json --out " + shrunk + limit_test);
  REQUIRE_MESSAGE(f.code == 0, f.out);
  auto jf = nlohmann::json::parse(last_line(f.out));
  CHECK(jf["params_after"].get<int64_t>() < params);
  CHECK(jf["spec_after"].get<std::string>().rfind(
            "conv(3,3,pad=1) relu maxpool(2) flatten linear(16)", 0) == 0);
  Result e = run("eval --in " + shrunk + " --json" + limit_test);
  REQUIRE_MESSAGE(e.code == 0, e.out);
  CHECK(nlohmann::json::parse(last_line(e.out))["test_accuracy"] == jf["test_accuracy_after"]);

  // A FLOPs target: the smallest amount that removes half of the FLOPs, reported with them.
  Result ft =
      run("prune --in " + base + " --method l1 --granularity filter --flops-reduction 0.5 " +
          "--shrink --finetune-epochs 1 --limit-train 300 --optimizer sgd --lr 0.01 " +
          "--weight-decay 5e-4 --json" + limit_test);
  REQUIRE_MESSAGE(ft.code == 0, ft.out);
  auto jft = nlohmann::json::parse(last_line(ft.out));
  CHECK(jft["flops_reduction"] == 0.5);
  CHECK(jft["flops_after"].get<double>() <= 0.5 * jft["flops_before"].get<double>());
  CHECK(jft["amount"].get<double>() > 0.0);
  CHECK(jft["amount"].get<double>() < 1.0);
  CHECK(jft["steps"][0]["target"] == jft["amount"]);
  // Out of reach shows only once the criterion has scored the model: an error all the same.
  Result reach = run("prune --in " + base + " --granularity filter --flops-reduction 0.99 " +
                     "--min-keep 6 --quiet --out " + sparse + limit_test);
  CHECK(reach.code != 0);
  CHECK_MESSAGE(reach.out.find("is out of reach") != std::string::npos, reach.out);

  Result sens = run("sensitivity --in " + base + " --amounts 0.5,0.9 --limit-test 500 --json");
  REQUIRE_MESSAGE(sens.code == 0, sens.out);
  auto jsens = nlohmann::json::parse(last_line(sens.out));
  CHECK(jsens["layers"].size() == 3);
  CHECK(jsens["layers"][0]["drops"].size() == 2);

  // Bad pruning requests on a good model: one line naming the problem, and --out untouched.
  for (auto [args, expect] : std::vector<std::pair<std::string, std::string>>{
           {"--granularity 5:4", "5:4"},
           {"--granularity diagonal", "diagonal"},
           {"--schedule agp:10,5,1", "agp"},
           {"--schedule sometimes", "sometimes"},
           {"--block 0x4 --granularity block", "--block"},
           {"--method fpgm --granularity element", "fpgm"},
           {"--method gradient --criterion-batches 0", "--criterion-batches"},
           {"--layers 7.weight", "7.weight"},
           {"--flops-reduction 0.4", "filter or channel granularity"},
           {"--granularity filter --flops-reduction 1", "--flops-reduction"},
           {"--granularity filter --flops-reduction 0.4 --count 2", "count"},
           {"--granularity filter --flops-reduction 0.4 --schedule iterative:2", "oneshot"},
           {"--weight-decay -0.1", "--weight-decay"},
           {"--amount 0.5 --count 3", "excludes"},
           {"--threshold 0.1 --count 3", "excludes"},
           {"--granularity filter --flops-reduction 0.4 --amount 0.3", "excludes"},
       }) {
    CAPTURE(args);
    Result r = run("prune --in " + base + " " + args + " --out " + sparse);
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK_MESSAGE(r.out.find(expect) != std::string::npos, r.out);
  }
  Result still = run("summary --in " + sparse + " --json");
  CHECK(nlohmann::json::parse(last_line(still.out))["nonzero"] == j["nonzero_after"]);
}

TEST_CASE("lottery ticket: train with a rewind snapshot, prune with --rewind") {
  fs::path dir = temp_dir();
  std::string base = (dir / "ticket.safetensors").string();
  Result t =
      run("train --model mlp --epochs 1 --limit-train 1000 --threads 2 --quiet "
          "--rewind-step 0 --json --out " +
          base);
  REQUIRE_MESSAGE(t.code == 0, t.out);
  std::string ticket = (dir / "ticket_pruned.safetensors").string();
  Result p =
      run("prune --in " + base + " --scope global --amount 0.5 --rewind 0 --json --out " + ticket);
  REQUIRE_MESSAGE(p.code == 0, p.out);
  CHECK(nlohmann::json::parse(last_line(p.out))["sparsity"].get<double>() > 0.49);
  // Every surviving weight is back at its initial value; every pruned one is 0.
  sprig::nn::Checkpoint before = sprig::nn::load_checkpoint(base);
  sprig::nn::Checkpoint after = sprig::nn::load_checkpoint(ticket);
  REQUIRE(before.rewind.size() == 6);
  int64_t kept = 0, changed = 0;
  for (auto& [name, param] : after.model.named_parameters()) {
    std::vector<float> init = before.rewind.at(name).to_vector(), now = param->value.to_vector();
    std::vector<float> trained;
    for (auto& [n, q] : before.model.named_parameters())
      if (n == name) trained = q->value.to_vector();
    for (size_t i = 0; i < now.size(); ++i) {
      if (now[i] == 0.0f) continue;
      ++kept;
      REQUIRE(now[i] == init[i]);
      changed += init[i] != trained[i];
    }
  }
  CHECK(kept > 0);
  CHECK(changed > kept / 2);  // training had moved them, so the rewind is visible
  Result wrong = run("prune --in " + base + " --rewind 5");
  CHECK(wrong.code != 0);
  CHECK(wrong.out.find("step 0 only") != std::string::npos);
  Result none = run("prune --in " + base + " --rewind 0 --schedule agp:0,10,5 --finetune-epochs 1");
  CHECK(none.code != 0);
  CHECK(none.out.find("agp") != std::string::npos);
}

TEST_CASE("bad input: one line, non-zero exit, existing files untouched") {
  fs::path dir = temp_dir();
  std::string keep = (dir / "keep.safetensors").string();
  {
    std::ofstream f(keep);
    f << "precious";
  }
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {
           Case{"train --epochs -1", "--epochs"},
           Case{"train --batch-size 0", "--batch-size"},
           Case{"train --optimizer rmsprop", "rmsprop"},
           Case{"train --dataset cifar", "cifar"},
           Case{"train --lr nan", "--lr"},
           Case{"train --model 'conv(8,3) wobble' --epochs 1 --limit-train 10", "wobble"},
           Case{"train --dataset mnist --data-dir /nonexistent", "/nonexistent"},
           Case{"train --dataset fashion-mnist --data-dir " + dir.string(), dir.string()},
           Case{"eval --in " + keep, "keep.safetensors"},
           Case{"eval --in /no/such/file.safetensors", "/no/such/file.safetensors"},
           Case{"summary", "exactly one of"},
           Case{"summary --model cnn2 --input-shape 1,x,28", "--input-shape"},
           Case{"frobnicate", "frobnicate"},
           Case{"prune --in /no/such.safetensors", "/no/such.safetensors"},
           Case{"prune --in " + keep + " --amount 1.5", "--amount"},
           Case{"prune --in " + keep + " --method size", "size"},
       }) {
    CAPTURE(c.args);
    Result r = run(c.args);
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK_MESSAGE(r.out.find(c.expect) != std::string::npos, r.out);
  }
  // A run that fails before writing leaves the existing --out file as it was.
  Result r = run("train --model 'flatten linear(0)' --epochs 1 --out " + keep);
  CHECK(r.code != 0);
  std::ifstream f(keep);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(content == "precious");
}
