#include "kernels/cpu/quantize.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/quantize_simd.h"
#include "kernels/error.h"

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
// layer's quantisation): detail::quantize16. The tests compare it with the division bit for bit.
__attribute__((target("avx512f"))) void quantize_activations_avx512(const float* x, int64_t n,
                                                                    ActivationQuant a, uint8_t* q) {
  const detail::QuantizeConsts c = detail::quantize_consts(a);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_cvtusepi32_storeu_epi8(q + i, m,
                                       detail::quantize16(_mm512_maskz_loadu_ps(m, x + i), c));
  }
}

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
  // Threads from ~32K outputs: below that splitting costs more than the loop.
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
