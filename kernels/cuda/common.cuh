#pragma once
// Internal to kernels/cuda: error checks, the stream and library handles, launch helpers.
// Not an entry point: include only from .cu files.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusparse.h>

#include <cstdint>

#include "kernels/error.h"

namespace sprig::cuda::detail {

[[noreturn]] void throw_cuda(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t st, const char* call, const char* file, int line);
[[noreturn]] void throw_cusparse(cusparseStatus_t st, const char* call, const char* file, int line);
void check_launch(const char* kernel, const char* file, int line);

// The stream every sprig kernel, copy, cuBLAS and cuSPARSE call runs on (one per device,
// created on first use), and the library handles bound to it.
cudaStream_t stream();
cublasHandle_t cublas();
cusparseHandle_t cusparse();

constexpr int kThreads = 256;
// Blocks for n elements at kThreads per block, capped (kernels use grid-stride loops).
inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return unsigned(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Grid-stride loops: for (int64_t i = first_index(); i < n; i += grid_stride()).
__device__ inline int64_t first_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t grid_stride() {
  return int64_t(gridDim.x) * blockDim.x;
}

// Sum of v over the block (blockDim.x a power of two, at most kThreads) by the same tree every
// time, so results do not change from run to run; every thread gets the total.
// shared: (kThreads)
__device__ inline double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();  // shared may be reused by the caller
  return total;
}

}  // namespace sprig::cuda::detail

// SPRIG_CUDA_CHECK(cudaMemcpyAsync(...)) throws sprig::Error("cudaMemcpyAsync(...) failed: ...").
#define SPRIG_CUDA_CHECK(call)                                                  \
  do {                                                                          \
    cudaError_t sprig_err_ = (call);                                            \
    if (sprig_err_ != cudaSuccess)                                              \
      ::sprig::cuda::detail::throw_cuda(sprig_err_, #call, __FILE__, __LINE__); \
  } while (0)
#define SPRIG_CUBLAS_CHECK(call)                                                 \
  do {                                                                           \
    cublasStatus_t sprig_st_ = (call);                                           \
    if (sprig_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::sprig::cuda::detail::throw_cublas(sprig_st_, #call, __FILE__, __LINE__); \
  } while (0)
#define SPRIG_CUSPARSE_CHECK(call)                                                 \
  do {                                                                             \
    cusparseStatus_t sprig_st_ = (call);                                           \
    if (sprig_st_ != CUSPARSE_STATUS_SUCCESS)                                      \
      ::sprig::cuda::detail::throw_cusparse(sprig_st_, #call, __FILE__, __LINE__); \
  } while (0)
// After a kernel launch: reports a bad launch configuration at once, naming the kernel
// (errors while it runs show up at the next synchronising call).
#define SPRIG_CUDA_LAUNCHED(kernel) ::sprig::cuda::detail::check_launch(kernel, __FILE__, __LINE__)
