// Element-wise, reduction, loss and optimizer kernels against their scalar references, on odd
// sizes that exercise the vector tails and the parallel paths.
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/rng.h"
#include "kernels/cpu/eltwise.h"
#include "kernels/cpu/loss.h"
#include "kernels/cpu/optim.h"
#include "kernels/cpu/reduce.h"

using namespace sprig;

static std::vector<float> random_vec(int64_t n, Rng& rng, float lo = -2.0f, float hi = 2.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

static const int64_t kSizes[] = {1, 3, 17, 255, 4097, 70001};

TEST_CASE("relu forward and backward match the reference") {
  Rng rng(1);
  for (int64_t n : kSizes) {
    auto x = random_vec(n, rng), dy = random_vec(n, rng);
    x[0] = 0.0f;  // the subgradient at 0 is 0
    std::vector<float> y(n), y_ref(n), dx(n), dx_ref(n);
    cpu::relu_forward(n, x.data(), y.data());
    cpu::relu_forward_ref(n, x.data(), y_ref.data());
    cpu::relu_backward(n, x.data(), dy.data(), dx.data());
    cpu::relu_backward_ref(n, x.data(), dy.data(), dx_ref.data());
    CHECK(y == y_ref);
    CHECK(dx == dx_ref);
    CHECK(dx[0] == 0.0f);
  }
}

TEST_CASE("add_relu is add then relu_forward_ref, NaN included, in place too") {
  Rng rng(2);
  for (int64_t n : kSizes) {
    auto a = random_vec(n, rng), b = random_vec(n, rng);
    a[n / 2] = std::nanf("");
    if (n > 1) a[0] = -b[0];  // exactly 0
    std::vector<float> sum(n), want(n), got(n);
    for (int64_t i = 0; i < n; ++i) sum[i] = a[i] + b[i];
    cpu::relu_forward_ref(n, sum.data(), want.data());
    cpu::add_relu(n, a.data(), b.data(), got.data());
    cpu::add_relu(n, a.data(), b.data(), a.data());  // out aliasing an input
    for (int64_t i = 0; i < n; ++i) {
      if (i == n / 2) {
        CHECK(std::isnan(got[i]));
        CHECK(std::isnan(a[i]));
        continue;
      }
      CHECK(got[i] == want[i]);
      CHECK(a[i] == want[i]);
    }
  }
}

TEST_CASE("relu lets NaN through, forward and backward, as PyTorch does") {
  const float nan = std::nanf("");
  for (int64_t n : kSizes) {
    std::vector<float> x(n, -1.0f), dy(n, 2.0f), y(n), y_ref(n), dx(n), dx_ref(n);
    x[n / 2] = nan;
    x[0] = n > 1 ? 3.0f : nan;
    cpu::relu_forward(n, x.data(), y.data());
    cpu::relu_forward_ref(n, x.data(), y_ref.data());
    cpu::relu_backward(n, x.data(), dy.data(), dx.data());
    cpu::relu_backward_ref(n, x.data(), dy.data(), dx_ref.data());
    CHECK(std::isnan(y[n / 2]));
    CHECK(std::isnan(y_ref[n / 2]));
    CHECK(dx[n / 2] == 2.0f);  // threshold_backward cuts only where x <= 0
    CHECK(dx_ref[n / 2] == 2.0f);
    for (int64_t i = 0; i < n; ++i) {
      if (i == n / 2) continue;
      CHECK(y[i] == y_ref[i]);
      CHECK(dx[i] == dx_ref[i]);
    }
    if (n > 2) CHECK(y[n - 1] == 0.0f);  // -1 stays cut
  }
}

TEST_CASE("element-wise arithmetic and row bias") {
  Rng rng(2);
  for (int64_t n : kSizes) {
    auto a = random_vec(n, rng), b = random_vec(n, rng);
    std::vector<float> out(n), y = b;
    cpu::add(n, a.data(), b.data(), out.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(out[i] == a[i] + b[i]);
    cpu::sub(n, a.data(), b.data(), out.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(out[i] == a[i] - b[i]);
    cpu::mul(n, a.data(), b.data(), out.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(out[i] == a[i] * b[i]);
    cpu::scale(n, a.data(), 0.5f, out.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(out[i] == a[i] * 0.5f);
    cpu::axpy(n, 3.0f, a.data(), y.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(y[i] == doctest::Approx(b[i] + 3.0f * a[i]));
  }
  int64_t rows = 7, cols = 13;
  auto y = random_vec(rows * cols, rng), bias = random_vec(cols, rng);
  auto expect = y;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) expect[r * cols + c] += bias[c];
  cpu::add_row_bias(rows, cols, bias.data(), y.data());
  CHECK(y == expect);
}

TEST_CASE("sum and sum_rows match the reference and do not depend on thread count") {
  Rng rng(3);
  for (int64_t n : kSizes) {
    auto x = random_vec(n, rng);
    double s = cpu::sum(n, x.data());
    CHECK(s == doctest::Approx(cpu::sum_ref(n, x.data())).epsilon(1e-12));
  }
  auto x = random_vec(300000, rng);
  double one = 0, two = 0;
#ifdef _OPENMP
  omp_set_num_threads(1);
  one = cpu::sum(300000, x.data());
  omp_set_num_threads(2);
  two = cpu::sum(300000, x.data());
  CHECK(one == two);
#endif
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {64, 10}, {33, 257}}) {
    auto m = random_vec(rows * cols, rng);
    std::vector<float> out(cols), ref(cols);
    cpu::sum_rows(rows, cols, m.data(), out.data());
    cpu::sum_rows_ref(rows, cols, m.data(), ref.data());
    for (int64_t c = 0; c < cols; ++c) CHECK(out[c] == doctest::Approx(ref[c]).epsilon(1e-6));
  }
  std::vector<float> f = {1.0f, 2.0f, 3.0f};
  CHECK(cpu::all_finite(3, f.data()));
  f[1] = NAN;
  CHECK_FALSE(cpu::all_finite(3, f.data()));
  f[1] = INFINITY;
  CHECK_FALSE(cpu::all_finite(3, f.data()));
}

TEST_CASE("softmax cross-entropy matches the two-pass reference, and stays finite") {
  Rng rng(4);
  for (auto [N, C] : {std::pair<int64_t, int64_t>{1, 2}, {7, 10}, {64, 10}, {5, 1000}}) {
    auto logits = random_vec(N * C, rng, -5, 5);
    std::vector<int32_t> labels(N);
    for (auto& l : labels) l = int32_t(rng.below(C));
    float loss = cpu::softmax_cross_entropy_forward(N, C, logits.data(), labels.data());
    float ref = cpu::softmax_cross_entropy_forward_ref(N, C, logits.data(), labels.data());
    CHECK(loss == doctest::Approx(ref).epsilon(1e-6));
    std::vector<float> d(N * C), d_ref(N * C);
    cpu::softmax_cross_entropy_backward(N, C, logits.data(), labels.data(), 0.7f, d.data());
    cpu::softmax_cross_entropy_backward_ref(N, C, logits.data(), labels.data(), 0.7f, d_ref.data());
    for (int64_t i = 0; i < N * C; ++i)
      REQUIRE(d[i] == doctest::Approx(d_ref[i]).epsilon(1e-5).scale(1e-3));
  }
  // Huge logits: a naive exp would overflow to inf and give NaN. The exact loss is
  // logsumexp - 999 = 1000 + log(1 + e^-1 + e^-2000) - 999.
  std::vector<float> big = {1000.0f, -1000.0f, 999.0f};
  std::vector<int32_t> lab = {2};
  float loss = cpu::softmax_cross_entropy_forward(1, 3, big.data(), lab.data());
  CHECK(std::isfinite(loss));
  CHECK(loss == doctest::Approx(1.0 + std::log1p(std::exp(-1.0))).epsilon(1e-6));
}

TEST_CASE("mse forward and backward") {
  Rng rng(5);
  for (int64_t n : kSizes) {
    auto p = random_vec(n, rng), t = random_vec(n, rng);
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += double(p[i] - t[i]) * double(p[i] - t[i]);
    CHECK(cpu::mse_forward(n, p.data(), t.data()) == doctest::Approx(ref / n).epsilon(1e-6));
    std::vector<float> d(n);
    cpu::mse_backward(n, p.data(), t.data(), 1.5f, d.data());
    for (int64_t i = 0; i < n; ++i)
      REQUIRE(d[i] == doctest::Approx(1.5 * 2.0 * (p[i] - t[i]) / n).epsilon(1e-5));
  }
}

TEST_CASE("fused optimizer kernels match their references over several steps") {
  Rng rng(6);
  for (int64_t n : {int64_t(5), int64_t(40001)}) {
    std::vector<uint8_t> mask(n);
    for (auto& m : mask) m = rng.below(4) != 0;
    for (bool use_mask : {false, true}) {
      const uint8_t* mk = use_mask ? mask.data() : nullptr;
      auto w = random_vec(n, rng), w_ref = w;
      std::vector<float> v(n, 0), v_ref(n, 0), m2(n, 0), m2_ref(n, 0);
      for (int step = 1; step <= 4; ++step) {
        auto g = random_vec(n, rng);
        cpu::sgd_step(n, w.data(), g.data(), v.data(), mk, 0.05f, 0.9f, 0.1f, 1e-3f, false,
                      step == 1);
        cpu::sgd_step_ref(n, w_ref.data(), g.data(), v_ref.data(), mk, 0.05f, 0.9f, 0.1f, 1e-3f,
                          false, step == 1);
      }
      for (int64_t i = 0; i < n; ++i) {
        REQUIRE(w[i] == doctest::Approx(w_ref[i]).epsilon(1e-5));
        if (mk && !mk[i]) REQUIRE((w[i] == 0.0f && v[i] == 0.0f));
      }
      w = random_vec(n, rng), w_ref = w;
      std::fill(v.begin(), v.end(), 0.0f), std::fill(v_ref.begin(), v_ref.end(), 0.0f);
      for (int step = 1; step <= 4; ++step) {
        auto g = random_vec(n, rng);
        cpu::adam_step(n, w.data(), g.data(), v.data(), m2.data(), mk, 1e-2f, 0.9f, 0.999f, 1e-8f,
                       1e-2f, step, false);
        cpu::adam_step_ref(n, w_ref.data(), g.data(), v_ref.data(), m2_ref.data(), mk, 1e-2f, 0.9f,
                           0.999f, 1e-8f, 1e-2f, step, false);
      }
      for (int64_t i = 0; i < n; ++i) {
        REQUIRE(w[i] == doctest::Approx(w_ref[i]).epsilon(1e-5));
        if (mk && !mk[i]) REQUIRE((w[i] == 0.0f && v[i] == 0.0f && m2[i] == 0.0f));
      }
    }
  }
}
