// sprig bench linear: sprig's dense gemm against a sparse kernel on one random Linear layer.
// sprig bench model: a whole checkpoint run dense (as masked, on the same inference path: BatchNorm
// folded, every layer dense) against its auto inference plan;
// with --device cuda both run on the GPU (prune/pack_cuda.cpp).
// Both print medians after a warm-up; --json gives one object that bench/sparse_sweep.py reads.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <tuple>

#include "apps/commands.h"
#include "engine/autograd.h"
#include "engine/rng.h"
#include "infer/pack.h"
#include "infer/quantize.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threads.h"
#include "nn/checkpoint.h"
#include "prune/prune.h"

namespace sprig::app {

namespace {

struct LinearArgs {
  int64_t in = 0, out = 0, batch = 1;
  double sparsity = 0.9;
  std::string format = "csr", block = "1x4", nm = "2:4";
  int threads = 0, repeats = 20;
  uint64_t seed = 0;
  bool json = false;
};

int run_bench_linear(const LinearArgs& a) {
  use_threads(a.threads);
  // Plain variables, not structured bindings: lambdas below capture them (C++17).
  int64_t br, bc, n, m;
  std::tie(br, bc) = parse_block_flag(a.block);
  std::tie(n, m) = prune::parse_nm(a.nm);
  SPRIG_CHECK(a.format != "nm" || m <= 255, "--nm ", a.nm, ": M must be at most 255");
  const int64_t rows = a.out, cols = a.in, B = a.batch;
  Rng rng(a.seed);
  std::vector<float> w(size_t(rows * cols));  // (out, in)
  for (float& v : w) {
    v = rng.uniform(-1.0f, 1.0f);
    if (v == 0.0f) v = 0.5f;  // a kept weight is never 0, so the sparsity is exact
  }
  if (a.format == "bsr") {
    // Whole br x bc tiles are pruned (edge tiles smaller), as prune's block granularity.
    int64_t tr = (rows + br - 1) / br, tc = (cols + bc - 1) / bc;
    zero_random_units(tr * tc, a.sparsity, rng, [&](int64_t t) {
      for (int64_t r = (t / tc) * br; r < std::min(rows, (t / tc + 1) * br); ++r)
        for (int64_t c = (t % tc) * bc; c < std::min(cols, (t % tc + 1) * bc); ++c)
          w[size_t(r * cols + c)] = 0.0f;
    });
  } else if (a.format == "nm") {
    // n random survivors in every group of m along a row; the sparsity is 1 - n/m.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c0 = 0; c0 < cols; c0 += m) {
        int64_t len = std::min(m, cols - c0);
        std::vector<int64_t> pos(static_cast<size_t>(len));
        std::iota(pos.begin(), pos.end(), c0);
        for (int64_t i = 0; i < len; ++i)
          std::swap(pos[size_t(i)], pos[size_t(i + int64_t(rng.below(uint64_t(len - i))))]);
        for (int64_t i = n; i < len; ++i) w[size_t(r * cols + pos[size_t(i)])] = 0.0f;
      }
  } else {
    zero_random_units(rows * cols, a.sparsity, rng, [&](int64_t i) { w[size_t(i)] = 0.0f; });
  }
  int64_t nnz = 0;
  for (float v : w) nnz += v != 0.0f;

  std::vector<float> x(size_t(B * cols)), yd(size_t(B * rows)), ys(size_t(B * rows));
  for (float& v : x) v = rng.uniform(-1.0f, 1.0f);  // (B, in)
  double dense_ms = infer::time_median_ms(
      [&] {
        cpu::gemm(false, true, B, rows, cols, 1.0f, x.data(), cols, w.data(), cols, 0.0f, yd.data(),
                  rows);
      },
      a.repeats);

  cpu::CsrMatrix csr;
  cpu::BsrMatrix bsr;
  cpu::NmMatrix nmm;
  size_t sparse_bytes = 0;
  std::function<void()> sparse;
  if (a.format == "bsr") {
    bsr = cpu::bsr_from_dense(rows, cols, br, bc, w.data());
    sparse_bytes = bsr.bytes();
    sparse = [&] { cpu::bsr_linear(bsr, B, x.data(), nullptr, ys.data()); };
  } else if (a.format == "nm") {
    nmm = cpu::nm_from_dense(rows, cols, n, m, w.data());
    sparse_bytes = nmm.bytes();
    sparse = [&] { cpu::nm_linear(nmm, B, x.data(), nullptr, ys.data()); };
  } else {
    csr = cpu::csr_from_dense(rows, cols, w.data());
    sparse_bytes = csr.bytes();
    sparse = [&] { cpu::csr_linear(csr, B, x.data(), nullptr, ys.data()); };
  }
  double sparse_ms = infer::time_median_ms(sparse, a.repeats);
  // Both outputs hold the last run's result: they must agree (relative to the output scale).
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < yd.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(yd[i] - ys[i])));
    max_ref = std::max(max_ref, double(std::fabs(yd[i])));
  }
  double sparsity = 1.0 - double(nnz) / double(rows * cols);
  double speedup = sparse_ms > 0 ? dense_ms / sparse_ms : 0.0;
  if (a.json) {
    nlohmann::json j = {{"in", cols},
                        {"out", rows},
                        {"batch", B},
                        {"format", a.format},
                        {"sparsity", sparsity},
                        {"nnz", nnz},
                        {"threads", cpu::num_threads()},
                        {"repeats", a.repeats},
                        {"dense_ms", dense_ms},
                        {"sparse_ms", sparse_ms},
                        {"speedup", speedup},
                        {"dense_bytes", rows * cols * int64_t(sizeof(float))},
                        {"sparse_bytes", sparse_bytes},
                        {"max_rel_diff", max_ref > 0 ? max_diff / max_ref : max_diff}};
    if (a.format == "bsr") j["block"] = a.block;
    if (a.format == "nm") j["nm"] = a.nm;
    print_json_line(j);
  } else {
    std::printf(
        "linear %lldx%lld (out x in), batch %lld, %s at %.1f%% sparsity, %d threads: "
        "dense %.4f ms, sparse %.4f ms, speedup %.2fx\n",
        (long long)rows, (long long)cols, (long long)B, a.format.c_str(), 100.0 * sparsity,
        cpu::num_threads(), dense_ms, sparse_ms, speedup);
  }
  return 0;
}

struct ModelArgs {
  std::string in, format = "auto", device = "cpu";
  int64_t batch = 1;
  int threads = 0, repeats = 10;
  uint64_t seed = 0;
  bool no_shrink = false, json = false;
  bool int8 = false;  // also the int8 plan (sprig quantize), timed alternately with the plan
};

// bench model on the GPU: the unshrunk model all dense (cuBLAS) against the GPU plan.
int run_bench_model_cuda(const ModelArgs& a, Device dev) {
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  infer::PackOptions po;
  po.format = infer::PackFormat::Dense;  // the GPU plans measure on their own
  po.shrink = false;
  infer::InferenceModel dense_im = infer::pack_model(ck.model, po);
  po.shrink = !a.no_shrink;
  infer::InferenceModel plan_im = infer::pack_model(ck.model, po);
  infer::CudaPlanOptions go;
  go.format = infer::PackFormat::Dense;
  go.batch = a.batch;
  go.repeats = a.repeats;
  go.seed = a.seed;
  go.device = dev.index;
  infer::CudaInferenceModel dense(dense_im, go);
  const std::string& gpu = dense.device();
  go.format = infer::parse_pack_format(a.format);
  auto t0 = std::chrono::steady_clock::now();
  infer::CudaInferenceModel plan(plan_im, go);
  double plan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double dense_ms = dense.time_forward_ms(a.batch, a.repeats, a.seed);
  double plan_ms = plan.time_forward_ms(a.batch, a.repeats, a.seed);
  Rng rng(a.seed);
  Shape xs = ck.model.input_shape;
  xs.insert(xs.begin(), a.batch);
  Tensor x = Tensor::uniform(xs, -1.0f, 1.0f, rng);  // (batch, input_shape...)
  std::vector<float> yd = dense.forward(x).to_vector(), yp = plan.forward(x).to_vector();
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < yd.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(yd[i] - yp[i])));
    max_ref = std::max(max_ref, double(std::fabs(yd[i])));
  }
  double speedup = plan_ms > 0 ? dense_ms / plan_ms : 0.0;
  if (a.json) {
    nlohmann::json layers = nlohmann::json::array();
    for (auto& l : plan.layers()) {
      nlohmann::json times = nlohmann::json::object();
      for (auto& t : l.times) times[t.format] = t.ms;
      layers.push_back({{"name", l.name},
                        {"type", l.conv ? "conv" : "linear"},
                        {"kernel", l.format()},
                        {"rows", l.rows},
                        {"cols", l.cols},
                        {"sparsity", l.sparsity()},
                        {"times_ms", times},
                        {"reason", l.reason}});
    }
    nlohmann::json j = {{"in", a.in},
                        {"device", dev.str()},
                        {"gpu", gpu},
                        {"batch", a.batch},
                        {"format", a.format},
                        {"repeats", a.repeats},
                        {"sparsity", prune::sparsity(ck.model)},
                        {"dense_ms", dense_ms},
                        {"plan_ms", plan_ms},
                        {"speedup", speedup},
                        {"plan_seconds", plan_s},
                        {"max_rel_diff", max_ref > 0 ? max_diff / max_ref : max_diff},
                        {"layers", layers}};
    print_json_line(j);
  } else {
    std::printf("%s at batch %lld on %s: dense %.4f ms, plan %.4f ms, speedup %.2fx\n",
                a.in.c_str(), (long long)a.batch, gpu.c_str(), dense_ms, plan_ms, speedup);
    for (auto& l : plan.layers())
      std::printf("  layer %-3s %-9s %s\n", l.name.c_str(), l.format().c_str(), l.reason.c_str());
  }
  return 0;
}

int run_bench_model(const ModelArgs& a) {
  use_threads(a.threads);
  const Device dev = device_from_flag(a.device);  // no GPU: one error line, before any work
  if (!dev.is_cpu()) return run_bench_model_cuda(a, dev);
  infer::PackOptions opt;
  opt.format = infer::parse_pack_format(a.format);
  opt.batch = a.batch;
  opt.shrink = !a.no_shrink;
  opt.seed = a.seed;
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  Rng rng(a.seed);
  Shape xs = ck.model.input_shape;
  xs.insert(xs.begin(), a.batch);
  Tensor x = Tensor::uniform(xs, -1.0f, 1.0f, rng);  // (batch, input_shape...)

  NoGradGuard no_grad;
  ck.model.net->eval();
  // The dense side is the same weights on the same inference path, every layer dense (BatchNorm
  // folded, no shrink), so the speed-up is the plan's alone.
  infer::PackOptions dense_opt = opt;
  dense_opt.format = infer::PackFormat::Dense;
  dense_opt.shrink = false;
  infer::InferenceModel dense = infer::pack_model(ck.model, dense_opt);
  auto t0 = std::chrono::steady_clock::now();
  infer::InferenceModel plan = infer::pack_model(ck.model, opt);
  double plan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // --int8: the int8 plans of the same weights (calibrated on this input: the ranges do not
  // change the time): every layer int8 on the fastest int8 kernel (what the int8 kernels do),
  // every layer int8 dense (what the sparse int8 kernels add to that), and the mixed plan `sprig
  // quantize` writes by default (each layer int8 or float, whichever it measured faster).
  struct Int8Plan {
    const char* name;
    std::string key;  // of the JSON fields
    std::unique_ptr<infer::InferenceModel> model;
    double ms = 0.0;
  };
  std::vector<Int8Plan> int8_plans;
  if (a.int8) {
    infer::QuantizeOptions qo;
    qo.pack = opt;
    qo.int8_only = true;
    auto quantized = [&] {
      return std::make_unique<infer::InferenceModel>(infer::quantize_model(ck.model, x, qo));
    };
    int8_plans.push_back({"int8 plan", "int8", quantized()});
    qo.pack.format = infer::PackFormat::Dense;
    int8_plans.push_back({"int8 dense plan", "int8_dense", quantized()});
    qo.pack.format = opt.format;
    qo.int8_only = false;
    int8_plans.push_back({"int8 mixed plan", "int8_mixed", quantized()});
  }
  // Every model in alternating rounds, one timed sample each, so that all see the same machine;
  // each one's median round counts. Timed one after the other, the plan of a pruned cnn2 at
  // batch 64 (every layer dense: the dense model again) measured 0.68-0.99x the dense time in
  // five runs on a shared 2-core machine.
  std::vector<const infer::InferenceModel*> models = {&dense, &plan};
  for (auto& p : int8_plans) models.push_back(p.model.get());
  std::vector<std::vector<double>> rounds(models.size());  // (models, repeats) ms
  for (int r = 0; r < a.repeats; ++r)
    for (size_t k = 0; k < models.size(); ++k)
      rounds[k].push_back(infer::time_median_ms([&] { models[k]->forward(x); }, 1));
  for (auto& v : rounds) std::sort(v.begin(), v.end());
  auto median_round = [&](size_t k) { return rounds[k][rounds[k].size() / 2]; };
  const double dense_ms = median_round(0), plan_ms = median_round(1);
  for (size_t k = 0; k < int8_plans.size(); ++k) int8_plans[k].ms = median_round(2 + k);
  // The plan must compute what the dense model computes.
  std::vector<float> yd = ck.model.forward(x).to_vector(), yp = plan.forward(x).to_vector();
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < yd.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(yd[i] - yp[i])));
    max_ref = std::max(max_ref, double(std::fabs(yd[i])));
  }
  double speedup = plan_ms > 0 ? dense_ms / plan_ms : 0.0;
  if (a.json) {
    nlohmann::json layers = nlohmann::json::array();
    for (auto& l : plan.layers) {
      nlohmann::json times = nlohmann::json::object();
      for (auto& t : l.times) times[t.format] = t.ms;
      layers.push_back({{"name", l.name},
                        {"type", l.conv ? "conv" : "linear"},
                        {"format", l.format()},
                        {"rows", l.rows},
                        {"cols", l.cols},
                        {"sparsity", l.sparsity()},
                        {"times_ms", times},
                        {"reason", l.reason}});
    }
    nlohmann::json j = {{"in", a.in},
                        {"batch", a.batch},
                        {"format", a.format},
                        {"threads", cpu::num_threads()},
                        {"repeats", a.repeats},
                        {"sparsity", prune::sparsity(ck.model)},
                        {"dense_ms", dense_ms},
                        {"plan_ms", plan_ms},
                        {"speedup", speedup},
                        {"plan_seconds", plan_s},
                        {"dense_micro_batch", dense.micro_batch},
                        {"micro_batch", plan.micro_batch},
                        {"split_samples", plan.split_samples},
                        {"schedule_reason", plan.schedule_reason},
                        {"max_rel_diff", max_ref > 0 ? max_diff / max_ref : max_diff},
                        {"layers", layers}};
    for (const Int8Plan& p : int8_plans) {
      nlohmann::json formats = nlohmann::json::object();
      for (auto& l : p.model->layers) formats[l.name] = l.format();
      j[p.key + "_ms"] = p.ms;
      j[p.key + "_speedup_vs_plan"] = p.ms > 0 ? plan_ms / p.ms : 0.0;
      j[p.key + "_formats"] = formats;
    }
    print_json_line(j);
  } else {
    std::printf("%s at batch %lld, %d threads: dense %.4f ms, plan %.4f ms, speedup %.2fx\n",
                a.in.c_str(), (long long)a.batch, cpu::num_threads(), dense_ms, plan_ms, speedup);
    for (auto& l : plan.layers)
      std::printf("  layer %-3s %-12s %s\n", l.name.c_str(), l.format().c_str(), l.reason.c_str());
    if (!plan.schedule_reason.empty())
      std::printf("  schedule  %s\n", plan.schedule_reason.c_str());
    for (const Int8Plan& p : int8_plans) {
      std::printf("%s %.4f ms, %.2fx the float plan\n", p.name, p.ms,
                  p.ms > 0 ? plan_ms / p.ms : 0.0);
      for (auto& l : p.model->layers)
        std::printf("  layer %-3s %-12s %s\n", l.name.c_str(), l.format().c_str(),
                    l.reason.c_str());
    }
  }
  return 0;
}

}  // namespace

Command add_bench_linear_command(CLI::App& app) {
  auto a = std::make_shared<LinearArgs>();
  app.add_option("--in", a->in, "input features")
      ->required()
      ->check(IntRange(int64_t(1), int64_t(1) << 20));
  app.add_option("--out", a->out, "output features")
      ->required()
      ->check(IntRange(int64_t(1), int64_t(1) << 20));
  app.add_option("--batch", a->batch, "batch size")
      ->check(IntRange(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--sparsity", a->sparsity, "fraction of zero weights (blocks for bsr)")
      ->check(FiniteNumber & CLI::Range(0.0, 0.9999))
      ->capture_default_str();
  app.add_option("--format", a->format, "sparse kernel")
      ->check(CLI::IsMember({"csr", "bsr", "nm"}))
      ->capture_default_str();
  app.add_option("--block", a->block, "BSR block ROWSxCOLS")->capture_default_str();
  app.add_option("--nm", a->nm, "N:M pattern for --format nm (sparsity 1 - N/M)")
      ->capture_default_str();
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  app.add_option("--repeats", a->repeats, "timed runs (median)")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  app.add_option("--seed", a->seed, "weights, mask and input")
      ->check(SeedNumber)
      ->capture_default_str();
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_bench_linear(*a); };
}

Command add_bench_model_command(CLI::App& app) {
  auto a = std::make_shared<ModelArgs>();
  app.add_option("--in,model", a->in, "checkpoint (.safetensors)")->check(NonEmptyPath)->required();
  app.add_option("--batch", a->batch, "batch size")
      ->check(IntRange(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--format", a->format, "plan: auto, or one format forced (dense|csr|bsr|nm)")
      ->check(PackFormatName)
      ->capture_default_str();
  app.add_flag("--no-shrink", a->no_shrink, "plan without shrinking zeroed neurons / filters");
  app.add_flag("--int8", a->int8,
               "also time the int8 plans (sprig quantize --int8-only, the same with every layer "
               "int8 dense, and its default mixed plan) in rounds alternating with the plan");
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  app.add_option("--repeats", a->repeats, "timed runs (median)")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  app.add_option("--seed", a->seed, "random input")->check(SeedNumber)->capture_default_str();
  add_device_flag(app, a->device);  // GPU: dense and plan both there
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_bench_model(*a); };
}

}  // namespace sprig::app
