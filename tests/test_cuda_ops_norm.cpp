// Batch normalisation, average pooling and the option-A shortcut on the GPU against the CPU:
// the residual networks' ops, in tests/cuda_op_harness.h's parity harness (forward, every input
// gradient, central differences on the device), plus what the harness cannot see:
//   - the running-statistic update of training-mode batch_norm (momentum 0.1, unbiased
//     variance), against the CPU and against a double computation here, then evaluation mode
//     with the updated statistics; running statistics on another device are an error
//   - residual blocks with BN and identity, option-A and option-B shortcuts through nn::Model
//     (build_model, Model::to): forward, backward, running statistics, evaluation mode
// Built with tests/cuda_main.cpp, which exits 77 (CTest: not run) without a usable GPU.
//
// Tolerances (relative, see check_close in tests/cuda_test_util.h):
//   batch_norm: 1e-5 of the largest value. Both devices take the statistics and the gradient
//     sums in double (in other orders: ~1e-16 relative, invisible once rounded to float) and
//     then do the same float operations per element, which nvcc may contract into FMAs. The
//     outputs (x - mean) * scale + beta and dx = a dy + b (x - mean) + d are differences of
//     such products and may cancel, so one rounding of a term is measured against the largest
//     value, not the element.
//   avg_pool2d, global_avg_pool2d, shortcut: 1e-5 per element. The GPU adds each window in the
//     CPU's order (float for windows, double for planes) and divides once, and the shortcut
//     copies: the results are identical.
//   convolutions and linear layers inside a composition: 1e-4 of the largest value, as
//     tests/test_cuda_ops.cpp's gemm bound.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "nn/model.h"
#include "tests/cuda_op_harness.h"
#include "tests/cuda_test_util.h"

using namespace sprig;
using namespace sprig::testing;

namespace {

using V = const std::vector<Tensor>&;

// batch_norm on inputs x, [weight, bias,] running_mean, running_var. Training mode uses momentum
// 0, so the running statistics stay as they are through every finite-difference evaluation (the
// update itself is checked on its own below). Evaluation mode reads random running statistics.
OpCase bn_case(const std::string& name, Shape x, bool affine, bool training,
               InputSpec::Kind kind = InputSpec::Uniform, bool fd = true,
               InputSpec::Kind var_kind = InputSpec::Positive) {
  const int64_t C = x[1];
  OpCase c{name, {in(x, kind)}, nullptr, kElt, true, fd};
  if (affine) c.inputs.insert(c.inputs.end(), {in({C}), in({C})});  // weight, bias (C)
  c.inputs.push_back(fixed({C}));                                   // running_mean (C)
  c.inputs.push_back(fixed({C}, var_kind));                         // running_var (C)
  c.fn = [affine, training](V t) {
    const size_t r = affine ? 3 : 1;  // where the running statistics start
    return batch_norm(t[0], affine ? t[1] : Tensor(), affine ? t[2] : Tensor(), t[r], t[r + 1],
                      training, /*momentum=*/0.0f);
  };
  return c;
}

std::vector<OpCase> norm_pool_cases() {
  const auto S = InputSpec::ShiftedChannel;
  std::vector<OpCase> c;
  // Batch norm: (N, C) and (N, C, H, W), odd sizes, with and without weight and bias.
  c.push_back(bn_case("batch_norm train (N, C) 7x5", {7, 5}, true, true));
  c.push_back(bn_case("batch_norm train 3x5x7x3", {3, 5, 7, 3}, true, true));
  c.push_back(bn_case("batch_norm train no affine 2x4x5x5", {2, 4, 5, 5}, false, true));
  c.push_back(bn_case("batch_norm train (N, C) no affine 5x3", {5, 3}, false, true));
  // 4 * 143 = 572 values per channel: more than one block's 256 threads, so each thread sums
  // several and the block reduction adds partial sums of unequal counts.
  c.push_back(bn_case("batch_norm train 4x3x11x13", {4, 3, 11, 13}, true, true));
  c.push_back(bn_case("batch_norm eval 3x5x7x3", {3, 5, 7, 3}, true, false));
  c.push_back(bn_case("batch_norm eval (N, C) no affine 6x9", {6, 9}, false, false));
  c.push_back(bn_case("batch_norm eval (N, C) 1x4", {1, 4}, true, false));
  // Channel 1 has mean 1000 and spread 1: a one-pass float variance (E[x^2] - E[x]^2) loses it
  // to cancellation. No finite differences here: the mean itself is stored as a float with an
  // ulp of 6e-5 at 1000, and a +-eps step that moves it by one ulp shifts the whole channel's
  // output coherently, moving L by more than the check resolves at float precision.
  c.push_back(bn_case("batch_norm train large mean 4x3x5x5", {4, 3, 5, 5}, true, true, S, false));
  c.push_back(bn_case("batch_norm train (N, C) large mean 9x4", {9, 4}, true, true, S, false));
  // Variances near eps, where a wrong or dropped eps shows (with unit variances it moves the
  // output by 1e-5, within the tolerance). Training mode without finite differences: the
  // harness's step of 1e-2 is as large as the values' spread.
  c.push_back(bn_case("batch_norm train small spread 3x4x5x5", {3, 4, 5, 5}, true, true,
                      InputSpec::Small, false));
  c.push_back(bn_case("batch_norm eval small running_var 6x5", {6, 5}, true, false,
                      InputSpec::Uniform, true, InputSpec::SmallPositive));

  // Average pooling: padding counts as zeros, windows of the remainder are dropped.
  auto avg = [&](const std::string& name, Shape x, int64_t k, int64_t s, int64_t p) {
    c.push_back({name, {in(x)}, [=](V t) { return avg_pool2d(t[0], k, s, p); }, kElt, false});
  };
  avg("avg_pool2d k2 s2", {2, 3, 8, 8}, 2, 2, 0);
  avg("avg_pool2d k3 s2 p1", {2, 2, 7, 9}, 3, 2, 1);
  avg("avg_pool2d k3 s1 p1", {1, 2, 5, 6}, 3, 1, 1);
  avg("avg_pool2d k2 s1 odd", {1, 3, 5, 7}, 2, 1, 0);
  avg("avg_pool2d k3 s3 remainder", {1, 1, 10, 11}, 3, 3, 0);
  avg("avg_pool2d k4 s3 p2 remainder", {2, 1, 9, 10}, 4, 3, 2);
  avg("avg_pool2d k1 s2", {1, 2, 5, 5}, 1, 2, 0);
  // Global average pooling: odd planes, planes of one value, a plane far larger than a block.
  auto gap = [](V t) { return global_avg_pool2d(t[0]); };
  c.push_back({"global_avg_pool2d 2x3x5x7", {in({2, 3, 5, 7})}, gap, kElt, false});
  c.push_back({"global_avg_pool2d 3x4x1x1", {in({3, 4, 1, 1})}, gap, kElt, false});
  c.push_back({"global_avg_pool2d 1x2x97x103", {in({1, 2, 97, 103})}, gap, kElt, false});
  // The option-A shortcut: centred or explicit zero channels, strides 1 to 3, odd planes
  // (ceil(H / stride) rows, the last from the remainder).
  auto sc = [&](const std::string& name, Shape x, int64_t out, int64_t s, int64_t pad_lo) {
    c.push_back({name, {in(x)}, [=](V t) { return shortcut(t[0], out, s, pad_lo); }, kElt, false});
  };
  sc("shortcut centred 4->8 s2", {2, 4, 7, 9}, 8, 2, -1);
  sc("shortcut centred odd 2->5 s3", {2, 2, 7, 8}, 5, 3, -1);
  sc("shortcut centred 16->32 s2 9x9", {1, 16, 9, 9}, 32, 2, -1);
  sc("shortcut pad_lo 0 3->7 s1", {2, 3, 5, 5}, 7, 1, 0);
  sc("shortcut pad_lo at the end 3->6 s3", {1, 3, 6, 5}, 6, 3, 3);
  sc("shortcut identity 3->3 s1", {2, 3, 4, 4}, 3, 1, -1);
  // A residual block as ops: relu(bn(conv(x)) + shortcut(x)), average pooling, global average
  // pooling, linear, cross-entropy. Kinked (relu), so no finite differences.
  c.push_back({"conv bn + shortcut relu avg_pool gap linear cross_entropy",
               {in({3, 2, 7, 7}), in({4, 2, 3, 3}), in({4}), in({4}), fixed({4}),
                fixed({4}, InputSpec::Positive), in({5, 4}), in({5}), labels(3, 5)},
               [](V t) {
                 Tensor h = batch_norm(conv2d(t[0], t[1], Tensor(), {2, 1, 1}), t[2], t[3], t[4],
                                       t[5], true, 0.0f);                // (3, 4, 4, 4)
                 h = avg_pool2d(relu(add(h, shortcut(t[0], 4, 2))), 2);  // (3, 4, 2, 2)
                 h = flatten(global_avg_pool2d(h));                      // (3, 4)
                 return cross_entropy(linear(h, t[6], t[7]), t[8]);
               },
               kGemm,
               true,
               /*fd=*/false});
  return c;
}

}  // namespace

TEST_CASE("batch_norm, avg_pool2d, global_avg_pool2d, shortcut: GPU matches the CPU") {
  check_op_parity(norm_pool_cases(), 501);
}

TEST_CASE(
    "batch_norm, avg_pool2d, global_avg_pool2d, shortcut: GPU gradients match central "
    "differences computed on the GPU") {
  check_op_finite_differences(norm_pool_cases(), 501);
}

TEST_CASE("batch_norm: the running statistics update on the GPU equals the CPU's") {
  // Three training steps with momentum 0.1 from random running statistics, then evaluation
  // mode with what they became. Expected, as PyTorch: running = 0.9 running + 0.1 batch, the
  // batch variance unbiased (n / (n - 1)). Both devices and the double computation here take
  // the batch statistics in double and round the update to float once per step, so they agree
  // to an ulp or two: 1e-6 of the largest value.
  struct Case {
    const char* name;
    Shape x;
    bool shifted;  // channel 1 around 1000
  };
  const float momentum = 0.1f;
  for (const Case& k : {Case{"(N, C) 6x5", {6, 5}, false}, Case{"3x4x5x7", {3, 4, 5, 7}, false},
                        Case{"large mean 4x3x3x3", {4, 3, 3, 3}, true}}) {
    INFO(k.name);
    Rng rng(77);
    const int64_t N = k.x[0], C = k.x[1], HW = numel(k.x) / (N * C), n = N * HW;
    Tensor weight = Tensor::uniform({C}, 0.5f, 1.5f, rng), bias = Tensor::uniform({C}, -1, 1, rng);
    Tensor rmc = Tensor::uniform({C}, -1, 1, rng), rvc = Tensor::uniform({C}, 0.5f, 2, rng);
    const std::vector<float> rm0 = rmc.to_vector(), rv0 = rvc.to_vector();
    std::vector<double> want_mean(rm0.begin(), rm0.end()), want_var(rv0.begin(), rv0.end());
    Tensor rmg = rmc.to(kGpu), rvg = rvc.to(kGpu);  // (C) each, on the input's device
    const Tensor wg = weight.to(kGpu), bg = bias.to(kGpu);
    for (int step = 0; step < 3; ++step) {
      Tensor x = Tensor::uniform(k.x, -1, 1, rng);  // (N, C[, H, W])
      float* p = x.data();
      if (k.shifted)
        for (int64_t b = 0; b < N; ++b)
          for (int64_t i = 0; i < HW; ++i) p[(b * C + 1) * HW + i] += 1000.0f;
      batch_norm(x, weight, bias, rmc, rvc, true, momentum);
      batch_norm(x.to(kGpu), wg, bg, rmg, rvg, true, momentum);
      for (int64_t c = 0; c < C; ++c) {  // two passes in double, as a textbook would
        double s = 0.0, sq = 0.0;
        for (int64_t b = 0; b < N; ++b)
          for (int64_t i = 0; i < HW; ++i) s += p[(b * C + c) * HW + i];
        const double mean = s / double(n);
        for (int64_t b = 0; b < N; ++b)
          for (int64_t i = 0; i < HW; ++i) sq += std::pow(p[(b * C + c) * HW + i] - mean, 2);
        const double m = momentum;
        want_mean[c] = float((1 - m) * want_mean[c] + m * mean);
        want_var[c] = float((1 - m) * want_var[c] + m * sq / double(n - 1));
      }
      const std::string at = " after step " + std::to_string(step + 1);
      REQUIRE(rmg.device() == kGpu);
      check_close(rmg.to_vector(), rmc.to_vector(), 1e-6, true, "running_mean" + at);
      check_close(rvg.to_vector(), rvc.to_vector(), 1e-6, true, "running_var" + at);
      const std::vector<float> wm(want_mean.begin(), want_mean.end());
      const std::vector<float> wv(want_var.begin(), want_var.end());
      check_close(rmg.to_vector(), wm, 1e-6, true, "running_mean vs double" + at);
      check_close(rvg.to_vector(), wv, 1e-6, true, "running_var vs double" + at);
    }
    // Evaluation mode normalises with the updated statistics and leaves them alone.
    Rng xr(78);
    const Tensor x = Tensor::uniform(k.x, -2, 2, xr);
    const Tensor yc = batch_norm(x, weight, bias, rmc, rvc, false);
    const Tensor yg = batch_norm(x.to(kGpu), wg, bg, rmg, rvg, false);
    check_close(yg.to_vector(), yc.to_vector(), kElt, true, "evaluation mode");
    check_close(rmg.to_vector(), rmc.to_vector(), 1e-6, true, "running_mean after eval");

    // The running statistics must live on the input's device: never a silent copy.
    const std::string e = error_of([&] { batch_norm(x.to(kGpu), wg, bg, rmc, rvg, true); });
    CHECK_MESSAGE(contains(e, "running_mean"), e);
    CHECK_MESSAGE(contains(e, "cpu"), e);
    CHECK_MESSAGE(contains(e, "cuda:0"), e);
    CHECK_THROWS_AS(batch_norm(x, weight, bias, rmc, rvg, false), Error);
  }
}

namespace {

// Random BatchNorm weights and biases (they start at 1 and 0, which would hide a swapped
// scale and shift) and running statistics, the same on every model given the same seed.
void randomize_bn(nn::Model& m, uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, p] : m.named_parameters()) {
    if (!p->norm_affine) continue;
    const bool scale = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    float* v = p->value.data();
    for (int64_t i = 0; i < p->value.numel(); ++i)
      v[i] = scale ? rng.uniform(0.5f, 1.5f) : rng.uniform(-0.5f, 0.5f);
  }
  for (auto& [name, b] : m.named_buffers()) {
    const bool var = name.find("running_var") != std::string::npos;
    float* v = b->data();
    for (int64_t i = 0; i < b->numel(); ++i)
      v[i] = var ? rng.uniform(0.5f, 2.0f) : rng.uniform(-0.5f, 0.5f);
  }
}

}  // namespace

TEST_CASE("residual blocks with BN through nn::Model: GPU matches the CPU") {
  // An identity block, then a downsampling block with an option-A (zero-padded channels) or an
  // option-B (1x1 conv + BN) shortcut. The convolutions before a BN have no bias, as in a ResNet:
  // BN removes any constant, so such a bias's gradient is 0 up to rounding and would compare
  // rounding noise with rounding noise.
  const std::string body =
      "res[conv(3,3,pad=1,bias=0) bn relu conv(3,3,pad=1,bias=0) bn] "
      "res[conv(6,3,stride=2,pad=1,bias=0) bn relu conv(6,3,pad=1,bias=0) bn | ";
  for (const std::string sc : {"shortcut(6,stride=2)", "conv(6,1,stride=2,bias=0) bn"}) {
    const std::string spec = body + sc + "] gap flatten linear(4)";
    INFO(spec);
    const Shape in_shape = {3, 7, 7};  // odd: the stride-2 conv and shortcut both give 4x4
    nn::Model mc = nn::build_model(spec, in_shape, 9), mg = nn::build_model(spec, in_shape, 9);
    randomize_bn(mc, 10);
    randomize_bn(mg, 10);
    mg.to(kGpu);
    for (auto& p : mg.parameters()) REQUIRE(p->device() == kGpu);
    for (auto& [name, b] : mg.named_buffers()) REQUIRE_MESSAGE(b->device() == kGpu, name);

    Rng rng(11);
    const Tensor x = Tensor::uniform({4, 3, 7, 7}, -1, 1, rng);  // (N, C, H, W) on the host
    const Tensor y = Tensor::from_vector_i32({0, 3, 1, 3}, {4});
    Tensor xc = x.clone(), xg = x.to(kGpu);
    xc.set_requires_grad(true);
    xg.set_requires_grad(true);
    const Tensor logits_c = mc.forward(xc), logits_g = mg.forward(xg);  // (4, 4), training mode
    check_close(logits_g.to_vector(), logits_c.to_vector(), kGemm, true, "logits");
    Tensor lc = cross_entropy(logits_c, y), lg = cross_entropy(logits_g, y.to(kGpu));
    CHECK(std::fabs(lg.item() - lc.item()) <= kGemm * std::fabs(lc.item()));
    lc.backward();
    lg.backward();
    check_close(xg.grad().to_vector(), xc.grad().to_vector(), kGemm, true, "d/input");
    const auto pc = mc.named_parameters(), pg = mg.named_parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      REQUIRE(pg[i].second->grad().defined());
      CHECK(pg[i].second->grad().device() == kGpu);
      check_close(pg[i].second->grad().to_vector(), pc[i].second->grad().to_vector(), kGemm, true,
                  "d/" + pc[i].first);
    }
    // The training forward moved the running statistics on each device by the same amount.
    const auto bc = mc.named_buffers(), bg = mg.named_buffers();
    REQUIRE(bc.size() == bg.size());
    for (size_t i = 0; i < bc.size(); ++i) {
      CHECK(bg[i].second->device() == kGpu);
      check_close(bg[i].second->to_vector(), bc[i].second->to_vector(), kGemm, true, bc[i].first);
    }
    // Evaluation mode: the running statistics normalise.
    mc.net->eval();
    mg.net->eval();
    NoGradGuard no_grad;
    check_close(mg.forward(x.to(kGpu)).to_vector(), mc.forward(x).to_vector(), kGemm, true,
                "evaluation-mode logits");
  }
}
