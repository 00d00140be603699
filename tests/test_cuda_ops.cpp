// The CUDA backend's ops against the CPU, ggml test-backend-ops style. Built with
// tests/cuda_main.cpp, which exits 77 (CTest: not run) without a usable GPU, so every case here
// may assume one.
//   - a table of op cases: inputs made on the host from a seeded Rng, the op run forward on the
//     CPU and on the GPU (inputs .to(cuda)), outputs compared, then backward from the same random
//     seed gradient on both and every input gradient compared; and a finite-difference check on
//     the device of the GPU's gradients (the harness: tests/cuda_op_harness.h; batch norm,
//     average pooling and the shortcut have their cases in tests/test_cuda_ops_norm.cpp)
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
#include "tests/cuda_op_harness.h"
#include "tests/cuda_test_util.h"

using namespace sprig;
using namespace sprig::testing;

namespace {

// ---- the op table --------------------------------------------------------------------------

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
  // Fake quantisation (QAT): the same codes on both devices (IEEE division, round half to even);
  // straight-through gradients, which no finite difference describes (fd off). The range
  // [-0.3, 0.975] clamps part of U(-1, 1) at both ends.
  c.push_back({"fake_quantize",
               {in({5, 37})},
               [](V t) { return fake_quantize(t[0], 0.005f, 60); },
               kElt,
               false,
               /*fd=*/false});
  c.push_back({"fake_quantize_per_channel",
               {in({6, 3, 2, 2})},
               [](V t) { return fake_quantize_per_channel(t[0]); },
               kElt,
               false,
               /*fd=*/false});
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

}  // namespace

TEST_CASE("every op: forward and backward on the GPU match the CPU") {
  check_op_parity(op_cases(), 101);
}

TEST_CASE("every op: GPU gradients match central differences computed on the GPU") {
  check_op_finite_differences(op_cases(), 101);
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
  const std::string host_bad = error_of([&] {
    cross_entropy(hg, Tensor::from_vector_i32({0, 2}, {2}));
  });
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
