#pragma once
// Finite-difference gradient checking for the tests.
//
// The function under test maps inputs to one output tensor y. The scalar objective is
// L = sum_i r_i * y_i with fixed random weights r, so every output element receives a
// different upstream gradient (a plain sum would hide transposed or swapped gradients).
// L is accumulated in double; central differences with step eps then have an error of about
// eps^2 (truncation) + 1e-7 / eps (float32 rounding of y), so eps = 1e-2 gives ~1e-4.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"

namespace sprig::testing {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

inline double weighted_sum(const Tensor& y, const std::vector<float>& r) {
  const float* p = y.data();
  double s = 0.0;
  for (int64_t i = 0; i < y.numel(); ++i) s += double(r[i]) * double(p[i]);
  return s;
}

// Checks d(L)/d(inputs[k]) for every k with requires_grad set. Returns the worst error seen,
// measured as |analytic - numeric| / (atol + rtol * |numeric|) (<= 1 passes).
inline double check_gradients(const Fn& f, std::vector<Tensor> inputs, float eps = 1e-2f,
                              double rtol = 2e-2, double atol = 2e-3, uint64_t seed = 7) {
  for (auto& t : inputs)
    if (t.requires_grad()) t.clear_grad();
  Tensor y = f(inputs);
  Rng rng(seed);
  std::vector<float> r(y.numel());
  for (auto& v : r) v = rng.uniform(-1.0f, 1.0f);
  // Analytic: backward with seed r is the gradient of sum(r * y).
  y.backward(Tensor::from_vector(r, y.shape()));

  double worst = 0.0;
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    // An input that backward never reached has a zero gradient; the numeric side checks that.
    std::vector<float> analytic =
        x.grad().defined() ? x.grad().to_vector() : std::vector<float>(x.numel(), 0.0f);
    float* p = x.data();
    for (int64_t i = 0; i < x.numel(); ++i) {
      float saved = p[i];
      p[i] = saved + eps;
      double plus = weighted_sum(f(inputs), r);
      p[i] = saved - eps;
      double minus = weighted_sum(f(inputs), r);
      p[i] = saved;
      double numeric = (plus - minus) / (2.0 * eps);
      double err = std::fabs(analytic[i] - numeric) / (atol + rtol * std::fabs(numeric));
      CHECK_MESSAGE(err <= 1.0, "input ", k, " element ", i, ": analytic ", analytic[i],
                    " vs numeric ", numeric);
      worst = std::max(worst, err);
    }
  }
  return worst;
}

// A float tensor with values in [lo, hi) that requires grad.
inline Tensor param(const Shape& shape, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::uniform(shape, lo, hi, rng);
  t.set_requires_grad(true);
  return t;
}

// Pushes values away from 0 by at least margin (keeps the sign), so kinks of ReLU are not
// crossed by the finite-difference step.
inline void away_from_zero(Tensor& t, float margin) {
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (std::fabs(p[i]) < margin) p[i] = p[i] < 0 ? -margin - p[i] : margin + p[i];
}

}  // namespace sprig::testing
