#pragma once
// Dense matrix product through cuBLAS (mirrors kernels/cpu/gemm.h: row-major, same arguments).
#include <cstdint>

namespace sprig::cuda {

// C (M, N) = alpha * op(A) * op(B) + beta * C, all row-major in device memory. FP32 math (no
// TF32), so results match the CPU path to float rounding.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace sprig::cuda
