// Pooling kernels and the option-A shortcut against their direct references (bit for bit:
// the fast kernels add in the references' order), on hand-computed examples, and their backward
// passes against the forward through the adjoint identity <dy, f(x)> = <f'(dy), x>.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/pool.h"
#include "tests/kernel_test_util.h"

using namespace sprig;
using namespace sprig::cpu;

namespace {

using sprig::testing::random_vec;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// The pooling ops here are linear, so their backward is their adjoint: <dy, f(x)> = <g(dy), x>
// for every x, dy. Both sides in double from float values; each is a sum of products whose
// float rounding (in f and g) is at most a few ulps of the sum of magnitudes.
void expect_adjoint(const std::vector<float>& x, const std::vector<float>& y,
                    const std::vector<float>& dy, const std::vector<float>& dx) {
  double lhs = 0, rhs = 0, mag = 0;
  for (size_t i = 0; i < y.size(); i++) {
    lhs += double(dy[i]) * double(y[i]);
    mag += std::fabs(double(dy[i]) * double(y[i]));
  }
  for (size_t i = 0; i < x.size(); i++) {
    rhs += double(dx[i]) * double(x[i]);
    mag += std::fabs(double(dx[i]) * double(x[i]));
  }
  CHECK(std::fabs(lhs - rhs) <= 1e-5 * mag);
}

}  // namespace

namespace {

void check_pool(const Pool2dShape& s, bool ties) {
  CAPTURE(s.N);
  CAPTURE(s.C);
  CAPTURE(s.H);
  CAPTURE(s.W);
  CAPTURE(s.kernel);
  CAPTURE(s.stride);
  CAPTURE(s.pad);
  CAPTURE(ties);
  const size_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.C * s.P() * s.Q();
  auto x = random_vec(nx, 21);
  if (ties)  // few distinct values, many equal maxima: first one must win
    for (auto& v : x) v = std::floor(v * 2.0f);
  auto dy = random_vec(ny, 22);
  std::vector<float> y(ny), yref(ny), dx(nx, 7.0f), dxref(nx);
  std::vector<int32_t> am(ny), amref(ny);
  maxpool2d_forward(s, x.data(), y.data(), am.data());
  maxpool2d_forward_ref(s, x.data(), yref.data(), amref.data());
  CHECK(y == yref);
  CHECK(am == amref);
  std::vector<float> y_only(ny, 7.0f);  // without argmax (inference): the same maxima
  maxpool2d_forward(s, x.data(), y_only.data(), nullptr);
  CHECK(y_only == yref);
  maxpool2d_backward(s, dy.data(), am.data(), dx.data());
  maxpool2d_backward_ref(s, dy.data(), amref.data(), dxref.data());
  // Each dx is a sum of at most ceil(kernel / stride)^2 dy values added in the same order.
  for (size_t i = 0; i < nx; i++) REQUIRE(std::fabs(dx[i] - dxref[i]) <= 1e-6f);
}

}  // namespace

TEST_CASE("maxpool2d matches the reference") {
  for (int64_t kernel : {2, 3})
    for (int64_t stride : {1, 2, 3})
      for (int64_t pad : {0, 1}) {
        if (pad * 2 > kernel) continue;  // as PyTorch: pad at most half the kernel
        for (int64_t N : {1, 5}) {
          check_pool({N, 3, 7, 9, kernel, stride, pad}, false);
          check_pool({N, 3, 7, 9, kernel, stride, pad}, true);
          check_pool({N, 2, 28, 28, kernel, stride, pad}, true);
          // Rows of more than 16 outputs (the 2x2 path's vectors and their tail), odd width.
          check_pool({N, 2, 5, 71, kernel, stride, pad}, true);
        }
      }
}

TEST_CASE("maxpool2d: NaN wins and -inf is a value, as the reference (2x2 fast path and generic)") {
  for (int64_t kernel : {2, 3})
    for (int64_t stride : {2, 1}) {
      const Pool2dShape s{2, 3, 9, 12, kernel, stride, 0};
      const size_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.C * s.P() * s.Q();
      auto x = random_vec(nx, 23);
      for (size_t i = 0; i < nx; i += 7) x[i] = kNaN;
      for (size_t i = 3; i < nx; i += 11) x[i] = -std::numeric_limits<float>::infinity();
      std::vector<float> y(ny), yref(ny);
      std::vector<int32_t> am(ny), amref(ny);
      maxpool2d_forward(s, x.data(), y.data(), am.data());
      maxpool2d_forward_ref(s, x.data(), yref.data(), amref.data());
      CAPTURE(kernel);
      CAPTURE(stride);
      int64_t nans = 0;
      for (size_t i = 0; i < ny; i++) {
        nans += std::isnan(yref[i]);
        REQUIRE(std::isnan(y[i]) == std::isnan(yref[i]));
        if (!std::isnan(yref[i])) REQUIRE(y[i] == yref[i]);
      }
      CHECK(am == amref);
      CHECK(nans > 0);
    }
}

TEST_CASE("maxpool2d on a hand-computed example") {
  // 4x4 plane, 2x2 windows, stride 2; the tie in the last window picks the first (5 at 10).
  Pool2dShape s{1, 1, 4, 4, 2, 2};
  std::vector<float> x = {1, 3, 2, 0, 4, 2, 1, 8, 0, 0, 5, 1, 0, -1, 2, 5};
  std::vector<float> y(4), dx(16);
  std::vector<int32_t> am(4);
  maxpool2d_forward(s, x.data(), y.data(), am.data());
  CHECK(y == std::vector<float>{4, 8, 0, 5});
  CHECK(am == std::vector<int32_t>{4, 7, 8, 10});
  std::vector<float> dy = {1, 2, 3, 4};
  maxpool2d_backward(s, dy.data(), am.data(), dx.data());
  std::vector<float> want(16, 0.0f);
  want[4] = 1;
  want[7] = 2;
  want[8] = 3;
  want[10] = 4;
  CHECK(dx == want);
  // Padding is -inf: with pad 1 an all-negative corner window still picks the image value.
  Pool2dShape p{1, 1, 2, 2, 2, 2, 1};
  std::vector<float> neg = {-5, -6, -7, -8}, y2(4);
  std::vector<int32_t> am2(4);
  maxpool2d_forward(p, neg.data(), y2.data(), am2.data());
  CHECK(y2 == std::vector<float>{-5, -6, -7, -8});
  CHECK(am2 == std::vector<int32_t>{0, 1, 2, 3});
}

namespace {

void check_avgpool(const Pool2dShape& s) {
  CAPTURE(s.N);
  CAPTURE(s.C);
  CAPTURE(s.H);
  CAPTURE(s.W);
  CAPTURE(s.kernel);
  CAPTURE(s.stride);
  CAPTURE(s.pad);
  REQUIRE(s.P() > 0);
  REQUIRE(s.Q() > 0);
  const size_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.C * s.P() * s.Q();
  auto x = random_vec(nx, 31), dy = random_vec(ny, 32);
  std::vector<float> y(ny, kNaN), yref(ny, kNaN), dx(nx, kNaN), dxref(nx, kNaN);
  avgpool2d_forward(s, x.data(), y.data());
  avgpool2d_forward_ref(s, x.data(), yref.data());
  CHECK(y == yref);
  avgpool2d_backward(s, dy.data(), dx.data());
  avgpool2d_backward_ref(s, dy.data(), dxref.data());
  CHECK(dx == dxref);
  expect_adjoint(x, y, dy, dx);
}

}  // namespace

TEST_CASE("avgpool2d matches the reference bit for bit") {
  for (int64_t kernel : {1, 2, 3})
    for (int64_t stride : {1, 2, 3})
      for (int64_t pad : {0, 1}) {
        if (pad * 2 > kernel) continue;  // as PyTorch: pad at most half the kernel
        for (int64_t N : {1, 5}) {
          check_avgpool({N, 3, 7, 9, kernel, stride, pad});
          check_avgpool({N, 1, 5, 3, kernel, stride, pad});
          check_avgpool({N, 2, 28, 28, kernel, stride, pad});
        }
      }
  check_avgpool({1, 1, 1, 1, 1, 1, 0});
  check_avgpool({2, 64, 8, 8, 8, 1, 0});  // a global pool written as a window
  check_avgpool({1, 4, 32, 32, 2, 2, 0});
}

TEST_CASE("avgpool2d on a hand-computed example: padding counts in the divisor") {
  // x = [[1 2] [3 4]], 2x2 windows, stride 1, pad 1: nine windows, each divided by 4.
  Pool2dShape s{1, 1, 2, 2, 2, 1, 1};
  std::vector<float> x = {1, 2, 3, 4}, y(9);
  avgpool2d_forward(s, x.data(), y.data());
  CHECK(y == std::vector<float>{0.25f, 0.75f, 0.5f, 1.0f, 2.5f, 1.5f, 0.75f, 1.75f, 1.0f});
  // Each input lies in four windows: dx[0] = (1 + 2 + 4 + 5) / 4, and so on.
  std::vector<float> dy = {1, 2, 3, 4, 5, 6, 7, 8, 9}, dx(4);
  avgpool2d_backward(s, dy.data(), dx.data());
  CHECK(dx == std::vector<float>{3, 4, 6, 7});
}

TEST_CASE("global_avgpool matches the reference and the hand-computed mean") {
  for (int64_t planes : {1, 7, 64, 300})
    for (int64_t hw : {1, 3, 49, 64, 1000}) {
      CAPTURE(planes);
      CAPTURE(hw);
      auto x = random_vec(planes * hw, 41), dy = random_vec(planes, 42);
      std::vector<float> y(planes, kNaN), yref(planes, kNaN);
      std::vector<float> dx(planes * hw, kNaN), dxref(planes * hw, kNaN);
      global_avgpool_forward(planes, hw, x.data(), y.data());
      global_avgpool_forward_ref(planes, hw, x.data(), yref.data());
      CHECK(y == yref);
      global_avgpool_backward(planes, hw, dy.data(), dx.data());
      global_avgpool_backward_ref(planes, hw, dy.data(), dxref.data());
      CHECK(dx == dxref);
      expect_adjoint(x, y, dy, dx);
    }
  std::vector<float> x = {1, 2, 3, 6, -1, -1, -1, -1}, y(2), dy = {2, -4}, dx(8);
  global_avgpool_forward(2, 4, x.data(), y.data());
  CHECK(y == std::vector<float>{3, -1});
  global_avgpool_backward(2, 4, dy.data(), dx.data());
  CHECK(dx == std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f, -1, -1, -1, -1});
}

TEST_CASE("shortcut (option A) matches the reference bit for bit") {
  for (int64_t N : {1, 3})
    for (int64_t C : {1, 3, 16})
      for (int64_t HW : {1, 5, 8})
        for (int64_t stride : {1, 2, 3})
          for (int64_t K : {C, C + 1, 2 * C})
            for (int64_t pad_lo : {int64_t(0), (K - C) / 2, K - C}) {
              ShortcutShape s{N, C, HW, HW + 2, K, stride, pad_lo};  // H != W
              CAPTURE(N);
              CAPTURE(C);
              CAPTURE(s.H);
              CAPTURE(s.W);
              CAPTURE(K);
              CAPTURE(stride);
              CAPTURE(pad_lo);
              const size_t nx = N * C * s.H * s.W, ny = N * K * s.P() * s.Q();
              auto x = random_vec(nx, 51), dy = random_vec(ny, 52);
              std::vector<float> y(ny, kNaN), yref(ny, kNaN), dx(nx, kNaN), dxref(nx, kNaN);
              shortcut_forward(s, x.data(), y.data());
              shortcut_forward_ref(s, x.data(), yref.data());
              CHECK(y == yref);
              shortcut_backward(s, dy.data(), dx.data());
              shortcut_backward_ref(s, dy.data(), dxref.data());
              CHECK(dx == dxref);
              expect_adjoint(x, y, dy, dx);
            }
  // Large enough for the parallel path.
  ShortcutShape s{64, 16, 32, 32, 32, 2, 8};
  const size_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P() * s.Q();
  auto x = random_vec(nx, 53), dy = random_vec(ny, 54);
  std::vector<float> y(ny), yref(ny), dx(nx), dxref(nx);
  shortcut_forward(s, x.data(), y.data());
  shortcut_forward_ref(s, x.data(), yref.data());
  CHECK(y == yref);
  shortcut_backward(s, dy.data(), dx.data());
  shortcut_backward_ref(s, dy.data(), dxref.data());
  CHECK(dx == dxref);
}

TEST_CASE("shortcut on a hand-computed example") {
  // One 3x3 channel, stride 2, into 3 channels with one zero channel on each side: the middle
  // channel holds the four corners.
  ShortcutShape s{1, 1, 3, 3, 3, 2, 1};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y(12, kNaN);
  shortcut_forward(s, x.data(), y.data());
  CHECK(y == std::vector<float>{0, 0, 0, 0, 1, 3, 7, 9, 0, 0, 0, 0});
  std::vector<float> dy = {10, 10, 10, 10, 1, 2, 3, 4, 20, 20, 20, 20}, dx(9, kNaN);
  shortcut_backward(s, dy.data(), dx.data());
  CHECK(dx == std::vector<float>{1, 0, 2, 0, 0, 0, 3, 0, 4});
}
