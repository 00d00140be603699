// The CUDA backend's ops against the CPU, ggml test-backend-ops style. Built with
// tests/cuda_main.cpp, which exits 77 (CTest: not run) without a usable GPU, so every case here
// may assume one.
//   - a table of op cases: inputs made on the host from a seeded Rng, the op run forward on the
//     CPU and on the GPU (inputs .to(cuda)), outputs compared, then backward from the same random
//     seed gradient on both and every input gradient compared; and a finite-difference check on
//     the device of the GPU's gradients
//   - the mask invariant through Adam and SGD-momentum steps on the device
//   - the caching allocator: a second identical training step does no cudaMalloc
//   - errors: mixed devices, data() on a GPU tensor, a bad label on the GPU
// The Backend methods no op reaches are in tests/test_cuda_kernels.cpp.
//
// Tolerances (relative, see check_close in tests/cuda_test_util.h):
//   element-wise ops and views: 1e-5 per element. Both devices do the same IEEE float operations
//     per element (division and sqrt are correctly rounded on the GPU without fast math); the
//     only difference is nvcc contracting a * b + c into an FMA, a rounding or two per element.
//   max pooling: 1e-5 of the largest value: with stride < kernel one dx adds several dy, in
//     another order on the GPU.
//   sum, mean, the losses: 1e-5 of the largest output. Both accumulate in double; exp/log on
//     the GPU are within 2 ulp of the host's.
//   matmul, linear, conv2d: 1e-4 of the largest output. cuBLAS and the CPU gemm sum the K
//     products in different orders (blocking, split-K). A float sum of K terms errs by at most
//     ~K * 6e-8 of the sum of their magnitudes; K is at most a few thousand here (a conv weight
//     gradient sums over N * P * Q), and random signs make the error ~sqrt(K) times smaller
//     than that bound, while the sum of magnitudes is within ~10x of the largest output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "kernels/cuda/runtime.cuh"
#include "nn/model.h"
#include "nn/optim.h"
#include "tests/cuda_test_util.h"
#include "tests/gradcheck.h"

using namespace sprig;
using namespace sprig::testing;

namespace {

// ---- the op table --------------------------------------------------------------------------

struct InputSpec {
  enum Kind {
    Uniform,       // U(-1, 1)
    AwayFromZero,  // U(-1, 1) pushed at least 0.05 from 0 (relu kinks, see gradcheck.h)
    Distinct,      // a shuffled grid 0.03 apart: no ties, no max changes within +-eps
    Labels,        // int32 in [0, classes)
  };
  Shape shape;
  Kind kind = Uniform;
  bool grad = true;
  int64_t classes = 0;
};

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  double rtol;      // forward and backward parity
  bool of_largest;  // tolerance relative to the largest value (reductions) or per element
  bool fd = true;   // finite differences on the device (off for kinked compositions)
};

InputSpec in(Shape s, InputSpec::Kind k = InputSpec::Uniform) {
  return {std::move(s), k, true, 0};
}
InputSpec labels(int64_t n, int64_t classes) {
  return {{n}, InputSpec::Labels, false, classes};
}

constexpr double kElt = 1e-5, kGemm = 1e-4;

Tensor conv(const std::vector<Tensor>& t, int64_t stride, int64_t pad, int64_t dil, bool bias) {
  return conv2d(t[0], t[1], bias ? t[2] : Tensor(), {stride, pad, dil});
}

std::vector<OpCase> op_cases() {
  using V = const std::vector<Tensor>&;
  const auto A = InputSpec::AwayFromZero, D = InputSpec::Distinct;
  std::vector<OpCase> c;
  // Element-wise and views.
  c.push_back({"add", {in({5, 7}), in({5, 7})}, [](V t) { return add(t[0], t[1]); }, kElt, false});
  c.push_back(
      {"sub", {in({3, 4, 5}), in({3, 4, 5})}, [](V t) { return sub(t[0], t[1]); }, kElt, false});
  c.push_back({"mul", {in({129}), in({129})}, [](V t) { return mul(t[0], t[1]); }, kElt, false});
  // More elements than one launch of blocks_for covers with one thread each: grid-stride loops.
  c.push_back(
      {"mul large", {in({70001}), in({70001})}, [](V t) { return mul(t[0], t[1]); }, kElt, false});
  c.push_back({"scale", {in({2, 3, 11})}, [](V t) { return scale(t[0], -1.7f); }, kElt, false});
  c.push_back({"relu", {in({4, 33}, A)}, [](V t) { return relu(t[0]); }, kElt, false});
  c.push_back({"reshape",
               {in({3, 4, 5})},
               [](V t) {
                 return scale(reshape(t[0], {5, -1}), 2.0f);
               },
               kElt,
               false});
  c.push_back({"flatten", {in({2, 3, 4, 5})}, [](V t) { return flatten(t[0]); }, kElt, false});
  c.push_back({"flatten(2) of relu",
               {in({2, 3, 4, 5}, A)},
               [](V t) { return flatten(relu(t[0]), 2); },
               kElt,
               false});
  // Reductions and losses.
  c.push_back({"sum", {in({1000})}, [](V t) { return sum(t[0]); }, kElt, true});
  c.push_back({"sum of one", {in({1, 1})}, [](V t) { return sum(t[0]); }, kElt, true});
  c.push_back({"mean", {in({7, 13})}, [](V t) { return mean(t[0]); }, kElt, true});
  c.push_back({"cross_entropy",
               {in({6, 10}), labels(6, 10)},
               [](V t) { return cross_entropy(t[0], t[1]); },
               kElt,
               true});
  c.push_back({"cross_entropy 1x3",
               {in({1, 3}), labels(1, 3)},
               [](V t) { return cross_entropy(t[0], t[1]); },
               kElt,
               true});
  c.push_back({"cross_entropy 300x37",
               {in({300, 37}), labels(300, 37)},
               [](V t) { return cross_entropy(t[0], t[1]); },
               kElt,
               true});
  c.push_back(
      {"mse_loss", {in({4, 9}), in({4, 9})}, [](V t) { return mse_loss(t[0], t[1]); }, kElt, true});
  c.push_back({"mse_loss large",
               {in({5000}), in({5000})},
               [](V t) { return mse_loss(t[0], t[1]); },
               kElt,
               true});
  // Products.
  c.push_back({"matmul 7x13x5",
               {in({7, 13}), in({13, 5})},
               [](V t) { return matmul(t[0], t[1]); },
               kGemm,
               true});
  c.push_back({"matmul 1x1x1",
               {in({1, 1}), in({1, 1})},
               [](V t) { return matmul(t[0], t[1]); },
               kGemm,
               true});
  c.push_back({"matmul 65x130x33",
               {in({65, 130}), in({130, 33})},
               [](V t) { return matmul(t[0], t[1]); },
               kGemm,
               true});
  c.push_back({"linear with bias",
               {in({5, 17}), in({9, 17}), in({9})},
               [](V t) { return linear(t[0], t[1], t[2]); },
               kGemm,
               true});
  c.push_back({"linear without bias",
               {in({64, 100}), in({30, 100})},
               [](V t) { return linear(t[0], t[1], Tensor()); },
               kGemm,
               true});
  c.push_back({"linear 1 sample",
               {in({1, 300}), in({100, 300}), in({100})},
               [](V t) { return linear(t[0], t[1], t[2]); },
               kGemm,
               true});
  // Convolutions: x (N, C, H, W), w (K, C, R, S), b (K).
  c.push_back({"conv 3x3 s1 p1 bias",
               {in({2, 3, 7, 9}), in({4, 3, 3, 3}), in({4})},
               [](V t) { return conv(t, 1, 1, 1, true); },
               kGemm,
               true});
  c.push_back({"conv 3x3 s2 p0 no bias",
               {in({2, 3, 9, 8}), in({5, 3, 3, 3})},
               [](V t) { return conv(t, 2, 0, 1, false); },
               kGemm,
               true});
  c.push_back({"conv 3x3 s2 p2 d2 bias",
               {in({1, 2, 11, 10}), in({3, 2, 3, 3}), in({3})},
               [](V t) { return conv(t, 2, 2, 2, true); },
               kGemm,
               true});
  c.push_back({"conv 1x1 bias",
               {in({3, 5, 4, 6}), in({7, 5, 1, 1}), in({7})},
               [](V t) { return conv(t, 1, 0, 1, true); },
               kGemm,
               true});
  c.push_back({"conv 1x1 s2 no bias",
               {in({2, 4, 7, 5}), in({3, 4, 1, 1})},
               [](V t) { return conv(t, 2, 0, 1, false); },
               kGemm,
               true});
  c.push_back({"conv 5x3 s1 p1",
               {in({2, 2, 8, 7}), in({3, 2, 5, 3}), in({3})},
               [](V t) { return conv(t, 1, 1, 1, true); },
               kGemm,
               true});
  c.push_back({"conv 2x2 s3 p1 odd",
               {in({1, 3, 5, 7}), in({2, 3, 2, 2})},
               [](V t) { return conv(t, 3, 1, 1, false); },
               kGemm,
               true});
  c.push_back({"conv 3x3 d3 p3 (taps in the padding)",
               {in({1, 1, 4, 4}), in({2, 1, 3, 3})},
               [](V t) { return conv(t, 1, 3, 3, false); },
               kGemm,
               true});
  c.push_back({"conv cnn2 layer 2",
               {in({4, 8, 28, 28}), in({16, 8, 3, 3}), in({16})},
               [](V t) { return conv(t, 1, 1, 1, true); },
               kGemm,
               true});
  // Max pooling: stride < kernel overlaps windows (dx sums several dy), padding is -inf.
  c.push_back({"max_pool2d k2 s2",
               {in({2, 3, 8, 8}, D)},
               [](V t) { return max_pool2d(t[0], 2); },
               kElt,
               true});
  c.push_back({"max_pool2d k3 s2 p1",
               {in({2, 2, 7, 9}, D)},
               [](V t) { return max_pool2d(t[0], 3, 2, 1); },
               kElt,
               true});
  c.push_back({"max_pool2d k3 s1 p1",
               {in({1, 2, 5, 6}, D)},
               [](V t) { return max_pool2d(t[0], 3, 1, 1); },
               kElt,
               true});
  c.push_back({"max_pool2d k2 s1 odd",
               {in({1, 3, 5, 7}, D)},
               [](V t) { return max_pool2d(t[0], 2, 1, 0); },
               kElt,
               true});
  c.push_back({"max_pool2d k3 s3 remainder",
               {in({1, 1, 10, 11}, D)},
               [](V t) { return max_pool2d(t[0], 3); },
               kElt,
               true});
  // A small network end to end: conv, relu, pool, flatten, linear, cross-entropy.
  c.push_back(
      {"conv relu pool linear cross_entropy",
       {in({3, 2, 9, 9}), in({4, 2, 3, 3}), in({4}), in({10, 64}), in({10}), labels(3, 10)},
       [](V t) {
         Tensor h = max_pool2d(relu(conv2d(t[0], t[1], t[2], {1, 1, 1})), 2);  // (3, 4, 4, 4)
         return cross_entropy(linear(flatten(h), t[3], t[4]), t[5]);
       },
       kGemm,
       true,
       /*fd=*/false});
  return c;
}

// The case's inputs on the host, from a seed of their own.
std::vector<Tensor> make_inputs(const OpCase& c, uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> out;
  for (const InputSpec& s : c.inputs) {
    const int64_t n = numel(s.shape);
    if (s.kind == InputSpec::Labels) {
      std::vector<int32_t> l(static_cast<size_t>(n));
      for (auto& v : l) v = int32_t(rng.below(uint64_t(s.classes)));
      out.push_back(Tensor::from_vector_i32(l, s.shape));
      continue;
    }
    Tensor t = Tensor::uniform(s.shape, -1.0f, 1.0f, rng);
    if (s.kind == InputSpec::AwayFromZero) testing::away_from_zero(t, 0.05f);
    if (s.kind == InputSpec::Distinct) {
      float* p = t.data();
      for (int64_t i = 0; i < n; ++i) p[i] = 0.03f * float(i - n / 2);
      for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(uint64_t(i) + 1)]);
    }
    out.push_back(t);
  }
  return out;
}

// inputs on device d, with requires_grad where the case asks for it.
std::vector<Tensor> inputs_on(const OpCase& c, const std::vector<Tensor>& host, Device d) {
  std::vector<Tensor> out;
  for (size_t k = 0; k < host.size(); ++k) {
    Tensor t = host[k].to(d);
    if (d.is_cpu()) t = t.clone();  // a fresh leaf, not the host copy itself
    if (c.inputs[k].grad) t.set_requires_grad(true);
    out.push_back(t);
  }
  return out;
}

// The seed gradient R: backward(R) gives the gradient of sum(R * y).
Tensor random_seed_like(const Tensor& y, uint64_t seed) {
  Rng rng(seed);
  return Tensor::uniform(y.shape(), -1.0f, 1.0f, rng);
}

}  // namespace

TEST_CASE("every op: forward and backward on the GPU match the CPU") {
  uint64_t seed = 100;
  for (const OpCase& c : op_cases()) {
    INFO("op case: ", c.name);
    const std::vector<Tensor> host = make_inputs(c, ++seed);
    std::vector<Tensor> xc = inputs_on(c, host, Device::cpu());
    std::vector<Tensor> xg = inputs_on(c, host, kGpu);
    for (const Tensor& t : xg) REQUIRE(t.device() == kGpu);

    Tensor yc = c.fn(xc), yg = c.fn(xg);
    REQUIRE(yg.device() == kGpu);
    REQUIRE(yg.shape() == yc.shape());
    check_close(yg.to_vector(), yc.to_vector(), c.rtol, c.of_largest, c.name + " forward");

    const Tensor R = random_seed_like(yc, seed * 31);
    yc.backward(R);
    yg.backward(R.to(kGpu));
    for (size_t k = 0; k < host.size(); ++k) {
      if (!c.inputs[k].grad) continue;
      const std::string what = c.name + " d/input" + std::to_string(k);
      REQUIRE_MESSAGE(xc[k].grad().defined(), what, ": no gradient on the CPU");
      REQUIRE_MESSAGE(xg[k].grad().defined(), what, ": no gradient on the GPU");
      CHECK(xg[k].grad().device() == kGpu);
      CHECK(xg[k].grad().shape() == xc[k].shape());
      check_close(xg[k].grad().to_vector(), xc[k].grad().to_vector(), c.rtol, c.of_largest, what);
    }
  }
}

TEST_CASE("every op: GPU gradients match central differences computed on the GPU") {
  // L(x) = sum(R * f(x)) evaluated on the device (float, accumulated in double by the sum
  // kernel). As in tests/gradcheck.h, eps = 1e-2: the truncation error is ~eps^2 (0 for the
  // piecewise linear and quadratic ops) and the float roundings of L+ and L- (a few ulp of |L|)
  // cost ~4 * 2^-24 * |L| / eps. So |analytic - numeric| <= atol + 2e-2 |numeric| with atol =
  // 2e-3 of the largest gradient of the input (capped at 2e-3, gradcheck.h's constant) plus
  // that rounding term: ops whose gradients are all small (mean, the losses) are checked at
  // their own scale. The inputs keep kinks (relu's 0, ties in a pooling window) farther than
  // eps from every value.
  const float eps = 1e-2f;
  const double rtol = 2e-2;
  uint64_t seed = 100;
  for (const OpCase& c : op_cases()) {
    ++seed;
    if (!c.fd) continue;
    INFO("op case: ", c.name);
    const std::vector<Tensor> host = make_inputs(c, seed);
    std::vector<Tensor> xg = inputs_on(c, host, kGpu);
    Tensor y = c.fn(xg);
    const Tensor R = random_seed_like(y, seed * 31).to(kGpu);
    y.backward(R);

    NoGradGuard no_grad;
    std::vector<Tensor> plain;  // the same inputs on the GPU without autograd
    for (const Tensor& t : host) plain.push_back(t.to(kGpu));
    auto loss = [&](const std::vector<Tensor>& xs) {
      Tensor L = sum(mul(c.fn(xs), R));
      REQUIRE(L.device() == kGpu);
      return double(L.item());
    };
    const double rounding = 4.0 * std::ldexp(1.0, -24) * std::fabs(loss(plain)) / double(eps);
    Rng pick(seed);
    for (size_t k = 0; k < host.size(); ++k) {
      if (!c.inputs[k].grad) continue;
      const std::vector<float> analytic = xg[k].grad().to_vector();
      double largest = 0.0;
      for (float g : analytic) largest = std::max(largest, double(std::fabs(g)));
      const double atol = 2e-3 * std::min(1.0, largest) + rounding;
      const int64_t n = host[k].numel();
      // The first and last element (edges of grids and tiles) and a few anywhere.
      std::vector<int64_t> idx = {0, n - 1};
      for (int j = 0; j < 4; ++j) idx.push_back(int64_t(pick.below(uint64_t(n))));
      for (int64_t i : idx) {
        Tensor h = host[k].clone();
        const float saved = h.data()[i];
        h.data()[i] = saved + eps;
        std::vector<Tensor> xs = plain;
        xs[k] = h.to(kGpu);
        const double plus = loss(xs);
        h.data()[i] = saved - eps;
        xs[k] = h.to(kGpu);
        const double minus = loss(xs);
        const double numeric = (plus - minus) / (2.0 * double(eps));
        const double err = std::fabs(double(analytic[size_t(i)]) - numeric);
        CHECK_MESSAGE(err <= atol + rtol * std::fabs(numeric), c.name, " input ", k, " element ", i,
                      ": gpu analytic ", analytic[size_t(i)], " vs numeric ", numeric);
      }
    }
  }
}

// ---- the mask invariant, the allocator, errors --------------------------------------------

namespace {

// A masked (12, 20) parameter and a loss whose gradient is nonzero at the pruned positions
// too: sum(R * w) + mse(w * w, T).
struct MaskedRun {
  nn::ParameterPtr p;
  std::vector<uint8_t> keep;
  Tensor R, T;  // (12, 20) on the parameter's device
};

MaskedRun masked_run(Device d) {
  Rng rng(21);
  MaskedRun run;
  run.p = std::make_shared<nn::Parameter>("w", Tensor::uniform({12, 20}, -1, 1, rng));
  run.keep.resize(240);
  for (auto& k : run.keep) k = rng.uniform() < 0.4f ? 0 : 1;
  run.p->set_mask(u8_tensor(run.keep, {12, 20}));
  run.R = Tensor::uniform({12, 20}, -1, 1, rng).to(d);
  run.T = Tensor::uniform({12, 20}, -1, 1, rng).to(d);
  run.p->to(d);
  return run;
}

void train_masked(MaskedRun& run, nn::Optimizer& opt, int steps) {
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    const Tensor& w = run.p->value;
    Tensor loss = add(sum(mul(w, run.R)), mse_loss(mul(w, w), run.T));
    loss.backward();
    opt.step();
  }
}

}  // namespace

TEST_CASE("mask invariant on the GPU: Adam and SGD-momentum keep pruned entries exactly 0") {
  for (bool adam : {true, false}) {
    INFO(std::string(adam ? "adam" : "sgd momentum nesterov"));
    MaskedRun cpu_run = masked_run(Device::cpu()), gpu_run = masked_run(kGpu);
    REQUIRE(gpu_run.p->device() == kGpu);
    REQUIRE(gpu_run.p->mask->keep.device() == kGpu);
    auto make = [&](MaskedRun& r) -> std::unique_ptr<nn::Optimizer> {
      if (adam)
        return std::make_unique<nn::Adam>(
            std::vector<nn::ParameterPtr>{r.p},
            nn::AdamOptions{0.05f, 0.9f, 0.999f, 1e-8f, 0.01f, false});
      return std::make_unique<nn::SGD>(std::vector<nn::ParameterPtr>{r.p},
                                       nn::SGDOptions{0.05f, 0.9f, 0.0f, 0.01f, true});
    };
    auto oc = make(cpu_run), og = make(gpu_run);
    train_masked(cpu_run, *oc, 6);
    train_masked(gpu_run, *og, 6);

    // The gradient reaches pruned weights (R), so only the fused masking keeps them at 0.
    const std::vector<float> grad = gpu_run.p->grad().to_vector();
    int64_t pruned_with_grad = 0;
    for (size_t i = 0; i < 240; ++i) pruned_with_grad += !gpu_run.keep[i] && grad[i] != 0.0f;
    CHECK(pruned_with_grad > 0);

    const std::vector<float> w = gpu_run.p->value.to_vector();
    REQUIRE_FALSE(gpu_run.p->state.empty());
    for (size_t i = 0; i < 240; ++i)
      if (!gpu_run.keep[i]) REQUIRE_MESSAGE(w[i] == 0.0f, "pruned weight ", i, " is ", w[i]);
    for (auto& kv : gpu_run.p->state) {
      CHECK(kv.second.device() == kGpu);
      const std::vector<float> s = kv.second.to_vector();
      for (size_t i = 0; i < 240; ++i)
        if (!gpu_run.keep[i])
          REQUIRE_MESSAGE(s[i] == 0.0f, kv.first, "[", i, "] of a pruned weight is ", s[i]);
      REQUIRE(cpu_run.p->state.count(kv.first));
      // Six steps of the same float formulas: a few ulp per step and element.
      check_close(s, cpu_run.p->state.at(kv.first).to_vector(), 1e-4, true, kv.first);
    }
    check_close(w, cpu_run.p->value.to_vector(), 1e-4, true, "weights");
    CHECK(gpu_run.p->count_nonzero() == cpu_run.p->count_nonzero());
  }
}

TEST_CASE("after a warm-up step, an identical training step does no cudaMalloc") {
  nn::Model model =
      nn::build_model("conv(4,3,pad=1) relu maxpool(2) flatten linear(10)", {1, 12, 12}, 0);
  model.to(kGpu);
  REQUIRE(model.device() == kGpu);
  nn::Adam opt(model.parameters(), nn::AdamOptions{});
  Rng rng(5);
  const Tensor x = Tensor::uniform({16, 1, 12, 12}, 0, 1, rng);  // host batch, copied each step
  std::vector<int32_t> l(16);
  for (auto& v : l) v = int32_t(rng.below(10));
  const Tensor y = Tensor::from_vector_i32(l, {16});
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = cross_entropy(model.forward(x.to(kGpu)), y.to(kGpu));
    loss.backward();
    opt.step();
    return loss.item();
  };
  step();  // the first step allocates gradients and optimizer state
  step();
  const cuda::DeviceAllocatorStats before = cuda::device_allocator_stats();
  const float loss = step();
  const cuda::DeviceAllocatorStats after = cuda::device_allocator_stats();
  CHECK(std::isfinite(loss));
  CHECK(after.system_allocs == before.system_allocs);
  CHECK(after.reuses > before.reuses);               // the step did allocate, from the cache
  CHECK(after.in_use_bytes == before.in_use_bytes);  // and gave it all back
}

TEST_CASE("errors: mixed devices, host access to GPU memory, a bad label on the GPU") {
  Tensor hc = Tensor::ones({2, 2}), hg = Tensor::ones({2, 2}).to(kGpu);
  auto names_both = [](const std::string& e) {
    CHECK_MESSAGE(contains(e, "cpu"), e);
    CHECK_MESSAGE(contains(e, "cuda:0"), e);
  };
  names_both(error_of([&] { add(hc, hg); }));
  names_both(error_of([&] { sub(hg, hc); }));
  names_both(error_of([&] { mul(hg, hc); }));
  names_both(error_of([&] { matmul(hc, hg); }));
  names_both(error_of([&] { linear(hg, hc, Tensor()); }));
  names_both(error_of([&] { linear(hg, hg, Tensor::ones({2})); }));  // bias on the CPU
  names_both(error_of([&] { mse_loss(hg, hc); }));
  names_both(error_of([&] {
    conv2d(Tensor::ones({1, 1, 3, 3}), Tensor::ones({1, 1, 2, 2}).to(kGpu), Tensor());
  }));
  // Labels may stay on the host with GPU logits (checked there, then uploaded): same loss.
  const Tensor host_labels = Tensor::from_vector_i32({0, 1}, {2});
  CHECK(cross_entropy(hg, host_labels).item() == cross_entropy(hg, host_labels.to(kGpu)).item());
  const std::string host_bad =
      error_of([&] { cross_entropy(hg, Tensor::from_vector_i32({0, 2}, {2})); });
  CHECK_MESSAGE(contains(host_bad, "label 2 at index 1"), host_bad);

  // Host pointers to GPU memory: data() and data_as() throw, ptr() is fine.
  const std::string e = error_of([&] { hg.data(); });
  CHECK_MESSAGE(contains(e, "GPU"), e);
  CHECK_MESSAGE(contains(e, "to(Device::cpu())"), e);
  CHECK_THROWS_AS(Tensor::zeros({3}, DType::I32, kGpu).data_as<int32_t>(), Error);
  CHECK(hg.ptr() != nullptr);
  CHECK(hg.to(Device::cpu()).data()[3] == 1.0f);

  // A label outside [0, C) on the GPU is found and named, with its position.
  Tensor logits = Tensor::zeros({4, 5}, DType::F32, kGpu);
  const std::string bad = error_of([&] {
    cross_entropy(logits, Tensor::from_vector_i32({0, 4, 7, 1}, {4}).to(kGpu));
  });
  CHECK_MESSAGE(contains(bad, "label 7"), bad);
  CHECK_MESSAGE(contains(bad, "index 2"), bad);
  const std::string neg = error_of([&] {
    cross_entropy(logits, Tensor::from_vector_i32({-3, 0, 0, 0}, {4}).to(kGpu));
  });
  CHECK_MESSAGE(contains(neg, "label -3"), neg);
  // The device is still usable after the errors (nothing was launched with bad inputs).
  CHECK(cross_entropy(logits, Tensor::from_vector_i32({0, 4, 2, 1}, {4}).to(kGpu)).item() ==
        doctest::Approx(std::log(5.0)).epsilon(1e-6));
  gpu_be().synchronize();
}
