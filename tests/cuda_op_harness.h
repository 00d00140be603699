#pragma once
// The op parity harness of the CUDA suites (tests/test_cuda_ops*.cpp), ggml test-backend-ops
// style: a list of op cases, each with inputs made on the host from a seeded Rng, run forward on
// the CPU and on the GPU (inputs .to(cuda)), outputs compared, then backward from the same
// random seed gradient on both and every input gradient compared; and a finite-difference check
// on the device of the GPU's gradients. The cases and their tolerances live in the suites.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "tests/cuda_test_util.h"
#include "tests/gradcheck.h"

namespace sprig::testing {

struct InputSpec {
  enum Kind {
    Uniform,         // U(-1, 1)
    AwayFromZero,    // U(-1, 1) pushed at least 0.05 from 0 (relu kinks, see gradcheck.h)
    Distinct,        // a shuffled grid 0.03 apart: no ties, no max changes within +-eps
    Labels,          // int32 in [0, classes)
    Positive,        // U(0.5, 2): variances
    ShiftedChannel,  // U(-1, 1) + 1000 on channel 1 (dim 1): a large mean over a unit spread
    Small,           // U(-0.01, 0.01): a variance of 3e-5, where batch norm's eps of 1e-5 counts
    SmallPositive    // U(1e-5, 1e-4): variances as small as eps
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

inline InputSpec in(Shape s, InputSpec::Kind k = InputSpec::Uniform) {
  return {std::move(s), k, true, 0};
}
// An input that takes no gradient (running statistics, fixed operands).
inline InputSpec fixed(Shape s, InputSpec::Kind k = InputSpec::Uniform) {
  return {std::move(s), k, false, 0};
}
inline InputSpec labels(int64_t n, int64_t classes) {
  return {{n}, InputSpec::Labels, false, classes};
}

constexpr double kElt = 1e-5, kGemm = 1e-4;

// The case's inputs on the host, from a seed of their own.
inline std::vector<Tensor> make_inputs(const OpCase& c, uint64_t seed) {
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
    float lo = -1.0f, hi = 1.0f;
    if (s.kind == InputSpec::Positive) lo = 0.5f, hi = 2.0f;
    if (s.kind == InputSpec::Small) lo = -0.01f, hi = 0.01f;
    if (s.kind == InputSpec::SmallPositive) lo = 1e-5f, hi = 1e-4f;
    Tensor t = Tensor::uniform(s.shape, lo, hi, rng);
    float* p = t.data();
    if (s.kind == InputSpec::AwayFromZero) testing::away_from_zero(t, 0.05f);
    if (s.kind == InputSpec::Distinct) {
      for (int64_t i = 0; i < n; ++i) p[i] = 0.03f * float(i - n / 2);
      for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(uint64_t(i) + 1)]);
    }
    if (s.kind == InputSpec::ShiftedChannel) {
      REQUIRE(s.shape.size() >= 2);
      REQUIRE(s.shape[1] >= 2);
      const int64_t C = s.shape[1], inner = n / (s.shape[0] * C);  // values per (sample, channel)
      for (int64_t b = 0; b < s.shape[0]; ++b)
        for (int64_t i = 0; i < inner; ++i) p[(b * C + 1) * inner + i] += 1000.0f;
    }
    out.push_back(t);
  }
  return out;
}

// inputs on device d, with requires_grad where the case asks for it.
inline std::vector<Tensor> inputs_on(const OpCase& c, const std::vector<Tensor>& host, Device d) {
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
inline Tensor random_seed_like(const Tensor& y, uint64_t seed) {
  Rng rng(seed);
  return Tensor::uniform(y.shape(), -1.0f, 1.0f, rng);
}

// Forward and every input gradient on the GPU against the CPU. Case i uses seed first_seed + i.
inline void check_op_parity(const std::vector<OpCase>& cases, uint64_t first_seed) {
  uint64_t seed = first_seed - 1;
  for (const OpCase& c : cases) {
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

// The GPU's gradients against central differences computed on the GPU.
// L(x) = sum(R * f(x)) evaluated on the device (float, accumulated in double by the sum
// kernel). As in tests/gradcheck.h, eps = 1e-2: the truncation error is ~eps^2 (0 for the
// piecewise linear and quadratic ops) and the float roundings of L+ and L- (a few ulp of |L|)
// cost ~4 * 2^-24 * |L| / eps. So |analytic - numeric| <= atol + 2e-2 |numeric| with atol =
// 2e-3 of the largest gradient of the input (capped at 2e-3, gradcheck.h's constant) plus
// that rounding term: ops whose gradients are all small (mean, the losses) are checked at
// their own scale. The inputs keep kinks (relu's 0, ties in a pooling window) farther than
// eps from every value. Seeds as check_op_parity's.
inline void check_op_finite_differences(const std::vector<OpCase>& cases, uint64_t first_seed) {
  const float eps = 1e-2f;
  const double rtol = 2e-2;
  uint64_t seed = first_seed - 1;
  for (const OpCase& c : cases) {
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

}  // namespace sprig::testing
