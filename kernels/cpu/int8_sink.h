#pragma once
// Internal to kernels/cpu: where an int8 product's exact sums go, shared by the dense
// (gemm_int8) and sparse (sparse_int8) kernels so their three outputs are one code: int32 sums,
// dequantised floats with bias and ReLU, or those floats' uint8 codes for the next int8 layer.
// Include only from kernels/cpu .cpp files.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/quantize_simd.h"
#include "kernels/error.h"

// Each int8 kernel is compiled for its instruction set alone (attributes, which GCC and clang
// both read) and only called where int8_isa_supported says the CPU has it.
#define SPRIG_TARGET_AVX2 __attribute__((target("avx2")))
#define SPRIG_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define SPRIG_TARGET_AMX __attribute__((target("amx-tile,amx-int8,avx512f")))

namespace sprig::cpu::detail {

// Each sum arrives already corrected for the zero point: int32 C (gemm_u8s8), or floats
// y = a_scale x w_scales[n] x sum + bias[n], ReLU'd when relu (the _dequantize kernels), or
// those floats' uint8 codes under `out` (the _requantize kernels), so the thread that computed
// a tile also finishes it while it is in its cache.
struct Int8Sink {
  int32_t* C = nullptr;
  int64_t ldc = 0;
  float* y = nullptr;
  uint8_t* q = nullptr;
  int64_t ldy = 0;  // of y or q
  Int8Dequantize dq;
  ActivationQuant out;
  QuantizeConsts out_consts{};

  static Int8Sink sums(int32_t* C, int64_t ldc) {
    Int8Sink s;
    s.C = C;
    s.ldc = ldc;
    return s;
  }
  static Int8Sink dequantizing(const char* who, const Int8Dequantize& dq, float* y, int64_t ldy) {
    SPRIG_CHECK(dq.w_scales != nullptr, who, ": no weight scales");
    Int8Sink s;
    s.y = y;
    s.ldy = ldy;
    s.dq = dq;
    return s;
  }
  static Int8Sink requantizing(const char* who, const Int8Dequantize& dq, ActivationQuant out,
                               uint8_t* q, int64_t ldq) {
    SPRIG_CHECK(dq.w_scales != nullptr, who, ": no weight scales");
    Int8Sink s;
    s.q = q;
    s.ldy = ldq;
    s.dq = dq;
    s.out = out;
    s.out_consts = quantize_consts(out);
    return s;
  }

  // The sink of rows m0 on: row m of the result is row m0 + m of this one.
  Int8Sink shifted(int64_t m0) const {
    Int8Sink s = *this;
    if (s.C) s.C += m0 * ldc;
    if (s.y) s.y += m0 * ldy;
    if (s.q) s.q += m0 * ldy;
    return s;
  }

  void store(int64_t m, int64_t n, int32_t sum) const {
    if (!y && !q) {
      C[m * ldc + n] = sum;
      return;
    }
    float v = dq.a_scale * dq.w_scales[n] * float(sum);  // as dequantize_bias_relu
    if (dq.bias) v += dq.bias[n];
    if (dq.relu) v = std::max(v, 0.0f);
    if (y)
      y[m * ldy + n] = v;
    else
      quantize_activations_ref(&v, 1, out, q + m * ldy + n);
  }
};

// 16 sums of row m from column n0 (the lanes of mask).
__attribute__((target("avx512f"))) inline void store16(const Int8Sink& out, int64_t m, int64_t n0,
                                                       __mmask16 mask, __m512i sums) {
  if (!out.y && !out.q) {
    _mm512_mask_storeu_epi32(out.C + m * out.ldc + n0, mask, sums);
    return;
  }
  // The maskz forms (all lanes) spare GCC 12 its false "uninitialized" warning.
  const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(out.dq.a_scale),
                                     _mm512_maskz_loadu_ps(mask, out.dq.w_scales + n0));
  const __m512 bias =
      out.dq.bias ? _mm512_maskz_loadu_ps(mask, out.dq.bias + n0) : _mm512_setzero_ps();
  __m512 v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, sums), scale, bias);
  if (out.dq.relu) v = _mm512_maskz_max_ps(0xFFFF, v, _mm512_setzero_ps());
  if (out.y)
    _mm512_mask_storeu_ps(out.y + m * out.ldy + n0, mask, v);
  else
    _mm512_mask_cvtusepi32_storeu_epi8(out.q + m * out.ldy + n0, mask,
                                       quantize16(v, out.out_consts));
}

}  // namespace sprig::cpu::detail
