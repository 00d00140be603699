// sprig pack / run / plan / bench linear / bench model end to end on a tiny trained model: JSON
// fields, the packed model's accuracy equal to the dense masked model's, one-line errors with a
// non-zero exit for bad flags, and an existing --out file surviving a failed pack.
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

#include "engine/backend.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "infer/pack.h"
#include "tests/cli_test_util.h"
#include "tests/sanitized.h"

namespace fs = std::filesystem;

namespace {

using sprig::testing::count_lines;
using sprig::testing::last_line;
using sprig::testing::Result;
using sprig::testing::run;

fs::path temp_dir() {
  return sprig::testing::temp_dir("test_cli_sparse");
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("pack, run, plan and bench model on a tiny pruned model") {
  fs::path dir = temp_dir();
  std::string base = (dir / "mlp.safetensors").string();
  // Under ASan + UBSan (30-40x slower kernels) the first 2,000 test images, not all 10,000.
  const int test_samples = sprig::testing::kSanitized ? 2000 : 10000;
  const std::string limit_test = " --limit-test " + std::to_string(test_samples);
  Result t = run("train --model mlp --epochs 1 --limit-train 1000 --threads 2 --quiet --out " +
                 base + limit_test);
  REQUIRE_MESSAGE(t.code == 0, t.out);
  std::string pruned = (dir / "mlp92.safetensors").string();
  Result p = run("prune --in " + base + " --scope global --amount 0.92 --quiet --out " + pruned);
  REQUIRE_MESSAGE(p.code == 0, p.out);
  Result e = run("eval --in " + pruned + " --json" + limit_test);
  REQUIRE_MESSAGE(e.code == 0, e.out);
  double dense_acc = nlohmann::json::parse(last_line(e.out))["test_accuracy"];

  for (const char* format : {"auto", "csr", "bsr", "nm", "dense"}) {
    CAPTURE(format);
    std::string packed = (dir / (std::string("p_") + format + ".safetensors")).string();
    Result k = run("pack --in " + pruned + " --out " + packed + " --format " + format +
                   " --batch 4 --repeats 2 --json");
    REQUIRE_MESSAGE(k.code == 0, k.out);
    auto j = nlohmann::json::parse(last_line(k.out));
    for (const char* key : {"dense_bytes", "dense_file_bytes", "dense_gzip_bytes", "packed_bytes",
                            "ratio", "layers", "spec"})
      CHECK_MESSAGE(j.contains(key), key);
    CHECK(j["dense_bytes"] == 266610 * 4);
    CHECK(j["packed_bytes"].get<int64_t>() == int64_t(fs::file_size(packed)));
    CHECK(j["layers"].size() == 3);
    // CSR of a 92% sparse mlp is under 15% of the dense file (the bar); auto picks by
    // speed, so its size depends on the machine.
    if (std::string(format) == "csr") CHECK(j["ratio"].get<double>() < 0.15);
    CHECK(j["dense_gzip_bytes"].get<int64_t>() < j["dense_file_bytes"].get<int64_t>());
    for (auto& l : j["layers"]) CHECK(!l["reason"].get<std::string>().empty());

    // The packed model classifies the test set exactly as the dense masked model does.
    Result r = run("run --in " + packed + " --json" + limit_test);
    REQUIRE_MESSAGE(r.code == 0, r.out);
    auto jr = nlohmann::json::parse(last_line(r.out));
    CHECK(jr["test_accuracy"].get<double>() == dense_acc);
    CHECK(jr["samples"] == test_samples);
    CHECK(jr["samples_per_second"].get<double>() > 0);
    CHECK(jr["formats"].size() == 3);
  }
  // Human-readable pack output has the table and the size line.
  Result k =
      run("pack --in " + pruned + " --out " + (dir / "h.safetensors").string() + " --format csr");
  REQUIRE_MESSAGE(k.code == 0, k.out);
  CHECK(k.out.find("packed") != std::string::npos);
  CHECK(k.out.find("gzipped") != std::string::npos);

  Result pl = run("plan " + pruned + " --batch 8 --repeats 2 --json");
  REQUIRE_MESSAGE(pl.code == 0, pl.out);
  auto jp = nlohmann::json::parse(last_line(pl.out));
  REQUIRE(jp["layers"].size() == 3);
  for (auto& l : jp["layers"]) {
    CHECK(l["times_ms"].contains("dense"));
    CHECK(l["times_ms"].contains("csr"));
    CHECK(l["reason"].get<std::string>().find(" ms") != std::string::npos);
  }
  Result ph = run("plan " + pruned + " --batch 8 --repeats 2");
  REQUIRE_MESSAGE(ph.code == 0, ph.out);
  CHECK(ph.out.find("choice") != std::string::npos);

  Result bm = run("bench model " + pruned + " --batch 2 --repeats 3 --int8 --json");
  REQUIRE_MESSAGE(bm.code == 0, bm.out);
  auto jb = nlohmann::json::parse(last_line(bm.out));
  CHECK(jb["dense_ms"].get<double>() > 0);
  CHECK(jb["plan_ms"].get<double>() > 0);
  CHECK(jb["max_rel_diff"].get<double>() <= 1e-5);
  CHECK(jb["layers"].size() == 3);
  for (auto& l : jb["layers"]) CHECK(l["type"] == "linear");  // mlp: no conv layers
  // --int8: the three int8 plans, timed; the dense one has every layer int8 dense.
  for (const char* key : {"int8", "int8_dense", "int8_mixed"}) {
    CAPTURE(key);
    CHECK(jb[std::string(key) + "_ms"].get<double>() > 0);
    CHECK(jb[std::string(key) + "_formats"].size() == 3);
  }
  for (auto& [name, format] : jb["int8_dense_formats"].items()) CHECK(format == "int8 dense");
  for (auto& [name, format] : jb["int8_formats"].items())
    CHECK(format.get<std::string>().rfind("int8 ", 0) == 0);

  // quantize: the pruned mlp as int8, calibrated on 200 training samples. The int8 file is
  // under 1/6 of the dense float file, keeps every pruned weight zero, and classifies within
  // 1 point of the float model.
  const std::string q8 = (dir / "q8.safetensors").string();
  for (std::string how : {"minmax", "percentile", "entropy"}) {
    CAPTURE(how);
    Result q = run("quantize --in " + pruned + " --out " + q8 + " --calibrate 200 --calibration " +
                   how + " --batch 4 --repeats 2 --int8-only --json");
    REQUIRE_MESSAGE(q.code == 0, q.out);
    auto jq = nlohmann::json::parse(last_line(q.out));
    CHECK(jq["calibration"].get<std::string>().rfind(how, 0) == 0);
    CHECK(jq["calibration_samples"] == "200");
    CHECK(jq["ratio"].get<double>() <= 1.0 / 6.0);
    REQUIRE(jq["layers"].size() == 3);
    int64_t nonzero = 0;
    for (auto& l : jq["layers"]) {
      CHECK(l["format"].get<std::string>().rfind("int8 ", 0) == 0);
      CHECK(l["reason"].get<std::string>().find(how) != std::string::npos);
      nonzero += l["nonzero"].get<int64_t>();
    }
    CHECK(nonzero <= int64_t(0.08 * 266610));  // 92% pruned: rounding adds no weight
    Result r = run("run --in " + q8 + " --json" + limit_test);
    REQUIRE_MESSAGE(r.code == 0, r.out);
    auto jr = nlohmann::json::parse(last_line(r.out));
    MESSAGE("int8 (", how, ") accuracy ", jr["test_accuracy"].get<double>(), ", float ", dense_acc);
    CHECK(std::fabs(jr["test_accuracy"].get<double>() - dense_acc) <= 0.01);
    for (auto& [name, f] : jr["formats"].items())
      CHECK(f.get<std::string>().rfind("int8 ", 0) == 0);
  }
  // Quantisation-aware training: one short epoch with fake-quantised layers; the int8 file
  // then classifies as the fake-quantised model did in its last evaluation.
  Result qat = run("quantize --in " + pruned + " --out " + q8 +
                   " --calibrate 200 --finetune-epochs 1 --limit-train 2000 --int8-only --json");
  REQUIRE_MESSAGE(qat.code == 0, qat.out);
  auto jqat = nlohmann::json::parse(last_line(qat.out));
  CHECK(jqat["qat_epochs"] == "1");
  CHECK(jqat["ratio"].get<double>() <= 1.0 / 6.0);
  Result rq = run("run --in " + q8 + " --json");
  REQUIRE_MESSAGE(rq.code == 0, rq.out);
  const double qat_acc = std::stod(jqat["qat_test_accuracy"].get<std::string>());
  CHECK(std::fabs(nlohmann::json::parse(last_line(rq.out))["test_accuracy"].get<double>() -
                  qat_acc) <= 0.002);

  // The int8 file exports as QDQ ONNX, and predict runs it on its int8 kernels.
  Result ex = run("export --in " + q8 + " --out " + (dir / "q8.onnx").string() + " --json");
  REQUIRE_MESSAGE(ex.code == 0, ex.out);
  CHECK(nlohmann::json::parse(last_line(ex.out))["int8_layers"] == 3);
  {
    sprig::Rng rng(5);
    sprig::Tensor x = sprig::Tensor::uniform({5, 1, 28, 28}, -1.0f, 2.0f, rng);
    const std::string in = (dir / "x.safetensors").string(), out = (dir / "y.safetensors").string();
    sprig::save_safetensors(in, {{"input", x}});
    Result pr = run("predict --in " + q8 + " --input " + in + " --out " + out);
    REQUIRE_MESSAGE(pr.code == 0, pr.out);
    sprig::Tensor want = sprig::infer::load_packed(q8).model.forward(x);
    CHECK(sprig::load_safetensors(out).find("logits")->to_vector() == want.to_vector());
  }
  // The default plan measures int8 and float kernels per layer and says which won.
  Result mixed = run("quantize --in " + pruned + " --out " + (dir / "mixed.safetensors").string() +
                     " --calibrate 50 --batch 4 --repeats 2 --json");
  REQUIRE_MESSAGE(mixed.code == 0, mixed.out);
  const auto jmixed = nlohmann::json::parse(last_line(mixed.out));  // outlives the loop
  for (auto& l : jmixed["layers"]) {
    CHECK(l["times_ms"].contains("int8 dense"));
    CHECK(l["times_ms"].size() >= 3);  // int8 dense, csr and blocks, float dense and csr
  }
  Result qh =
      run("quantize --in " + pruned + " --out " + q8 + " --calibrate 50 --format bsr --block 4x4");
  REQUIRE_MESSAGE(qh.code == 0, qh.out);
  CHECK(qh.out.find("int8 bsr 4x4") != std::string::npos);
  CHECK(qh.out.find("forced bsr") != std::string::npos);

  // --device cuda: with a usable GPU the packed model runs there and classifies (almost: float
  // sums in another order) as on the CPU; without one (or without CUDA in the build) each
  // command prints one `sprig: error:` line and exits non-zero.
  std::string no_gpu_reason;
  const bool gpu = sprig::cuda_available(&no_gpu_reason);
  CAPTURE(no_gpu_reason);
  const std::string p_csr = (dir / "p_csr.safetensors").string();
  for (const std::string& args :
       {"run --in " + p_csr + " --device cuda --repeats 2 --json",
        "run --in " + p_csr + " --device cuda --gpu-kernel coltile --limit-test 500 --json",
        "plan " + pruned + " --device cuda --batch 8 --repeats 2 --json",
        "bench model " + pruned + " --device cuda --batch 2 --repeats 2 --json",
        std::string("bench sparse-gpu --rows 64 --cols 96 --sparsity 0.9 --batch 4,5 "
                    "--repeats 2 --json")}) {
    CAPTURE(args);
    Result r = run(args);
    if (!gpu) {
      CHECK(r.code != 0);
      CHECK(count_lines(r.out) == 1);
      CHECK_MESSAGE(r.out.rfind("sprig: error: ", 0) == 0, r.out);
      CHECK_MESSAGE(r.out.find("CUDA") != std::string::npos, r.out);
      continue;
    }
    REQUIRE_MESSAGE(r.code == 0, r.out);
    auto j = nlohmann::json::parse(last_line(r.out));
    if (args.find("--gpu-kernel coltile") != std::string::npos) {
      CHECK(j["samples"] == 500);
      REQUIRE(j["formats"].size() == 3);
      for (auto& f : j["formats"]) CHECK(f == "coltile");
    } else if (args.rfind("run", 0) == 0) {
      CHECK(std::fabs(j["test_accuracy"].get<double>() - dense_acc) <= 5e-4);
      CHECK(j["samples"] == 10000);
      CHECK(j["formats"].size() == 3);
    } else if (args.rfind("plan", 0) == 0) {
      REQUIRE(j["layers"].size() == 3);
      for (auto& l : j["layers"]) CHECK(l["times_ms"].size() == 4);
    } else if (args.rfind("bench model", 0) == 0) {
      CHECK(j["max_rel_diff"].get<double>() <= 1e-4);  // cuBLAS vs sparse sums
    } else {
      REQUIRE(j["runs"].size() == 2);
      for (auto& t : j["runs"]) {
        CHECK(t["rowsplit_rel_diff"].get<double>() <= 1e-5);
        CHECK(t["coltile_rel_diff"].get<double>() <= 1e-5);
      }
    }
  }

  // Bad input: one line, non-zero exit, and the existing --out file untouched.
  std::string keep = (dir / "keep.safetensors").string();
  {
    std::ofstream f(keep);
    f << "precious";
  }
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {
           Case{"pack --in " + pruned + " --out " + keep + " --format zip", "zip"},
           Case{"pack --in " + pruned + " --out " + keep + " --batch 0", "--batch"},
           Case{"pack --in " + pruned + " --out " + keep + " --format bsr --block 0x4", "--block"},
           Case{"pack --in " + base + ".missing --out " + keep, ".missing"},
           Case{"pack --in " + keep + " --out " + keep, "keep.safetensors"},
           Case{"pack --in " + pruned + " --out /no/such/dir/p.safetensors", "/no/such/dir"},
           Case{"run --in " + pruned, "is not a packed model"},
           Case{"run --in " + keep, "keep.safetensors"},
           Case{"run --in " + (dir / "p_csr.safetensors").string() + " --batch-size 0",
                "--batch-size"},
           Case{"plan " + pruned + " --batch -1", "--batch"},
           Case{"quantize --in " + pruned + " --out " + keep + " --calibrate 0", "--calibrate"},
           Case{"quantize --in " + pruned + " --out " + keep + " --calibration kl", "kl"},
           Case{"quantize --in " + pruned + " --out " + keep + " --percentile 40", "--percentile"},
           Case{"quantize --in " + pruned + " --out " + keep + " --format nm", "nm"},
           Case{"quantize --in " + pruned + " --out " + keep + " --finetune-epochs -1",
                "--finetune-epochs"},
           Case{"quantize --in " + q8 + " --out " + keep, "q8.safetensors"},
           Case{"quantize --in " + pruned + " --out " + keep + " --dataset cifar10 --data-dir " +
                    (dir / "nodata").string(),
                "nodata"},
           Case{"run --in " + q8 + " --device cuda", "CUDA"},
           Case{"plan " + pruned + " --format sparse", "sparse"},
           Case{"plan " + pruned + " --device tpu", "tpu"},
           Case{"run --in " + p_csr + " --device gpu", "gpu"},
           Case{"run --in " + p_csr + " --gpu-kernel rowsplit", "--gpu-kernel"},
           Case{"plan " + pruned + " --device cuda --gpu-kernel coo", "coo"},
           Case{"bench model " + pruned + " --repeats 0", "--repeats"},
           Case{"bench linear --in 8 --out 8 --sparsity 1.5", "--sparsity"},
           Case{"bench linear --in 8 --out 8 --format coo", "coo"},
           Case{"bench linear --in 8 --out 8 --format nm --nm 5:4", "5:4"},
           Case{"bench linear --in 0 --out 8", "--in"},
           Case{"bench linear --out 8", "--in"},
       }) {
    CAPTURE(c.args);
    Result r = run(c.args);
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK_MESSAGE(r.out.find(c.expect) != std::string::npos, r.out);
  }
  CHECK(read_file(keep) == "precious");
}

TEST_CASE("bench linear: csr, bsr and nm JSON") {
  for (const char* extra : {"--format csr --sparsity 0.9",
                            "--format bsr --block 1x4 --sparsity 0.8", "--format nm --nm 2:4"}) {
    CAPTURE(extra);
    Result r = run(std::string("bench linear --in 96 --out 40 --batch 3 --repeats 3 --threads 2 ") +
                   extra + " --json");
    REQUIRE_MESSAGE(r.code == 0, r.out);
    auto j = nlohmann::json::parse(last_line(r.out));
    for (const char* key : {"dense_ms", "sparse_ms", "speedup", "in", "out", "batch", "sparsity"})
      CHECK_MESSAGE(j.contains(key), key);
    CHECK(j["in"] == 96);
    CHECK(j["out"] == 40);
    CHECK(j["max_rel_diff"].get<double>() <= 1e-5);
  }
  Result r = run("bench linear --in 100 --out 10 --sparsity 0.9 --json");
  REQUIRE(r.code == 0);
  // Exactly round(0.9 x 1000) weights are zero.
  CHECK(nlohmann::json::parse(last_line(r.out))["nnz"] == 100);
}
