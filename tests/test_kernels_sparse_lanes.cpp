// Activations in sample lanes (kernels/cpu/sparse_conv_lanes.cpp): the layout against a plain
// loop over its definition, and csr_conv2d_lanes with either side in lanes against csr_conv2d
// on (N, C, H, W), which test_kernels_sparse checks against conv2d_forward_ref.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/pool.h"
#include "kernels/cpu/sparse.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"
#include "tests/kernel_test_util.h"

using namespace sprig;
using namespace sprig::cpu;
using sprig::testing::abs_vec;
using sprig::testing::random_vec;

namespace {

const bool kLanesBuilt = lanes_built();

// A lanes buffer (64-byte aligned, as the engine's allocator gives) filled with garbage.
struct LanesBuf {
  explicit LanesBuf(int64_t floats) : v(size_t(floats + 16), -7.0f) {
    const auto at = reinterpret_cast<uintptr_t>(v.data());
    off = size_t((64 - at % 64) % 64 / sizeof(float));
  }
  float* data() { return v.data() + off; }
  std::vector<float> v;
  size_t off = 0;
};

// Value (sample n, channel c, padded row hp, padded column wp) of lanes a, by its definition.
float lanes_at(const LanesShape& a, const float* xl, int64_t n, int64_t c, int64_t hp, int64_t wp) {
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad, g = n / 16;
  return xl[g * a.group_floats() + ((c * Hp + hp) * Wp + wp) * 16 + n % 16];
}

// Every real sample's value at its place, every border zero, the slack zero.
void check_layout(const LanesShape& a, const float* x, const float* xl) {
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad;
  int64_t bad = 0;
  for (int64_t n = 0; n < a.N; n++)
    for (int64_t c = 0; c < a.C; c++)
      for (int64_t hp = 0; hp < Hp; hp++)
        for (int64_t wp = 0; wp < Wp; wp++) {
          const int64_t h = hp - a.pad, w = wp - a.pad;
          const bool inside = h >= 0 && h < a.H && w >= 0 && w < a.W;
          const float want = inside ? x[((n * a.C + c) * a.H + h) * a.W + w] : 0.0f;
          if (lanes_at(a, xl, n, c, hp, wp) != want) bad++;
        }
  for (int64_t e = a.groups() * a.group_floats(); e < a.floats(); e++)
    if (xl[e] != 0.0f) bad++;
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("to_lanes and from_lanes lay samples out 16 to a vector and back") {
  const LanesShape shapes[] = {
      {16, 3, 5, 7, 1}, {17, 2, 4, 33, 0}, {40, 4, 3, 3, 2}, {32, 1, 1, 1, 1}, {5, 2, 6, 6, 1}};
  for (const LanesShape& a : shapes) {
    CAPTURE(a.N);
    CAPTURE(a.W);
    CAPTURE(a.pad);
    const auto x = random_vec(size_t(a.N * a.C * a.H * a.W), uint32_t(a.N + a.W));
    LanesBuf xl(a.floats());
    if (!kLanesBuilt) {
      CHECK_THROWS_AS(to_lanes(a, x.data(), xl.data()), Error);
      continue;
    }
    for (int t : {1, 3}) {
      const int before = num_threads();
      set_num_threads(t);
      to_lanes(a, x.data(), xl.data());
      check_layout(a, x.data(), xl.data());
      std::vector<float> back(x.size(), -7.0f);
      from_lanes(a, xl.data(), back.data());
      set_num_threads(before);
      CHECK(back == x);
    }
  }
}

TEST_CASE("csr_conv2d_lanes with x, y and the residual in lanes equals csr_conv2d") {
  struct Case {
    Conv2dShape s;
    double sparsity;
    bool suits = true;  // csr_conv2d itself runs it in lanes (else it fits them only)
  };
  const Case cases[] = {
      {{17, 3, 9, 7, 5, 3, 3, 1, 1, 1}, 0.5},      // a group of 1, odd rows, 7 wide
      {{16, 4, 12, 11, 6, 3, 3, 2, 1, 1}, 0.7},    // stride 2
      {{33, 2, 11, 10, 3, 3, 2, 1, 2, 2}, 0.5},    // dilation 2, 3x2, three groups
      {{20, 3, 6, 19, 4, 5, 5, 1, 2, 1}, 0.6},     // 5x5, 19 wide: tiles of 8, 8, 3
      {{18, 8, 6, 6, 8, 1, 1, 1, 1, 1}, 0.3},      // 1x1 padded
      {{16, 2, 5, 37, 4, 3, 3, 2, 0, 1}, 0.5},     // no padding, 37 wide
      {{19, 16, 12, 12, 16, 3, 3, 1, 1, 1}, 0.5},  // two groups on three threads
      {{32, 6, 3, 3, 4, 3, 3, 1, 1, 1}, 0.9},      // 3x3 images, few weights
      {{17, 40, 6, 6, 8, 3, 3, 1, 1, 1}, 0.5},     // 40 channels: 5 blocks of 8
      {{16, 33, 9, 9, 6, 3, 3, 2, 1, 1}, 0.4},     // 33 channels at stride 2: blocks of 7 and 5
      // Lanes in or out only: csr_conv2d takes these a sample at a time.
      {{16, 1, 20, 20, 16, 3, 3, 1, 1, 1}, 0.9, false},  // under 1.5 weights a row
      {{17, 8, 5, 5, 4, 1, 1, 1, 0, 1}, 0.5, false},     // 1x1, unpadded: read in place
      {{32, 6, 3, 3, 4, 3, 3, 1, 1, 1}, 1.0, false},     // all-zero weights: bias only
  };
  for (const Case& c : cases) {
    const Conv2dShape& s = c.s;
    CAPTURE(s.N);
    CAPTURE(s.H);
    CAPTURE(s.W);
    CAPTURE(s.stride);
    CAPTURE(s.pad);
    const int64_t CRS = s.C * s.R * s.S, P = s.P(), Q = s.Q();
    auto w = random_vec(size_t(s.K * CRS), uint32_t(CRS + s.K));
    std::mt19937 rng{uint32_t(CRS)};
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (auto& v : w)
      if (u(rng) < c.sparsity) v = 0.0f;
    const CsrMatrix a = csr_from_dense(s.K, CRS, w.data());
    const auto x = random_vec(size_t(s.N * s.C * s.H * s.W), uint32_t(s.H * s.W));
    const auto bias = random_vec(size_t(s.K), 3);
    const auto res = random_vec(size_t(s.N * s.K * P * Q), 5);
    REQUIRE(csr_conv2d_lanes_fit(a, s) == kLanesBuilt);
    REQUIRE(csr_conv2d_in_lanes(a, s) == (kLanesBuilt && c.suits));
    if (!kLanesBuilt) {
      std::vector<float> y(res.size());
      CHECK_THROWS_AS(csr_conv2d_lanes(a, s, x.data(), -1, bias.data(), y.data(), -1, false),
                      Error);
      continue;
    }
    for (bool relu : {false, true})
      for (bool with_res : {false, true}) {
        CAPTURE(relu);
        CAPTURE(with_res);
        std::vector<float> want(res.size(), -7.0f);  // (N, K, P, Q)
        csr_conv2d(a, s, x.data(), bias.data(), want.data(), relu, nullptr,
                   with_res ? res.data() : nullptr);
        {
          // Where csr_conv2d runs in lanes itself, want is the lanes kernel's: checked against
          // the dense reference within rounding.
          std::vector<float> ref(res.size()), mag(res.size());
          const auto xa = abs_vec(x), wa = abs_vec(w), ba = abs_vec(bias);
          conv2d_forward_ref(s, x.data(), w.data(), bias.data(), ref.data());
          conv2d_forward_ref(s, xa.data(), wa.data(), ba.data(), mag.data());
          int64_t bad = 0;
          for (size_t e = 0; e < ref.size(); e++) {
            float r = ref[e] + (with_res ? res[e] : 0.0f);
            if (relu) r = std::max(r, 0.0f);
            const float m = mag[e] + (with_res ? std::fabs(res[e]) : 0.0f);
            if (!(std::fabs(want[e] - r) <= 1e-5f * m + 1e-30f)) bad++;
          }
          CHECK(bad == 0);
        }
        if (!c.suits) {
          // csr_conv2d sums in another order: the lanes, (N, ...) in and out, are checked
          // against it within rounding and are then the bits the others must give.
          std::vector<float> mag(res.size()), lanes(res.size(), -7.0f);
          const auto xa = abs_vec(x), wa = abs_vec(w), ba = abs_vec(bias);
          conv2d_forward_ref(s, xa.data(), wa.data(), ba.data(), mag.data());
          csr_conv2d_lanes(a, s, x.data(), -1, bias.data(), lanes.data(), -1, relu,
                           with_res ? res.data() : nullptr);
          int64_t bad = 0;
          for (size_t e = 0; e < mag.size(); e++)
            if (!(std::fabs(lanes[e] - want[e]) <=
                  1e-5f * (mag[e] + (with_res ? std::fabs(res[e]) : 0.0f)) + 1e-30f))
              bad++;
          CHECK(bad == 0);
          want = lanes;
        }
        for (int64_t x_pad : {int64_t(-1), s.pad, s.pad + 1})
          for (int64_t y_pad : {int64_t(-1), int64_t(0), int64_t(1), int64_t(2)})
            for (int t : {1, 3}) {
              CAPTURE(x_pad);
              CAPTURE(y_pad);
              CAPTURE(t);
              const LanesShape xa{s.N, s.C, s.H, s.W, x_pad}, ya{s.N, s.K, P, Q, y_pad};
              LanesBuf xl(xa.floats()), yl(ya.floats()), rl(ya.floats());
              const float* xin = x.data();
              if (x_pad >= 0) {
                to_lanes(xa, x.data(), xl.data());
                xin = xl.data();
              }
              const float* rin = with_res ? res.data() : nullptr;
              if (with_res && y_pad >= 0) {
                to_lanes(ya, res.data(), rl.data());
                rin = rl.data();
              }
              std::vector<float> got(res.size(), -7.0f);
              const int before = num_threads();
              set_num_threads(t);
              csr_conv2d_lanes(a, s, xin, x_pad, bias.data(), y_pad >= 0 ? yl.data() : got.data(),
                               y_pad, relu, rin);
              set_num_threads(before);
              if (y_pad >= 0) {
                from_lanes(ya, yl.data(), got.data());
                // The border and slack the next conv reads as zeros.
                check_layout(ya, want.data(), yl.data());
              }
              CHECK(got == want);  // the same sums in the same order
            }
      }
  }
  // An input border under the conv's padding, or a shape that does not run in lanes, is an
  // error.
  const Conv2dShape s{16, 4, 6, 6, 8, 3, 3, 1, 1, 1};
  auto w = random_vec(size_t(8 * 36), 1);
  const CsrMatrix a = csr_from_dense(8, 36, w.data());
  LanesBuf xl(LanesShape{16, 4, 6, 6, 0}.floats());
  std::vector<float> y(size_t(16 * 8 * 36));
  CHECK_THROWS_AS(csr_conv2d_lanes(a, s, xl.data(), 0, nullptr, y.data(), -1, false), Error);
  Conv2dShape few = s;
  few.N = 15;
  CHECK_FALSE(csr_conv2d_lanes_fit(a, few));
  CHECK_FALSE(csr_conv2d_in_lanes(a, few));
  CHECK_THROWS_AS(csr_conv2d_lanes(a, few, y.data(), -1, nullptr, y.data(), -1, false), Error);
}

TEST_CASE("shortcut_lanes equals shortcut_forward_ref in lanes") {
  const ShortcutShape shapes[] = {{17, 3, 8, 7, 8, 2, 2},
                                  {16, 4, 6, 6, 8, 2, 1},
                                  {33, 2, 5, 5, 2, 1, 0},
                                  {16, 2, 7, 9, 6, 3, 4}};
  for (const ShortcutShape& s : shapes) {
    CAPTURE(s.N);
    CAPTURE(s.stride);
    CAPTURE(s.pad_lo);
    const auto x = random_vec(size_t(s.N * s.C * s.H * s.W), uint32_t(s.H * 7 + s.C));
    std::vector<float> want(size_t(s.N * s.K * s.P() * s.Q()));
    shortcut_forward_ref(s, x.data(), want.data());
    for (int64_t x_pad : {0, 1})
      for (int64_t y_pad : {0, 2}) {
        CAPTURE(x_pad);
        CAPTURE(y_pad);
        const LanesShape xa{s.N, s.C, s.H, s.W, x_pad}, ya{s.N, s.K, s.P(), s.Q(), y_pad};
        LanesBuf xl(xa.floats()), yl(ya.floats());
        if (!kLanesBuilt) {
          CHECK_THROWS_AS(shortcut_lanes(s, xl.data(), x_pad, yl.data(), y_pad), Error);
          continue;
        }
        to_lanes(xa, x.data(), xl.data());
        shortcut_lanes(s, xl.data(), x_pad, yl.data(), y_pad);
        check_layout(ya, want.data(), yl.data());
      }
  }
}
