#pragma once
// sprig's CUDA emulator (see cuda_runtime.h): the part of cuSPARSE's generic API sprig uses, a
// reference CSR x dense product.
#include <cstdint>

#include "cuda_runtime.h"

enum cusparseStatus_t {
  CUSPARSE_STATUS_SUCCESS = 0,
  CUSPARSE_STATUS_NOT_INITIALIZED = 1,
  CUSPARSE_STATUS_ALLOC_FAILED = 2,
  CUSPARSE_STATUS_INVALID_VALUE = 3,
  CUSPARSE_STATUS_NOT_SUPPORTED = 10,
};
enum cusparseOperation_t {
  CUSPARSE_OPERATION_NON_TRANSPOSE = 0,
  CUSPARSE_OPERATION_TRANSPOSE = 1,
  CUSPARSE_OPERATION_CONJUGATE_TRANSPOSE = 2,
};
enum cusparseIndexType_t { CUSPARSE_INDEX_16U = 1, CUSPARSE_INDEX_32I = 2, CUSPARSE_INDEX_64I = 3 };
enum cusparseIndexBase_t { CUSPARSE_INDEX_BASE_ZERO = 0, CUSPARSE_INDEX_BASE_ONE = 1 };
enum cusparseOrder_t { CUSPARSE_ORDER_COL = 1, CUSPARSE_ORDER_ROW = 2 };
enum cusparseSpMMAlg_t {
  CUSPARSE_SPMM_ALG_DEFAULT = 0,
  CUSPARSE_SPMM_CSR_ALG1 = 4,
  CUSPARSE_SPMM_CSR_ALG2 = 6,
  CUSPARSE_SPMM_CSR_ALG3 = 12,
};
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2 };
typedef cudaDataType cudaDataType_t;

struct cusparseContext;
struct cusparseSpMatDescr;
struct cusparseDnMatDescr;
typedef cusparseContext* cusparseHandle_t;
typedef cusparseSpMatDescr* cusparseSpMatDescr_t;
typedef cusparseDnMatDescr* cusparseDnMatDescr_t;
typedef const cusparseDnMatDescr* cusparseConstDnMatDescr_t;

const char* cusparseGetErrorName(cusparseStatus_t st);
const char* cusparseGetErrorString(cusparseStatus_t st);
cusparseStatus_t cusparseCreate(cusparseHandle_t* h);
cusparseStatus_t cusparseDestroy(cusparseHandle_t h);
cusparseStatus_t cusparseSetStream(cusparseHandle_t h, cudaStream_t s);
cusparseStatus_t cusparseCreateCsr(cusparseSpMatDescr_t* d, int64_t rows, int64_t cols, int64_t nnz,
                                   void* row_offsets, void* col_ind, void* values,
                                   cusparseIndexType_t row_type, cusparseIndexType_t col_type,
                                   cusparseIndexBase_t base, cudaDataType value_type);
cusparseStatus_t cusparseDestroySpMat(cusparseSpMatDescr_t d);
cusparseStatus_t cusparseCreateDnMat(cusparseDnMatDescr_t* d, int64_t rows, int64_t cols,
                                     int64_t ld, void* values, cudaDataType value_type,
                                     cusparseOrder_t order);
cusparseStatus_t cusparseDestroyDnMat(cusparseDnMatDescr_t d);
// C = alpha op(A) op(B) + beta C with A sparse (CSR), B and C dense; host alpha and beta.
cusparseStatus_t cusparseSpMM_bufferSize(cusparseHandle_t h, cusparseOperation_t op_a,
                                         cusparseOperation_t op_b, const void* alpha,
                                         cusparseSpMatDescr_t A, cusparseDnMatDescr_t B,
                                         const void* beta, cusparseDnMatDescr_t C,
                                         cudaDataType compute_type, cusparseSpMMAlg_t alg,
                                         size_t* bytes);
cusparseStatus_t cusparseSpMM(cusparseHandle_t h, cusparseOperation_t op_a,
                              cusparseOperation_t op_b, const void* alpha, cusparseSpMatDescr_t A,
                              cusparseDnMatDescr_t B, const void* beta, cusparseDnMatDescr_t C,
                              cudaDataType compute_type, cusparseSpMMAlg_t alg, void* buffer);
