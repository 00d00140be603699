#pragma once
// Quantised matrix products: uint8 activations times int8 weights, summed exactly in int32, the
// product int8 inference is built on (oneDNN, FBGEMM, DeepSparse). Activations are unsigned with
// a zero point (a real value is scale x (a - zero)); weights are symmetric (zero point 0), one
// row per output channel as a Linear stores them. Nothing here knows what a Tensor is.
#include <cstdint>
#include <vector>

#include "kernels/cpu/quantize.h"

namespace sprig::cpu {

// Weights packed once for gemm_u8s8: B (N, K) regrouped into panels of 16 output channels x 4
// consecutive k, the operand layout of AVX-512 VNNI's vpdpbusd (each 32-bit lane multiplies 4
// uint8 by 4 int8 and adds the 4 products to an int32) and of an AMX B tile (16 groups of 4 k
// x 16 channels). Zero-padded to an even number of panels and to groups in sixteens, so AMX
// reads whole 32-column x 64-k blocks.
struct PackedInt8Weights {
  int64_t N = 0, K = 0;
  int64_t K4 = 0;                  // K rounded up to a multiple of 4
  int64_t panels = 0, groups = 0;  // stored: ceil(N / 32) x 2 panels of `groups` groups of 4 k
  std::vector<int8_t> data;        // (panels, groups, 16, 4)
  std::vector<int32_t> row_sums;   // (N) sum over k of B[n, k], for the zero-point correction
};
// B (N, K) int8, row stride ldb >= K.
PackedInt8Weights pack_int8_weights(const int8_t* B, int64_t N, int64_t K, int64_t ldb);

// C (M, N) = (A - a_zero) B^T, exactly (int32, no saturation; pack_int8_weights allows K up to
// 2^15, where every intermediate stays below 2^31):
// A (M, K) uint8 row-major with row stride lda >= K, C (M, N) int32 with row stride ldc >= N.
// Runs on sprig's threads outside another kernel's item; uses AMX tiles where the CPU and Linux
// allow them, else AVX-512 VNNI, else AVX2 (products widened to 16 bits), else plain C++.
void gemm_u8s8(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero, const PackedInt8Weights& B,
               int32_t* C, int64_t ldc);

// y (M, N) = a_scale x w_scales[n] x ((A - a_zero) B^T)[m, n] + bias[n] (bias may be null), then
// max(y, 0) when relu: gemm_u8s8 with dequantize_bias_relu (quantize.h) fused into its stores,
// so no int32 matrix is written and each thread dequantises the tiles it computed. y's row
// stride is ldy >= N.
struct Int8Dequantize {
  float a_scale = 1.0f;
  const float* w_scales = nullptr;  // (N)
  const float* bias = nullptr;      // (N) or null
  bool relu = false;
};
void gemm_u8s8_dequantize(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero,
                          const PackedInt8Weights& B, const Int8Dequantize& dq, float* y,
                          int64_t ldy);

// The same with the result quantised with `out` (the next int8 layer's input): q (M, N) uint8,
// row stride ldq >= N, holds the codes quantize_activations gives y above, bit for bit.
void gemm_u8s8_requantize(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero,
                          const PackedInt8Weights& B, const Int8Dequantize& dq, ActivationQuant out,
                          uint8_t* q, int64_t ldq);

// The instruction sets gemm_u8s8 can use, best first; for tests and benchmarks.
enum class Int8Isa { Amx, Vnni512, Avx2, Generic };
const char* int8_isa_name(Int8Isa isa);
bool int8_isa_supported(Int8Isa isa);
// The one gemm_u8s8 uses (SPRIG_INT8_ISA=amx|vnni512|avx2|generic overrides it).
Int8Isa int8_gemm_isa();
void gemm_u8s8_with(Int8Isa isa, int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero,
                    const PackedInt8Weights& B, int32_t* C, int64_t ldc);
void gemm_u8s8_dequantize_with(Int8Isa isa, int64_t M, const uint8_t* A, int64_t lda,
                               int32_t a_zero, const PackedInt8Weights& B, const Int8Dequantize& dq,
                               float* y, int64_t ldy);
void gemm_u8s8_requantize_with(Int8Isa isa, int64_t M, const uint8_t* A, int64_t lda,
                               int32_t a_zero, const PackedInt8Weights& B, const Int8Dequantize& dq,
                               ActivationQuant out, uint8_t* q, int64_t ldq);

// The triple loop on the unpacked B (N, K), row stride ldb: what the tests compare against.
void gemm_u8s8_ref(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda, int32_t a_zero,
                   const int8_t* B, int64_t ldb, int32_t* C, int64_t ldc);

}  // namespace sprig::cpu
