// Row-major gemm through cuBLAS (column-major), with the CPU path's semantics for the edge cases.
//
// The mapping. A row-major matrix X (r, c) with row stride ld occupies exactly the memory of the
// column-major matrix X^T (c, r) with leading dimension ld. So our C (M, N), row stride ldc, is
// cuBLAS's column-major Ccm = C^T (N, M) with ldc, and
//     C = alpha op(A) op(B) + beta C   <=>   C^T = alpha op(B)^T op(A)^T + beta C^T,
// which is a column-major gemm with m = N, n = M, k = K whose first operand comes from B and
// second from A:
//   * B, not trans_b: stored (K, N) row-major = Bcm (N, K) column-major, ld ldb. op(B)^T = B^T =
//     Bcm, so CUBLAS_OP_N; cuBLAS sees an m x k = N x K matrix with ld >= N.
//     B, trans_b: stored (N, K) row-major = Bcm (K, N) column-major, ld ldb; op(B) = stored^T, so
//     op(B)^T = stored (N, K) = Bcm^T: CUBLAS_OP_T, ld >= K.
//   * A, not trans_a: stored (M, K) row-major = Acm (K, M) column-major, ld lda. op(A)^T = A^T =
//     Acm (K x M = k x n): CUBLAS_OP_N, ld >= K.
//     A, trans_a: stored (K, M) row-major = Acm (M, K), op(A)^T = stored = Acm^T: CUBLAS_OP_T,
//     ld >= M.
//   * C: Ccm (N, M), ld >= N.
// In short: cublasSgemm(op(trans_b), op(trans_a), N, M, K, alpha, B, ldb, A, lda, beta, C, ldc).
#include <climits>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.cuh"

namespace sprig::cuda {
namespace {

// C (M, N), row stride ldc: C = beta * C, writing 0 without reading C when beta == 0 (so NaN
// garbage is overwritten), as the CPU gemm does for K == 0 or alpha == 0.
__global__ void scale_matrix_kernel(float* C, int64_t M, int64_t N, int64_t ldc, float beta) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    float* p = C + (i / N) * ldc + i % N;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

void check_fits_int(int64_t v, const char* name) {
  SPRIG_CHECK(v >= 0 && v <= INT_MAX, "cuda::gemm: ", name, " = ", v,
              " is negative or does not fit the int cuBLAS takes");
}

// The leading dimension cuBLAS sees for a row-major matrix of `rows` rows of `cols` columns with
// row stride ld. The stride is never used with a single row, so there it is raised to what cuBLAS
// requires (>= max(1, cols)); with several rows a stride shorter than a row is an error.
int leading_dim(int64_t ld, int64_t rows, int64_t cols, const char* name) {
  const int64_t need = cols > 1 ? cols : 1;
  if (rows <= 1 && ld < need) ld = need;
  SPRIG_CHECK(ld >= need, "cuda::gemm: ", name, " = ", ld, " is shorter than a row of ", cols,
              " elements");
  check_fits_int(ld, name);
  return (int)ld;
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_fits_int(M, "M");
  check_fits_int(N, "N");
  check_fits_int(K, "K");
  if (M == 0 || N == 0) return;
  const int ldc_ = leading_dim(ldc, M, N, "ldc");  // C stored (M, N)
  if (K == 0 || alpha == 0.0f) {
    // Nothing to multiply: C = beta * C without touching A or B (which may be null or hold
    // non-finite values that 0 * x would turn into NaN).
    scale_matrix_kernel<<<detail::blocks_for(M * N), detail::kThreads, 0, detail::stream()>>>(
        C, M, N, ldc_, beta);
    SPRIG_CUDA_LAUNCHED("scale_matrix_kernel");
    return;
  }
  // Row-major storage shapes: A is (M, K), or (K, M) when trans_a; B is (K, N), or (N, K).
  const int lda_ = trans_a ? leading_dim(lda, K, M, "lda") : leading_dim(lda, M, K, "lda");
  const int ldb_ = trans_b ? leading_dim(ldb, N, K, "ldb") : leading_dim(ldb, K, N, "ldb");
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  // C^T (N, M) = op(B)^T (N, K) * op(A)^T (K, M), see the derivation at the top. cuBLAS does not
  // read C when beta == 0.
  SPRIG_CUBLAS_CHECK(cublasSgemm(detail::cublas(), op_b, op_a, (int)N, (int)M, (int)K, &alpha, B,
                                 ldb_, A, lda_, &beta, C, ldc_));
}

}  // namespace sprig::cuda
