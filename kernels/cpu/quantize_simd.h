#pragma once
// Internal to kernels/cpu: the vector step of quantize_activations (quantize.h), shared with the
// kernels that quantise in their stores (conv_int8, gemm_int8) so every path gives the same
// codes. Include only from kernels/cpu .cpp files.
#include <immintrin.h>

#include "kernels/cpu/quantize.h"

namespace sprig::cpu::detail {

// Scalars, broadcast where quantize16 uses them (from memory, into its instructions): a struct
// of __m512 built by an AVX-512 function and held by code compiled without AVX-512 (a
// SPRIG_NATIVE=OFF build on an AVX-512 CPU) was given a stack slot aligned to 32 bytes, and
// the aligned 64-byte store into it crashed.
struct QuantizeConsts {
  float scale, inv, hi, lo;
  int32_t zero;
};

inline QuantizeConsts quantize_consts(ActivationQuant a) {
  return {a.scale, 1.0f / a.scale, 1048576.0f * a.scale, -1048576.0f * a.scale, a.zero};
}

// 16 floats -> their 16 codes as int32 lanes in [0, 255], those of quantize_activations_ref
// without its division: q0 = x x (1 / scale) is within an ulp of x / scale, r = x - q0 x scale
// is exact in one fused multiply-add, and q0 + r x (1 / scale) rounds to the correctly rounded
// quotient (Markstein's theorem: 1 / scale correctly rounded, q0 faithful). x is first clamped
// to +-2^20 steps, where the code saturates anyway, so inf never reaches the correction; NaN
// survives the clamps (minps / maxps return their second operand, x, for NaN) and converts to
// INT_MIN, which the clamp below 0 makes 0. The maskz forms (all lanes kept) spare GCC 12 its
// false "uninitialized" warning on the unmasked intrinsics' pass-through operand.
__attribute__((target("avx512f"))) inline __m512i quantize16(__m512 x, const QuantizeConsts& c) {
  const __m512 inv = _mm512_set1_ps(c.inv);
  const __m512 v = _mm512_maskz_min_ps(0xFFFF, _mm512_set1_ps(c.hi),
                                       _mm512_maskz_max_ps(0xFFFF, _mm512_set1_ps(c.lo), x));
  const __m512 q0 = _mm512_mul_ps(v, inv);
  const __m512 r = _mm512_fnmadd_ps(q0, _mm512_set1_ps(c.scale), v);
  const __m512 quotient = _mm512_fmadd_ps(r, inv, q0);
  // Round half to even (the default rounding mode), add the zero point, clamp below at 0 (the
  // saturating byte store clamps above at 255).
  const __m512i code =
      _mm512_add_epi32(_mm512_maskz_cvtps_epi32(0xFFFF, quotient), _mm512_set1_epi32(c.zero));
  return _mm512_maskz_max_epi32(0xFFFF, code, _mm512_setzero_si512());
}

}  // namespace sprig::cpu::detail
