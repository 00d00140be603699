// int8 quantisation (kernels/cpu/quantize.h) against its definitions, and a quantised Linear
// (quantize -> gemm_u8s8 -> dequantize_bias_relu) against the float Linear within the error
// bound its scales imply.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/error.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/quantize.h"

using namespace sprig::cpu;

TEST_CASE("per-channel weight quantisation: zeros stay zero, extremes map to +-127") {
  const int64_t N = 5, K = 9;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> W(size_t(N * K));
  for (float& w : W) w = u(rng);
  for (int64_t k = 0; k < K; k += 2) W[size_t(k)] = 0.0f;       // pruned weights in row 0
  for (int64_t k = 0; k < K; ++k) W[size_t(3 * K + k)] = 0.0f;  // a fully pruned row
  W[size_t(1 * K + 4)] = -5.0f;                                 // row 1's extreme
  std::vector<int8_t> Q(W.size());
  std::vector<float> scales(static_cast<size_t>(N));
  quantize_weights_per_channel(W.data(), N, K, Q.data(), scales.data());
  CHECK(scales[3] == 1.0f);
  CHECK(scales[1] == doctest::Approx(5.0 / 127.0));
  CHECK(Q[size_t(1 * K + 4)] == -127);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const float w = W[size_t(n * K + k)];
      const int8_t q = Q[size_t(n * K + k)];
      CHECK(q >= -127);
      if (w == 0.0f) CHECK(q == 0);
      CHECK(std::fabs(float(q) * scales[size_t(n)] - w) <= 0.5f * scales[size_t(n)] * 1.0001f);
    }
  W[7] = std::nanf("");
  CHECK_THROWS_WITH_AS(quantize_weights_per_channel(W.data(), N, K, Q.data(), scales.data()),
                       doctest::Contains("weight [0, 7] is nan"), sprig::Error);
}

TEST_CASE(
    "activation quantisation: zero is exact, values round to the nearest step, the rest "
    "clamps") {
  const ActivationQuant a = activation_quant_from_range(-1.0f, 3.0f);
  CHECK(a.scale == doctest::Approx(4.0 / 255.0));
  CHECK(a.zero == 64);  // round(1 / (4 / 255)) = round(63.75)
  const ActivationQuant relu = activation_quant_from_range(0.5f, 6.0f);  // widened to [0, 6]
  CHECK(relu.zero == 0);
  CHECK(relu.scale == doctest::Approx(6.0 / 255.0));
  CHECK(activation_quant_from_range(0.0f, 0.0f).scale == 1.0f);
  CHECK_THROWS_AS(activation_quant_from_range(2.0f, 1.0f), sprig::Error);
  CHECK_THROWS_AS(activation_quant_from_range(0.0f, INFINITY), sprig::Error);
  const std::vector<float> x = {0.0f, -1.0f, 3.0f, 1.234f, -7.0f, 9.0f, std::nanf("")};
  std::vector<uint8_t> q(x.size());
  quantize_activations(x.data(), int64_t(x.size()), a, q.data());
  CHECK(q[0] == a.zero);
  CHECK(a.scale * float(q[0] - a.zero) == 0.0f);
  CHECK(std::fabs(a.scale * float(q[3] - a.zero) - 1.234f) <= 0.5f * a.scale * 1.0001f);
  CHECK(q[4] == 0);    // below the range
  CHECK(q[5] == 255);  // above
  CHECK(q[6] == 0);    // NaN
  // Halves round to even, as ONNX QuantizeLinear: 0.5, 1.5, 2.5, -0.5, -1.5 steps from zero.
  const ActivationQuant unit{1.0f, 10};
  const std::vector<float> halves = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 245.5f, 246.5f};
  std::vector<uint8_t> h(halves.size());
  quantize_activations(halves.data(), int64_t(halves.size()), unit, h.data());
  CHECK(h == std::vector<uint8_t>{10, 12, 12, 10, 8, 255, 255});
}

TEST_CASE("activation quantisation without a division gives the division's codes bit for bit") {
  // Where the two could differ: values on and one ulp beside the half-way points between codes
  // (where rounding decides), across the range and beyond it, under many scales and zero points;
  // plus NaN, infinities, signed zeros, subnormals and the largest floats, and lengths that
  // leave a vector tail.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> log_scale(-12.0f, 3.0f), wide(-1e4f, 1e4f);
  const float specials[] = {std::nanf(""),
                            INFINITY,
                            -INFINITY,
                            0.0f,
                            -0.0f,
                            1e-42f,
                            -1e-42f,
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::min()};
  int64_t compared = 0, mismatched = 0;
  for (int t = 0; t < 300; ++t) {
    ActivationQuant a;
    a.scale = std::exp2(log_scale(rng));
    a.zero = int32_t(rng() % 256);
    std::vector<float> x(size_t(1000 + t % 17));  // not a multiple of 16
    for (size_t i = 0; i < x.size(); ++i) {
      const float half = (float(int(rng() % 700) - 350) + 0.5f) * a.scale;
      switch (i % 5) {
        case 0:
          x[i] = half;
          break;
        case 1:
          x[i] = std::nextafter(half, INFINITY);
          break;
        case 2:
          x[i] = std::nextafter(half, -INFINITY);
          break;
        case 3:
          x[i] = wide(rng) * a.scale;
          break;
        default:
          x[i] = specials[i % std::size(specials)];
      }
    }
    std::vector<uint8_t> fast(x.size()), ref(x.size());
    quantize_activations(x.data(), int64_t(x.size()), a, fast.data());
    quantize_activations_ref(x.data(), int64_t(x.size()), a, ref.data());
    for (size_t i = 0; i < x.size(); ++i) {
      if (fast[i] != ref[i] && mismatched++ < 5)
        MESSAGE("x ", x[i], " scale ", a.scale, " zero ", a.zero, ": ", int(fast[i]), " vs ",
                int(ref[i]));
      ++compared;
    }
  }
  CHECK(compared > 300000);
  CHECK(mismatched == 0);
  // The special values' codes themselves: NaN 0, +inf 255, -inf 0, zeros the zero point.
  const ActivationQuant a{0.1f, 9};
  std::vector<uint8_t> q(std::size(specials));
  quantize_activations(specials, int64_t(std::size(specials)), a, q.data());
  CHECK(q == std::vector<uint8_t>{0, 255, 0, 9, 9, 9, 9, 255, 0, 9});
}

TEST_CASE("a quantised Linear + ReLU stays within its scales' error bound of the float one") {
  const int64_t M = 37, N = 21, K = 150;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> ux(-1.0f, 3.0f), uw(-0.5f, 0.5f);
  std::vector<float> x(size_t(M * K)), W(size_t(N * K)), bias(static_cast<size_t>(N));
  for (float& v : x) v = ux(rng);
  for (float& v : W) v = rng() % 2 ? uw(rng) : 0.0f;  // half pruned
  for (float& v : bias) v = uw(rng);
  // Float reference, in double.
  std::vector<double> want(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = bias[size_t(n)];
      for (int64_t k = 0; k < K; ++k) s += double(x[size_t(m * K + k)]) * W[size_t(n * K + k)];
      want[size_t(m * N + n)] = std::max(s, 0.0);
    }
  // int8: weights per channel, activations calibrated on x's range.
  std::vector<int8_t> Wq(W.size());
  std::vector<float> w_scales(static_cast<size_t>(N));
  quantize_weights_per_channel(W.data(), N, K, Wq.data(), w_scales.data());
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  const ActivationQuant a = activation_quant_from_range(*lo, *hi);
  std::vector<uint8_t> xq(x.size());
  quantize_activations(x.data(), int64_t(x.size()), a, xq.data());
  const PackedInt8Weights packed = pack_int8_weights(Wq.data(), N, K, K);
  std::vector<int32_t> acc(static_cast<size_t>(M * N));
  gemm_u8s8(M, xq.data(), K, a.zero, packed, acc.data(), N);
  std::vector<float> y(static_cast<size_t>(M * N));
  dequantize_bias_relu(M, N, acc.data(), N, a.scale, w_scales.data(), bias.data(), true, y.data(),
                       N);
  // |x w - x' w'| <= sum |x| dw + |w| dx + dx dw with dx <= a.scale / 2, dw <= w_scale / 2;
  // ReLU only shrinks differences.
  int within = 0;
  double worst = 0.0, total_err = 0.0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double bound = 1e-5;
      for (int64_t k = 0; k < K; ++k)
        bound += std::fabs(x[size_t(m * K + k)]) * w_scales[size_t(n)] / 2 +
                 std::fabs(W[size_t(n * K + k)]) * a.scale / 2 + a.scale * w_scales[size_t(n)] / 4;
      const double err = std::fabs(y[size_t(m * N + n)] - want[size_t(m * N + n)]);
      within += err <= bound;
      total_err += err;
      worst = std::max(worst, err / bound);
    }
  MESSAGE("worst error / bound: ", worst);
  CHECK(within == M * N);
  // And int8 is useful, not merely bounded: the mean error is under 1% of the largest output.
  const double largest = *std::max_element(want.begin(), want.end());
  MESSAGE("mean error ", total_err / double(M * N), ", largest output ", largest);
  CHECK(total_err / double(M * N) < 0.01 * largest);
}

TEST_CASE("dequantize_channels_bias_relu is dequantize_bias_relu with channels as rows") {
  // The conv epilogue on acc (N, K, HW) against the Linear one, applied per sample to its
  // transpose (HW, K): the same arithmetic, so the floats must be identical.
  const int64_t N = 3, K = 5, HW = 7;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> ai(-100000, 100000);
  std::uniform_real_distribution<float> u(0.001f, 0.1f);
  std::vector<int32_t> acc(size_t(N * K * HW));  // (N, K, HW)
  for (auto& v : acc) v = ai(rng);
  std::vector<float> scales(static_cast<size_t>(K)), bias(static_cast<size_t>(K));
  for (auto& v : scales) v = u(rng);
  for (auto& v : bias) v = u(rng) - 0.05f;
  for (bool relu : {false, true})
    for (bool with_bias : {false, true}) {
      const float* b = with_bias ? bias.data() : nullptr;
      std::vector<float> got(acc.size());
      dequantize_channels_bias_relu(N, K, HW, acc.data(), 0.02f, scales.data(), b, relu,
                                    got.data());
      for (int64_t n = 0; n < N; ++n) {
        std::vector<float> want(size_t(HW * K));  // (HW, K)
        // acc[n] read as (HW, K) with row stride 1 is not expressible: transpose it first.
        std::vector<int32_t> t(size_t(HW * K));
        for (int64_t k = 0; k < K; ++k)
          for (int64_t i = 0; i < HW; ++i) t[size_t(i * K + k)] = acc[size_t((n * K + k) * HW + i)];
        dequantize_bias_relu(HW, K, t.data(), K, 0.02f, scales.data(), b, relu, want.data(), K);
        for (int64_t k = 0; k < K; ++k)
          for (int64_t i = 0; i < HW; ++i)
            CHECK(got[size_t((n * K + k) * HW + i)] == want[size_t(i * K + k)]);
      }
    }
}

TEST_CASE("fake quantisation gives the float value of exactly the int8 code, STE gradients") {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-3.0f, 5.0f);
  std::vector<float> x(1000);
  for (float& v : x) v = u(rng);
  x[0] = std::nanf("");
  x[1] = 0.0f;
  const ActivationQuant a = activation_quant_from_range(-1.0f, 3.0f);  // clamps both tails
  std::vector<uint8_t> q(x.size());
  std::vector<float> y(x.size()), dy(x.size()), dx(x.size());
  quantize_activations(x.data(), int64_t(x.size()), a, q.data());
  fake_quantize_activations(x.data(), int64_t(x.size()), a, y.data());
  for (size_t i = 0; i < x.size(); ++i) dy[i] = float(i) + 1.0f;
  fake_quantize_activations_backward(x.data(), dy.data(), int64_t(x.size()), a, dx.data());
  int clamped = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    CAPTURE(x[i]);
    CHECK(y[i] == a.scale * float(int32_t(q[i]) - a.zero));  // bit for bit
    // Inside the representable range the gradient passes; outside (and for NaN) it stops.
    const bool inside = x[i] >= -1.0f - a.scale / 2 && x[i] <= 3.0f + a.scale / 2;
    if (std::fabs(x[i] + 1.0f) > a.scale && std::fabs(x[i] - 3.0f) > a.scale)
      CHECK(dx[i] == (inside ? dy[i] : 0.0f));
    clamped += dx[i] == 0.0f;
  }
  CHECK(y[1] == 0.0f);   // zero is exact
  CHECK(clamped > 100);  // both tails were exercised

  // Weights: each channel's symmetric int8 rendering, as quantize_weights_per_channel.
  const int64_t N = 7, K = 13;
  std::vector<float> W(size_t(N * K)), Y(W.size()), scales(static_cast<size_t>(N));
  for (float& v : W) v = u(rng);
  for (int64_t k = 0; k < K; ++k) W[size_t(2 * K + k)] = 0.0f;  // an all-zero channel
  W[5] = 0.0f;                                                  // a pruned weight
  std::vector<int8_t> Q(W.size());
  quantize_weights_per_channel(W.data(), N, K, Q.data(), scales.data());
  fake_quantize_weights_per_channel(W.data(), N, K, Y.data());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      CHECK(Y[size_t(n * K + k)] == scales[size_t(n)] * float(Q[size_t(n * K + k)]));
  CHECK(Y[5] == 0.0f);
  // A non-finite weight poisons its channel (training then stops on the NaN loss).
  W[3] = INFINITY;
  fake_quantize_weights_per_channel(W.data(), N, K, Y.data());
  CHECK(std::isnan(Y[0]));
  CHECK(std::isfinite(Y[size_t(K)]));
}
