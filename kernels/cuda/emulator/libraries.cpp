// sprig's CUDA emulator (see cuda_runtime.h): reference cuBLAS SGEMM and cuSPARSE SpMM, with
// the argument checks of the real libraries and the emulator's checks of device memory.
#include <algorithm>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cusparse.h"
#include "internal.h"

struct cublasContext {};
struct cusparseContext {};
struct cusparseSpMatDescr {
  int64_t rows, cols, nnz;
  const int32_t *row_ptr, *col;
  const float* val;
};
struct cusparseDnMatDescr {
  int64_t rows, cols, ld;
  float* val;
  cusparseOrder_t order;
};

using namespace sprig_emu;

// ---- cuBLAS -------------------------------------------------------------------------------------
const char* cublasGetStatusName(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t st) {
  return st == CUBLAS_STATUS_SUCCESS ? "success" : "reported by the sprig CUDA emulator";
}
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) {
  return CUBLAS_STATUS_SUCCESS;
}

// Bytes a column-major (rows, cols) matrix with leading dimension ld spans.
static size_t span(int64_t rows, int64_t cols, int64_t ld, size_t elem) {
  return rows <= 0 || cols <= 0 ? 0 : size_t((cols - 1) * ld + rows) * elem;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t op_a, cublasOperation_t op_b, int m,
                           int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc) {
  Lock lock(g_mu);
  const bool ta = op_a != CUBLAS_OP_N, tb = op_b != CUBLAS_OP_N;
  const int a_rows = ta ? k : m, b_rows = tb ? n : k;  // as stored
  if (!h || m < 0 || n < 0 || k < 0 || lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) ||
      ldc < std::max(1, m)) {
    report("cublasSgemm: invalid m, n, k or leading dimension (m " + std::to_string(m) + ", n " +
           std::to_string(n) + ", k " + std::to_string(k) + ", lda " + std::to_string(lda) +
           ", ldb " + std::to_string(ldb) + ", ldc " + std::to_string(ldc) + ")");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const bool use_ab = k > 0 && *alpha != 0.0f;
  if ((use_ab && (!check_range("cublasSgemm", "A", A, span(a_rows, ta ? m : k, lda, 4), true) ||
                  !check_range("cublasSgemm", "B", B, span(b_rows, tb ? k : n, ldb, 4), true))) ||
      !check_range("cublasSgemm", "C", C, span(m, n, ldc, 4), true))
    return CUBLAS_STATUS_INVALID_VALUE;
  // op(A) as rows of k and op(B) as columns of k, contiguous, then dot products in double.
  std::vector<float> a(use_ab ? size_t(m) * k : 0), b(use_ab ? size_t(n) * k : 0);
  for (int64_t i = 0; use_ab && i < m; ++i)
    for (int64_t p = 0; p < k; ++p) a[i * k + p] = ta ? A[p + i * lda] : A[i + p * lda];
  for (int64_t j = 0; use_ab && j < n; ++j)
    for (int64_t p = 0; p < k; ++p) b[j * k + p] = tb ? B[j + p * ldb] : B[p + j * ldb];
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      const float *ai = a.data() + i * k, *bj = b.data() + j * k;
      double part[8] = {};  // 8 running sums, which the compiler vectorises
      int64_t p = 0;
      for (; use_ab && p + 8 <= k; p += 8)
        for (int q = 0; q < 8; ++q) part[q] += double(ai[p + q]) * bj[p + q];
      for (; use_ab && p < k; ++p) part[0] += double(ai[p]) * bj[p];
      const double s =
          ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      float& c = C[i + j * ldc];
      c = float(double(*alpha) * s) + (*beta == 0.0f ? 0.0f : *beta * c);
    }
  return check_canaries("cublasSgemm") ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

// ---- cuSPARSE -----------------------------------------------------------------------------------
const char* cusparseGetErrorName(cusparseStatus_t st) {
  switch (st) {
    case CUSPARSE_STATUS_SUCCESS:
      return "CUSPARSE_STATUS_SUCCESS";
    case CUSPARSE_STATUS_NOT_INITIALIZED:
      return "CUSPARSE_STATUS_NOT_INITIALIZED";
    case CUSPARSE_STATUS_ALLOC_FAILED:
      return "CUSPARSE_STATUS_ALLOC_FAILED";
    case CUSPARSE_STATUS_INVALID_VALUE:
      return "CUSPARSE_STATUS_INVALID_VALUE";
    case CUSPARSE_STATUS_NOT_SUPPORTED:
      return "CUSPARSE_STATUS_NOT_SUPPORTED";
  }
  return "CUSPARSE_STATUS_UNKNOWN";
}
const char* cusparseGetErrorString(cusparseStatus_t st) {
  return st == CUSPARSE_STATUS_SUCCESS ? "success" : "reported by the sprig CUDA emulator";
}
cusparseStatus_t cusparseCreate(cusparseHandle_t* h) {
  *h = new cusparseContext;
  return CUSPARSE_STATUS_SUCCESS;
}
cusparseStatus_t cusparseDestroy(cusparseHandle_t h) {
  delete h;
  return CUSPARSE_STATUS_SUCCESS;
}
cusparseStatus_t cusparseSetStream(cusparseHandle_t, cudaStream_t) {
  return CUSPARSE_STATUS_SUCCESS;
}
static cusparseStatus_t sparse_error(const std::string& msg, cusparseStatus_t st) {
  report(msg);
  return st;
}
cusparseStatus_t cusparseCreateCsr(cusparseSpMatDescr_t* d, int64_t rows, int64_t cols, int64_t nnz,
                                   void* row_offsets, void* col_ind, void* values,
                                   cusparseIndexType_t row_type, cusparseIndexType_t col_type,
                                   cusparseIndexBase_t base, cudaDataType value_type) {
  if (row_type != CUSPARSE_INDEX_32I || col_type != CUSPARSE_INDEX_32I ||
      base != CUSPARSE_INDEX_BASE_ZERO || value_type != CUDA_R_32F)
    return sparse_error(
        "cusparseCreateCsr: only 32-bit indices from 0 and float values are emulated",
        CUSPARSE_STATUS_NOT_SUPPORTED);
  if (rows < 0 || cols < 0 || nnz < 0)
    return sparse_error("cusparseCreateCsr: negative size", CUSPARSE_STATUS_INVALID_VALUE);
  *d = new cusparseSpMatDescr{rows,
                              cols,
                              nnz,
                              static_cast<const int32_t*>(row_offsets),
                              static_cast<const int32_t*>(col_ind),
                              static_cast<const float*>(values)};
  return CUSPARSE_STATUS_SUCCESS;
}
cusparseStatus_t cusparseDestroySpMat(cusparseSpMatDescr_t d) {
  delete d;
  return CUSPARSE_STATUS_SUCCESS;
}
cusparseStatus_t cusparseCreateDnMat(cusparseDnMatDescr_t* d, int64_t rows, int64_t cols,
                                     int64_t ld, void* values, cudaDataType value_type,
                                     cusparseOrder_t order) {
  if (value_type != CUDA_R_32F)
    return sparse_error("cusparseCreateDnMat: only float values are emulated",
                        CUSPARSE_STATUS_NOT_SUPPORTED);
  if (rows < 0 || cols < 0 || ld < (order == CUSPARSE_ORDER_COL ? rows : cols))
    return sparse_error("cusparseCreateDnMat: ld " + std::to_string(ld) + " too small for (" +
                            std::to_string(rows) + ", " + std::to_string(cols) + ")",
                        CUSPARSE_STATUS_INVALID_VALUE);
  *d = new cusparseDnMatDescr{rows, cols, ld, static_cast<float*>(values), order};
  return CUSPARSE_STATUS_SUCCESS;
}
cusparseStatus_t cusparseDestroyDnMat(cusparseDnMatDescr_t d) {
  delete d;
  return CUSPARSE_STATUS_SUCCESS;
}

static size_t dense_bytes(const cusparseDnMatDescr* d) {
  return d->order == CUSPARSE_ORDER_COL ? span(d->rows, d->cols, d->ld, 4)
                                        : span(d->cols, d->rows, d->ld, 4);
}
static float& at(const cusparseDnMatDescr* d, int64_t r, int64_t c) {
  return d->order == CUSPARSE_ORDER_COL ? d->val[r + c * d->ld] : d->val[r * d->ld + c];
}
static cusparseStatus_t spmm_check(cusparseHandle_t h, cusparseOperation_t op_a,
                                   cusparseOperation_t op_b, cusparseSpMatDescr_t A,
                                   cusparseDnMatDescr_t B, cusparseDnMatDescr_t C,
                                   cudaDataType type) {
  if (!h || !A || !B || !C)
    return sparse_error("cusparseSpMM: null handle or descriptor", CUSPARSE_STATUS_INVALID_VALUE);
  if (op_a != CUSPARSE_OPERATION_NON_TRANSPOSE || op_b != CUSPARSE_OPERATION_NON_TRANSPOSE ||
      type != CUDA_R_32F)
    return sparse_error("cusparseSpMM: only op(A) = A, op(B) = B in float are emulated",
                        CUSPARSE_STATUS_NOT_SUPPORTED);
  if (A->cols != B->rows || A->rows != C->rows || B->cols != C->cols)
    return sparse_error("cusparseSpMM: shapes do not match: A (" + std::to_string(A->rows) + ", " +
                            std::to_string(A->cols) + "), B (" + std::to_string(B->rows) + ", " +
                            std::to_string(B->cols) + "), C (" + std::to_string(C->rows) + ", " +
                            std::to_string(C->cols) + ")",
                        CUSPARSE_STATUS_INVALID_VALUE);
  return CUSPARSE_STATUS_SUCCESS;
}
cusparseStatus_t cusparseSpMM_bufferSize(cusparseHandle_t h, cusparseOperation_t op_a,
                                         cusparseOperation_t op_b, const void*,
                                         cusparseSpMatDescr_t A, cusparseDnMatDescr_t B,
                                         const void*, cusparseDnMatDescr_t C,
                                         cudaDataType compute_type, cusparseSpMMAlg_t,
                                         size_t* bytes) {
  const cusparseStatus_t st = spmm_check(h, op_a, op_b, A, B, C, compute_type);
  if (st == CUSPARSE_STATUS_SUCCESS) *bytes = size_t(A->rows + 1) * 4;  // so that it is checked
  return st;
}
cusparseStatus_t cusparseSpMM(cusparseHandle_t h, cusparseOperation_t op_a,
                              cusparseOperation_t op_b, const void* alpha_p, cusparseSpMatDescr_t A,
                              cusparseDnMatDescr_t B, const void* beta_p, cusparseDnMatDescr_t C,
                              cudaDataType compute_type, cusparseSpMMAlg_t, void* buffer) {
  Lock lock(g_mu);
  cusparseStatus_t st = spmm_check(h, op_a, op_b, A, B, C, compute_type);
  if (st != CUSPARSE_STATUS_SUCCESS) return st;
  const char* call = "cusparseSpMM";
  if (!check_range(call, "the buffer", buffer, size_t(A->rows + 1) * 4, true) ||
      !check_range(call, "row offsets", A->row_ptr, size_t(A->rows + 1) * 4, true) ||
      !check_range(call, "B", B->val, dense_bytes(B), true) ||
      !check_range(call, "C", C->val, dense_bytes(C), true))
    return CUSPARSE_STATUS_INVALID_VALUE;
  if (A->row_ptr[0] != 0 || A->row_ptr[A->rows] != A->nnz)
    return sparse_error("cusparseSpMM: row offsets do not run from 0 to nnz",
                        CUSPARSE_STATUS_INVALID_VALUE);
  if (!check_range(call, "column indices", A->col, size_t(A->nnz) * 4, true) ||
      !check_range(call, "values", A->val, size_t(A->nnz) * 4, true))
    return CUSPARSE_STATUS_INVALID_VALUE;
  for (int64_t r = 0; r < A->rows; ++r)
    for (int32_t e = A->row_ptr[r]; e < A->row_ptr[r + 1]; ++e)
      if (A->row_ptr[r + 1] < A->row_ptr[r] || A->col[e] < 0 || A->col[e] >= A->cols)
        return sparse_error("cusparseSpMM: row " + std::to_string(r) +
                                " has decreasing offsets or a column out of range",
                            CUSPARSE_STATUS_INVALID_VALUE);
  const float alpha = *static_cast<const float*>(alpha_p),
              beta = *static_cast<const float*>(beta_p);
  for (int64_t j = 0; j < C->cols; ++j)
    for (int64_t r = 0; r < A->rows; ++r) {
      double s = 0.0;
      for (int32_t e = A->row_ptr[r]; e < A->row_ptr[r + 1]; ++e)
        s += double(A->val[e]) * at(B, A->col[e], j);
      float& c = at(C, r, j);
      c = float(double(alpha) * s) + (beta == 0.0f ? 0.0f : beta * c);
    }
  return check_canaries(call) ? CUSPARSE_STATUS_SUCCESS : CUSPARSE_STATUS_INVALID_VALUE;
}
