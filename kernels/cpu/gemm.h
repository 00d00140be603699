#pragma once
// Dense matrix product on raw row-major pointers. Nothing here knows what a Tensor is.
#include <cstdint>
#include <vector>

namespace sprig::cpu {

// C (M, N) = alpha * op(A) * op(B) + beta * C, all row-major.
// op(A) is (M, K): A is stored (M, K) with row stride lda, or (K, M) when trans_a.
// op(B) is (K, N): B is stored (K, N) with row stride ldb, or (N, K) when trans_b.
// beta == 0 overwrites C without reading it (so C may hold NaN garbage).
// Runs on sprig's threads (kernels/cpu/threads.h) when the product is big enough; inside
// another kernel's item (or an OpenMP parallel region) it runs on the calling thread.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Whether gemm(false, true, M, N, K, ...) with the rows of A and B contiguous along K takes
// the dot-product path: each element of C one dot product of a row of A and a row of B,
// nothing packed. A caller that also holds W^T (a Linear layer at inference) passes W, (N, K),
// in these cases and W^T, (K, N), otherwise, where the packed kernel reads it in place.
bool gemm_takes_dots(int64_t M, int64_t N, int64_t K);

// gemm is built for several instruction sets and picks the best one this CPU supports on the
// first call (SPRIG_GEMM_ISA=generic|avx2|avx512 in the environment overrides the choice).
enum class Isa { Generic, Avx2, Avx512 };
const char* isa_name(Isa isa);
bool isa_supported(Isa isa);  // built into this binary and supported by this CPU
Isa gemm_isa();               // the one gemm uses
// gemm with a given instruction set (must be supported), for tests and benchmarks.
void gemm_with(Isa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// op(B) (K, N) packed once into the panels gemm's micro-kernel reads, for a right-hand side that
// many products share (a Linear layer's W^T at inference): gemm packs its B on every call.
// The layout belongs to the instruction set that packed it.
struct GemmPackedB {
  Isa isa = Isa::Generic;
  int64_t K = 0, N = 0;
  std::vector<float> panels;
};
GemmPackedB gemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb,
                        Isa isa = gemm_isa());
// C (M, N) = op(A) op(B) + beta * C with op(B) from gemm_pack_b; beta == 0 never reads C.
void gemm_prepacked(bool trans_a, int64_t M, const float* A, int64_t lda, const GemmPackedB& b,
                    float beta, float* C, int64_t ldc);

// The naive triple loop (double accumulation) the tests compare gemm against.
void gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

}  // namespace sprig::cpu
