#include "kernels/cpu/quantize.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "kernels/cpu/parallel.h"

namespace sprig::cpu {

void quantize_weights_per_channel(const float* W, int64_t N, int64_t K, int8_t* Q, float* scales) {
  for (int64_t n = 0; n < N; ++n) {
    const float* row = W + n * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      SPRIG_CHECK(std::isfinite(row[k]), "quantize_weights_per_channel: weight [", n, ", ", k,
                  "] is ", row[k]);
      amax = std::max(amax, std::fabs(row[k]));
    }
    const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    scales[n] = scale;
    for (int64_t k = 0; k < K; ++k)
      Q[n * K + k] = int8_t(std::clamp(std::lrint(row[k] / scale), -127L, 127L));
  }
}

ActivationQuant activation_quant_from_range(float lo, float hi) {
  SPRIG_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "activation range [", lo, ", ",
              hi, "] is not a finite interval");
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  ActivationQuant a;
  if (hi - lo <= 0.0f) return a;  // all zeros: any scale represents them exactly
  a.scale = (hi - lo) / 255.0f;
  a.zero = int32_t(std::clamp(std::lrint(-lo / a.scale), 0L, 255L));
  return a;
}

void quantize_activations_ref(const float* x, int64_t n, ActivationQuant a, uint8_t* q) {
  const float s = a.scale, z = float(a.zero);
  for (int64_t i = 0; i < n; ++i) {
    // ONNX QuantizeLinear exactly: x / scale (a division, not a multiply by 1 / scale) rounded
    // half to even, plus the zero point, saturated; so onnxruntime and sprig agree bit for bit.
    // NaN fails both comparisons: 0.
    const float v = __builtin_rintf(x[i] / s) + z;
    const float above = 0.0f < v ? v : 0.0f;
    const float c = above < 255.0f ? above : 255.0f;
    q[i] = uint8_t(int32_t(c));
  }
}

namespace {

// The same codes without a division (vdivps costs ~8 cycles per 16 floats, most of a small
// layer's quantisation): q0 = x x (1 / scale) is within an ulp of x / scale, r = x - q0 x scale
// is exact in one fused multiply-add, and q0 + r x (1 / scale) rounds to the correctly rounded
// quotient (Markstein's theorem: 1 / scale correctly rounded, q0 faithful). x is first clamped
// to +-2^20 steps, where the code saturates anyway, so inf never reaches the correction; NaN
// survives the clamps (minps / maxps return their second operand, x, for NaN) and converts to
// INT_MIN, which the clamp below 0 makes 0. The tests compare it with the division bit for bit.
// GCC 12 warns, falsely, that the unmasked intrinsics' undefined pass-through operand is read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void quantize_activations_avx512(const float* x, int64_t n,
                                                                    ActivationQuant a,
                                                                    uint8_t* q) {
  const __m512 s = _mm512_set1_ps(a.scale), inv = _mm512_set1_ps(1.0f / a.scale);
  const __m512 hi = _mm512_set1_ps(1048576.0f * a.scale), lo = _mm512_set1_ps(-1048576.0f * a.scale);
  const __m512i z = _mm512_set1_epi32(a.zero), zero = _mm512_setzero_si512();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));
    const __m512 q0 = _mm512_mul_ps(v, inv);
    const __m512 r = _mm512_fnmadd_ps(q0, s, v);
    const __m512 quotient = _mm512_fmadd_ps(r, inv, q0);
    // Round half to even (the default rounding mode), add the zero point, clamp to [0, 255].
    __m512i c = _mm512_add_epi32(_mm512_cvtps_epi32(quotient), z);
    c = _mm512_max_epi32(c, zero);
    _mm512_mask_cvtusepi32_storeu_epi8(q + i, m, c);
  }
}
#pragma GCC diagnostic pop

}  // namespace

void quantize_activations(const float* x, int64_t n, ActivationQuant a, uint8_t* q) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  parallel_range(n, int64_t(1) << 13, [=](int64_t lo, int64_t hi) {
    if (avx512)
      quantize_activations_avx512(x + lo, hi - lo, a, q + lo);
    else
      quantize_activations_ref(x + lo, hi - lo, a, q + lo);
  });
}

void dequantize_bias_relu(int64_t M, int64_t N, const int32_t* acc, int64_t ldacc, float a_scale,
                          const float* w_scales, const float* bias, bool relu, float* y,
                          int64_t ldy) {
  // Threads from ~32K outputs: below that the parallel region costs more than the loop.
  parallel_range(M, std::max<int64_t>(2, (int64_t(1) << 15) / std::max<int64_t>(1, N)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t m = lo; m < hi; ++m)
                     for (int64_t n = 0; n < N; ++n) {
                       float v = a_scale * w_scales[n] * float(acc[m * ldacc + n]);
                       if (bias) v += bias[n];
                       y[m * ldy + n] = relu ? std::max(v, 0.0f) : v;
                     }
                 });
}

void dequantize_channels_bias_relu(int64_t N, int64_t K, int64_t HW, const int32_t* acc,
                                   float a_scale, const float* w_scales, const float* bias,
                                   bool relu, float* y) {
  parallel_range(N * K, std::max<int64_t>(2, (int64_t(1) << 15) / std::max<int64_t>(1, HW)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t nk = lo; nk < hi; ++nk) {
                     const int64_t k = nk % K;
                     const float s = a_scale * w_scales[k], b = bias ? bias[k] : 0.0f;
                     const int32_t* a = acc + nk * HW;
                     float* out = y + nk * HW;
                     for (int64_t i = 0; i < HW; ++i) {
                       const float v = s * float(a[i]) + b;
                       out[i] = relu ? std::max(v, 0.0f) : v;
                     }
                   }
                 });
}

void fake_quantize_activations(const float* x, int64_t n, ActivationQuant a, float* y) {
  const float scale = a.scale, zero = float(a.zero);
  parallel_range(n, int64_t(1) << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float v = __builtin_rintf(x[i] / scale) + zero;  // as quantize_activations
      const float above = 0.0f < v ? v : 0.0f;
      const float q = above < 255.0f ? above : 255.0f;
      y[i] = scale * (q - zero);
    }
  });
}

void fake_quantize_activations_backward(const float* x, const float* dy, int64_t n,
                                        ActivationQuant a, float* dx) {
  const float scale = a.scale, zero = float(a.zero);
  parallel_range(n, int64_t(1) << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float v = __builtin_rintf(x[i] / scale) + zero;
      dx[i] = v >= 0.0f && v <= 255.0f ? dy[i] : 0.0f;
    }
  });
}

void fake_quantize_weights_per_channel(const float* W, int64_t N, int64_t K, float* Y) {
  parallel_range(N, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n) {
      const float* row = W + n * K;
      float amax = 0.0f;
      bool finite = true;
      for (int64_t k = 0; k < K; ++k) {
        amax = std::max(amax, std::fabs(row[k]));
        finite = finite && std::isfinite(row[k]);
      }
      // As quantize_weights_per_channel; a NaN scale carries a bad weight into the loss.
      const float scale = !finite ? NAN : amax > 0.0f ? amax / 127.0f : 1.0f;
      for (int64_t k = 0; k < K; ++k) {
        // As quantize_weights_per_channel: round half to even, clamp to [-127, 127].
        const float q = std::clamp(__builtin_rintf(row[k] / scale), -127.0f, 127.0f);
        Y[n * K + k] = scale * q;
      }
    }
  });
}

}  // namespace sprig::cpu
