// conv2d (im2col + gemm) against its direct reference, float and int8 (pooling:
// test_kernels_pool.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/conv_int8.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"
#include "tests/kernel_test_util.h"

using namespace sprig;
using namespace sprig::cpu;

namespace {

using sprig::testing::abs_vec;
using sprig::testing::random_vec;

// Every output is a float32 sum of products; its rounding error is a few ulps of the sum of
// the magnitudes of its terms, which the reference gives us when run on |x|, |w|, |dy|.
// 1e-5 of that bound is ~80 ulps of slack yet far smaller than any single term.
void expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                  const std::vector<float>& mag) {
  CAPTURE(what);
  REQUIRE(got.size() == want.size());
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); i++)
    if (!(std::fabs(got[i] - want[i]) <= 1e-5f * mag[i] + 1e-30f))
      if (bad++ < 5) FAIL_CHECK(what << "[" << i << "] = " << got[i] << ", want " << want[i]);
  CHECK(bad == 0);
}

size_t x_size(const Conv2dShape& s) {
  return s.N * s.C * s.H * s.W;
}
size_t w_size(const Conv2dShape& s) {
  return s.K * s.C * s.R * s.S;
}
size_t y_size(const Conv2dShape& s) {
  return s.N * s.K * s.P() * s.Q();
}

// Every forward kernel that can run s on this CPU.
std::vector<ConvForward> kernels_for(const Conv2dShape& s) {
  std::vector<ConvForward> kernels = {ConvForward::Im2colGemm};
  if (conv2d_direct_suits(s)) kernels.push_back(ConvForward::Direct);
  if (conv2d_winograd_suits(s)) kernels.push_back(ConvForward::Winograd);
  return kernels;
}

void check_conv(const Conv2dShape& s) {
  CAPTURE(s.N);
  CAPTURE(s.C);
  CAPTURE(s.H);
  CAPTURE(s.W);
  CAPTURE(s.K);
  CAPTURE(s.R);
  CAPTURE(s.S);
  CAPTURE(s.stride);
  CAPTURE(s.pad);
  CAPTURE(s.dilation);
  REQUIRE(s.P() > 0);
  REQUIRE(s.Q() > 0);
  auto x = random_vec(x_size(s), 1), w = random_vec(w_size(s), 2), b = random_vec(s.K, 3);
  auto dy = random_vec(y_size(s), 4);
  const float nan = std::numeric_limits<float>::quiet_NaN();

  // Forward, with and without bias and ReLU, by each kernel that can run s (Auto is one of
  // them, so it is not checked apart); outputs start as NaN to prove they are overwritten.
  const std::vector<ConvForward> kernels = kernels_for(s);
  for (bool bias : {true, false}) {
    std::vector<float> yref(y_size(s)), ymag(y_size(s));
    conv2d_forward_ref(s, x.data(), w.data(), bias ? b.data() : nullptr, yref.data());
    auto xa = abs_vec(x), wa = abs_vec(w), ba = abs_vec(b);
    conv2d_forward_ref(s, xa.data(), wa.data(), bias ? ba.data() : nullptr, ymag.data());
    std::vector<float> yref_relu = yref;
    for (float& v : yref_relu) v = std::max(v, 0.0f);
    for (ConvForward how : kernels)
      for (bool relu : {false, true}) {
        CAPTURE(int(how));
        CAPTURE(relu);
        std::vector<float> y(y_size(s), nan);
        conv2d_forward(s, x.data(), w.data(), bias ? b.data() : nullptr, y.data(), relu, how);
        expect_close(bias ? "y (bias)" : "y", y, relu ? yref_relu : yref, ymag);
        // The same from weights packed once (as the packed models hold them): bit-identical.
        std::vector<float> wp(size_t(conv2d_packed_size(s, how)), nan), yp(y_size(s), nan);
        if (wp.empty()) continue;
        conv2d_forward_pack(s, how, w.data(), wp.data());
        conv2d_forward(s, x.data(), nullptr, bias ? b.data() : nullptr, yp.data(), relu, how,
                       wp.data());
        CHECK(yp == y);
      }
  }

  // Backward: all three gradients, overwriting NaN-filled outputs.
  std::vector<float> dx(x_size(s), nan), dw(w_size(s), nan), db(s.K, nan);
  std::vector<float> dxr(x_size(s)), dwr(w_size(s)), dbr(s.K);
  std::vector<float> dxm(x_size(s)), dwm(w_size(s)), dbm(s.K);
  conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
  conv2d_backward_ref(s, x.data(), w.data(), dy.data(), dxr.data(), dwr.data(), dbr.data());
  auto xa = abs_vec(x), wa = abs_vec(w), dya = abs_vec(dy);
  conv2d_backward_ref(s, xa.data(), wa.data(), dya.data(), dxm.data(), dwm.data(), dbm.data());
  expect_close("dx", dx, dxr, dxm);
  expect_close("dw", dw, dwr, dwm);
  expect_close("db", db, dbr, dbm);

  // Any subset may be requested; the rest must not be touched.
  std::vector<float> dw2(w_size(s), nan), dx2(x_size(s), 7.0f), db2(s.K, 7.0f);
  conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, dw2.data(), nullptr);
  CHECK(dw2 == dw);  // same thread split, same order: bit-identical
  conv2d_backward(s, x.data(), w.data(), dy.data(), dx2.data(), nullptr, nullptr);
  CHECK(dx2 == dx);
  conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, nullptr, db2.data());
  CHECK(db2 == db);
}

}  // namespace

TEST_CASE("conv2d matches the direct reference") {
  // N, C, H, W, K, R, S, stride, pad, dilation
  const Conv2dShape shapes[] = {
      {1, 1, 5, 5, 1, 3, 3, 1, 0, 1},
      {5, 3, 7, 9, 4, 3, 3, 1, 1, 1},
      {5, 3, 9, 7, 5, 3, 3, 2, 1, 1},
      {1, 5, 11, 10, 3, 3, 2, 2, 0, 1},
      {5, 3, 12, 13, 7, 2, 3, 1, 2, 1},
      {5, 2, 13, 11, 3, 3, 3, 1, 2, 2},
      {1, 7, 10, 10, 9, 3, 3, 2, 1, 2},
      {5, 3, 8, 8, 5, 1, 1, 1, 0, 1},
      {1, 33, 6, 5, 17, 1, 1, 1, 0, 1},
      {5, 4, 9, 9, 3, 1, 1, 2, 0, 1},
      {5, 3, 6, 6, 4, 1, 1, 1, 1, 1},
      {5, 1, 28, 28, 8, 3, 3, 1, 1, 1},
      {5, 8, 28, 28, 16, 3, 3, 1, 1, 1},
      {5, 3, 7, 7, 2, 5, 5, 3, 2, 1},
      {5, 3, 6, 9, 4, 1, 5, 1, 2, 1},
      {2, 3, 4, 4, 3, 4, 4, 1, 0, 1},
      {5, 65, 5, 5, 33, 3, 3, 1, 1, 1},
      // dx as a forward convolution of dy: padding = dilation*(R-1) (none left), ResNet's
      // stage-3 shape, and padding just past dilation*(R-1) (the col2im path).
      {3, 4, 6, 7, 5, 3, 3, 1, 2, 1},
      {3, 16, 7, 7, 16, 3, 3, 1, 1, 1},
      {3, 4, 9, 8, 5, 3, 3, 1, 3, 1},
      // The direct kernel's edges: rows narrower than a vector, more channels than one tile
      // (8 + 5), rows wider than 64, padding past the kernel's reach with dilation; strides 2
      // and 3 with odd and even widths, with dilation; a 1 x 3 kernel at stride 2.
      {2, 3, 3, 4, 13, 3, 3, 1, 1, 1},
      {1, 2, 9, 70, 11, 5, 5, 1, 2, 1},
      {3, 5, 9, 9, 9, 3, 3, 1, 3, 2},
      {2, 3, 14, 15, 10, 3, 3, 2, 1, 1},
      {2, 3, 13, 16, 9, 5, 5, 3, 2, 1},
      {2, 3, 12, 11, 5, 3, 3, 2, 2, 2},
      {2, 4, 11, 12, 6, 1, 3, 2, 1, 1},
      // Winograd's edges: odd output heights and widths (a last tile half outside); with AVX2,
      // rows of 1-7 tiles (one vector, natural lane order), of 8 and 16 tiles (shuffled only), of
      // 9-15 (both); no padding and padding 2; more channels than a register tile and than a
      // block's rows; and one output row or column.
      {2, 3, 5, 5, 2, 3, 3, 1, 1, 1},
      {2, 5, 17, 16, 7, 3, 3, 1, 1, 1},
      {1, 4, 18, 34, 13, 3, 3, 1, 0, 1},
      {2, 9, 12, 31, 6, 3, 3, 1, 2, 1},
      {1, 70, 20, 21, 19, 3, 3, 1, 1, 1},
      {3, 2, 3, 9, 3, 3, 3, 1, 0, 1},
      {3, 2, 11, 3, 4, 3, 3, 1, 0, 1},
      // With AVX-512, rows of 5-8 tiles two to a vector and of 1-4 four to a vector, over
      // several blocks of tile rows, the last one short.
      {1, 64, 33, 13, 8, 3, 3, 1, 1, 1},
      {1, 64, 30, 7, 8, 3, 3, 1, 1, 1},
      {2, 24, 9, 8, 40, 3, 3, 1, 0, 1},
  };
  for (auto& s : shapes) check_conv(s);
  // One sample big enough (>= 2^18 multiply-adds) to be split into bands of output rows, one
  // per thread, each with its own im2col: stride 1, stride 2, pointwise, two samples. Winograd
  // takes bands of whole tile rows (27 rows: an odd last band), or splits the output channels
  // where bands would be under 4 tile rows (14x14).
  const Conv2dShape banded[] = {
      {1, 8, 28, 28, 16, 3, 3, 1, 1, 1},  {1, 16, 28, 27, 32, 3, 3, 2, 1, 1},
      {1, 64, 16, 15, 32, 1, 1, 1, 0, 1}, {2, 16, 14, 14, 32, 3, 3, 1, 1, 1},
      {1, 16, 27, 28, 16, 3, 3, 1, 1, 1},
  };
  const int before = num_threads();
  for (int t : {2, 3}) {
    set_num_threads(t);
    for (auto& s : banded) check_conv(s);
  }
  set_num_threads(before);
}

TEST_CASE("conv2d_forward refuses to force the direct kernel where it cannot run") {
  // 1x1 kernels, strided, padded or plain, are gemm's.
  std::vector<float> x(2 * 81), w(2 * 3), y(3 * 81);
  for (const Conv2dShape& s :
       {Conv2dShape{1, 2, 5, 5, 3, 1, 1, 1, 0, 1}, Conv2dShape{1, 2, 9, 9, 3, 1, 1, 2, 0, 1},
        Conv2dShape{1, 2, 5, 5, 3, 1, 1, 1, 1, 1}}) {
    CHECK_FALSE(conv2d_direct_suits(s));
    CHECK_FALSE(conv2d_direct_pays(s));  // Auto takes it only where it can run
    CHECK_THROWS_WITH_AS(
        conv2d_forward(s, x.data(), w.data(), nullptr, y.data(), false, ConvForward::Direct),
        doctest::Contains("direct kernel cannot run"), sprig::Error);
  }
  // Wider kernels are direct, strided or not.
  CHECK(conv2d_direct_suits({1, 2, 9, 9, 3, 3, 3, 2, 1, 1}));
  CHECK(conv2d_direct_suits({1, 2, 9, 9, 3, 1, 3, 1, 0, 1}));
}

TEST_CASE("conv2d_forward refuses to force Winograd where it cannot run") {
  // F(2x2, 3x3) is for 3x3 kernels at stride 1 without dilation only.
  std::vector<float> x(2 * 169), w(3 * 2 * 25), y(3 * 169);
  for (const Conv2dShape& s :
       {Conv2dShape{1, 2, 9, 9, 3, 3, 3, 2, 1, 1}, Conv2dShape{1, 2, 9, 9, 3, 3, 3, 1, 2, 2},
        Conv2dShape{1, 2, 9, 9, 3, 5, 5, 1, 2, 1}, Conv2dShape{1, 2, 9, 9, 3, 1, 3, 1, 0, 1},
        Conv2dShape{1, 2, 9, 9, 3, 1, 1, 1, 0, 1}}) {
    CAPTURE(s.R);
    CAPTURE(s.S);
    CAPTURE(s.stride);
    CHECK_FALSE(conv2d_winograd_suits(s));
    CHECK_FALSE(conv2d_winograd_pays(s));
    CHECK(conv2d_forward_kernel(s) != ConvForward::Winograd);
    CHECK_THROWS_WITH_AS(
        conv2d_forward(s, x.data(), w.data(), nullptr, y.data(), false, ConvForward::Winograd),
        doctest::Contains("Winograd F(2x2, 3x3) cannot run"), sprig::Error);
  }
}

TEST_CASE("conv2d_forward's fused ReLU passes NaN through, as relu_forward, on every kernel") {
  // A NaN input reaches every output whose window covers it; max(v, 0) written the wrong way
  // round would turn those into 0 and hide the NaN from the loss checks downstream.
  const Conv2dShape s{2, 3, 9, 11, 5, 3, 3, 1, 1, 1};
  auto x = random_vec(x_size(s), 5), w = random_vec(w_size(s), 6);
  x[size_t(1 * 3 * 9 * 11 + 2 * 9 * 11 + 4 * 11 + 6)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> yref(y_size(s));
  conv2d_forward_ref(s, x.data(), w.data(), nullptr, yref.data());
  const std::vector<ConvForward> kernels = kernels_for(s);
  for (ConvForward how : kernels) {
    CAPTURE(int(how));
    std::vector<float> y(y_size(s), 1.0f);
    conv2d_forward(s, x.data(), w.data(), nullptr, y.data(), true, how);
    int64_t nans = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      CHECK(std::isnan(y[i]) == std::isnan(yref[i]));
      nans += std::isnan(yref[i]);
    }
    CHECK(nans == 5 * 9);  // 3x3 outputs of sample 1 in each of the 5 channels
  }
}

TEST_CASE("conv2d on a hand-computed example") {
  // x = [[1 2 3] [4 5 6] [7 8 9]], w = [[1 0] [0 -1]], b = 10:
  // y = [[1-5 2-6] [4-8 5-9]] + 10 = [[6 6] [6 6]]
  Conv2dShape s{1, 1, 3, 3, 1, 2, 2};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 0, 0, -1}, b = {10}, y(4);
  conv2d_forward(s, x.data(), w.data(), b.data(), y.data());
  CHECK(y == std::vector<float>{6, 6, 6, 6});
  // dy = ones: dw[r][s] = sum of the 2x2 window of x at offset (r, s); db = 4.
  std::vector<float> dy(4, 1.0f), dx(9), dw(4), db(1);
  conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
  CHECK(dw == std::vector<float>{12, 16, 24, 28});
  CHECK(db[0] == 4.0f);
  CHECK(dx == std::vector<float>{1, 1, 0, 1, 0, -1, 0, -1, -1});
}

TEST_CASE("conv2d_backward is deterministic: repeated runs give bit-identical dw, db") {
  Conv2dShape s{64, 8, 28, 28, 16, 3, 3, 1, 1, 1};
  auto x = random_vec(x_size(s), 11), w = random_vec(w_size(s), 12), dy = random_vec(y_size(s), 13);
  std::vector<float> dw1(w_size(s)), dw2(w_size(s)), db1(s.K), db2(s.K);
  conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, dw1.data(), db1.data());
  conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, dw2.data(), db2.data());
  CHECK(dw1 == dw2);
  CHECK(db1 == db2);
}

TEST_CASE("conv2d_u8s8 equals the direct int32 loop, padding reading as the zero point") {
  // N, C, H, W, K, R, S, stride, pad, dilation: odd channels (C*R*S % 4 != 0, K % 16 != 0),
  // strides, paddings, dilation, 1x1, and a 16+-row product (AMX) with 1 and 2 threads.
  const Conv2dShape shapes[] = {
      {1, 1, 5, 5, 1, 3, 3, 1, 0, 1},    {3, 3, 7, 9, 5, 3, 3, 1, 1, 1},
      {2, 3, 9, 7, 17, 3, 3, 2, 1, 1},   {2, 5, 11, 10, 3, 3, 2, 2, 0, 1},
      {2, 2, 13, 11, 3, 3, 3, 1, 2, 2},  {2, 33, 6, 5, 17, 1, 1, 1, 0, 1},
      {1, 1, 28, 28, 32, 3, 3, 1, 1, 1}, {2, 32, 14, 14, 64, 3, 3, 1, 1, 1},
      {2, 3, 7, 7, 2, 5, 5, 3, 2, 1},
  };
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
  const int before = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const Conv2dShape& s : shapes) {
      CAPTURE(s.N);
      CAPTURE(s.C);
      CAPTURE(s.K);
      CAPTURE(s.H);
      CAPTURE(s.stride);
      CAPTURE(s.pad);
      std::vector<uint8_t> x(size_t(s.N * s.C * s.H * s.W));  // (N, C, H, W)
      std::vector<int8_t> w(size_t(s.K * s.C * s.R * s.S));   // (K, C, R, S)
      for (auto& v : x) v = uint8_t(u8(rng));
      for (auto& v : w) v = int8_t(s8(rng));
      x[0] = 255;
      w[0] = -127;
      for (int32_t zero : {0, 7, 255}) {
        PackedInt8Weights packed =
            pack_int8_weights(w.data(), s.K, s.C * s.R * s.S, s.C * s.R * s.S);
        const size_t out = size_t(s.N * s.K * s.P() * s.Q());
        std::vector<int32_t> got(out, -1), want(out, -2);  // (N, K, P, Q)
        conv2d_u8s8(s, x.data(), zero, packed, got.data());
        conv2d_u8s8_ref(s, x.data(), zero, w.data(), want.data());
        CHECK(got == want);
      }
    }
  }
  set_num_threads(before);
}

TEST_CASE("conv2d_u8s8_direct equals the direct int32 loop; its fused epilogue the unfused one") {
  // Odd channel counts (K not a multiple of 4 or 16, up to 3 blocks of 16), Q not a multiple
  // of 16, strides 1-3, paddings 0-2, dilation, kernels 2 to 5 wide (1 and 2 words per row),
  // and rows of 3 to 7 pixels, 2 to 5 of them to a vector with a partial last group.
  const Conv2dShape shapes[] = {
      {1, 1, 5, 5, 1, 3, 3, 1, 0, 1},
      {3, 3, 7, 9, 5, 3, 3, 1, 1, 1},
      {2, 3, 9, 7, 17, 3, 3, 2, 1, 1},
      {2, 5, 11, 10, 3, 3, 2, 2, 0, 1},
      {2, 2, 13, 11, 3, 3, 3, 1, 2, 2},
      {1, 1, 28, 28, 8, 3, 3, 1, 1, 1},
      {2, 8, 28, 28, 16, 3, 3, 1, 1, 1},
      {2, 16, 14, 14, 36, 3, 3, 1, 1, 1},
      {2, 3, 7, 7, 2, 5, 5, 3, 2, 1},
      {1, 2, 40, 37, 6, 5, 5, 1, 2, 1},
      // Rows under 16 pixels, several to a vector: a ResNet's 7x7 stage and its stride-2 entry.
      {2, 64, 7, 7, 64, 3, 3, 1, 1, 1},
      {2, 32, 14, 14, 64, 3, 3, 2, 1, 1},
  };
  if (!conv2d_u8s8_direct_suits(shapes[0])) {
    MESSAGE("this CPU lacks AVX-512 VNNI or VBMI: conv2d_u8s8_direct not tested");
    return;
  }
  std::mt19937 rng(12);
  std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
  const int before = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const Conv2dShape& s : shapes) {
      CAPTURE(s.N);
      CAPTURE(s.C);
      CAPTURE(s.K);
      CAPTURE(s.H);
      CAPTURE(s.S);
      CAPTURE(s.stride);
      CAPTURE(s.pad);
      REQUIRE(conv2d_u8s8_direct_suits(s));
      std::vector<uint8_t> x(size_t(s.N * s.C * s.H * s.W));  // (N, C, H, W)
      std::vector<int8_t> w(size_t(s.K * s.C * s.R * s.S));   // (K, C, R, S)
      for (auto& v : x) v = uint8_t(u8(rng));
      for (auto& v : w) v = int8_t(s8(rng));
      x[0] = 255;
      w[0] = -127;
      const DirectConvInt8Weights packed = pack_conv_int8_direct(w.data(), s.K, s.C, s.R, s.S);
      const int64_t PQ = s.P() * s.Q();
      const size_t out = size_t(s.N * s.K * PQ);
      std::vector<float> scales(size_t(s.K)), bias(size_t(s.K));  // (K)
      for (int64_t k = 0; k < s.K; ++k) {
        scales[size_t(k)] = 0.001f * float(k + 1);
        bias[size_t(k)] = 0.5f - 0.1f * float(k);
      }
      for (int32_t zero : {0, 7, 255}) {
        std::vector<int32_t> got(out, -1), want(out, -2);  // (N, K, P, Q)
        conv2d_u8s8_direct(s, x.data(), zero, packed, got.data());
        conv2d_u8s8_ref(s, x.data(), zero, w.data(), want.data());
        CHECK(got == want);
        for (bool relu : {false, true}) {
          std::vector<float> fused(out, -7.0f), unfused(out, -8.0f);  // (N, K, P, Q)
          conv2d_u8s8_direct_dequantize(s, x.data(), zero, packed, 0.02f, scales.data(),
                                        relu ? bias.data() : nullptr, relu, fused.data());
          dequantize_channels_bias_relu(s.N, s.K, PQ, want.data(), 0.02f, scales.data(),
                                        relu ? bias.data() : nullptr, relu, unfused.data());
          // One fused multiply-add or a multiply then an add (as the compiler contracts it):
          // an ulp or so of the terms apart, a_scale x w_scale x sum and the bias, whose sum
          // may cancel to ~0.
          double worst = 0.0;
          for (size_t i = 0; i < out; ++i) {
            const int64_t k = (int64_t(i) / PQ) % s.K;
            const double terms = std::fabs(0.02 * scales[size_t(k)] * want[i]) +
                                 (relu ? std::fabs(bias[size_t(k)]) : 0.0);
            worst = std::max(worst, double(std::fabs(fused[i] - unfused[i])) / (1e-6 + terms));
          }
          CHECK(worst < 1e-6);
          // Requantised: the codes of the fused float result, bit for bit.
          const ActivationQuant next = activation_quant_from_range(-0.5f, 1.5f);
          std::vector<uint8_t> codes(out, 7), want_codes(out);  // (N, K, P, Q)
          conv2d_u8s8_direct_requantize(s, x.data(), zero, packed, 0.02f, scales.data(),
                                        relu ? bias.data() : nullptr, relu, next, codes.data());
          quantize_activations_ref(fused.data(), int64_t(out), next, want_codes.data());
          CHECK(codes == want_codes);
        }
      }
    }
  }
  set_num_threads(before);
}

TEST_CASE(
    "conv2d_u8s8_direct refuses a weight packed for another shape and shapes it does not suit") {
  const Conv2dShape s{1, 2, 5, 5, 4, 3, 3, 1, 1, 1};
  if (!conv2d_u8s8_direct_suits(s)) {
    MESSAGE("this CPU lacks AVX-512 VNNI or VBMI: conv2d_u8s8_direct not tested");
    return;
  }
  std::vector<uint8_t> x(50, 3);
  std::vector<int8_t> w(4 * 2 * 9, 1);
  std::vector<int32_t> acc(4 * 25);
  const DirectConvInt8Weights wrong = pack_conv_int8_direct(w.data(), 4, 2, 3, 2);
  CHECK_THROWS_WITH_AS(conv2d_u8s8_direct(s, x.data(), 0, wrong, acc.data()),
                       doctest::Contains("packed for (4, 2, 3, 2)"), sprig::Error);
  const DirectConvInt8Weights right = pack_conv_int8_direct(w.data(), 4, 2, 3, 3);
  CHECK_THROWS_WITH_AS(conv2d_u8s8_direct(s, x.data(), 256, right, acc.data()),
                       doctest::Contains("zero point 256"), sprig::Error);
  Conv2dShape one_by_one = s, wide_stride = s;
  one_by_one.R = one_by_one.S = 1;
  wide_stride.stride = 4;
  wide_stride.dilation = 2;
  CHECK_FALSE(conv2d_u8s8_direct_suits(one_by_one));
  CHECK_FALSE(conv2d_u8s8_direct_suits(wide_stride));
  CHECK_THROWS_WITH_AS(conv2d_u8s8_direct(wide_stride, x.data(), 0, right, acc.data()),
                       doctest::Contains("does not suit"), sprig::Error);
  CHECK_THROWS_WITH_AS(pack_conv_int8_direct(w.data(), 4, 2000, 4, 5),
                       doctest::Contains("could overflow"), sprig::Error);
}

TEST_CASE("conv2d_u8s8 refuses a weight packed for another shape and a zero point off uint8") {
  const Conv2dShape s{1, 2, 5, 5, 4, 3, 3, 1, 1, 1};
  std::vector<uint8_t> x(50, 3);
  std::vector<int8_t> w(4 * 2 * 9, 1);
  std::vector<int32_t> acc(4 * 25);
  PackedInt8Weights wrong = pack_int8_weights(w.data(), 4, 17, 17);
  CHECK_THROWS_WITH_AS(conv2d_u8s8(s, x.data(), 0, wrong, acc.data()),
                       doctest::Contains("packed weight is (4, 17)"), sprig::Error);
  PackedInt8Weights right = pack_int8_weights(w.data(), 4, 18, 18);
  CHECK_THROWS_WITH_AS(conv2d_u8s8(s, x.data(), 256, right, acc.data()),
                       doctest::Contains("zero point 256"), sprig::Error);
}
