// Reductions. Float sums are deterministic: the grid size depends only on n, each thread adds
// its grid-stride slice in order, blocks reduce with a fixed tree, and one block adds the
// block partials with the same tree; no floating-point atomics anywhere.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/runtime.cuh"

namespace sprig::cuda {

using detail::block_sum;
using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

// Enough blocks to fill an H100 several times over; more would only lengthen the final pass.
constexpr unsigned kMaxPartials = 1024;

// partial (gridDim.x) = per-block sums of x (n)
__global__ void sum_partial_kernel(int64_t n, const float* x, double* partial) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) s += double(x[i]);
  double total = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// One block: out[0] = float(factor * sum(partial (count)))
__global__ void sum_finish_kernel(int64_t count, const double* partial, float factor, float* out) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  double total = block_sum(s, shared);
  if (threadIdx.x == 0) out[0] = float(double(factor) * total);
}

// One thread per column adds its rows in order, so each column matches the CPU's sum exactly;
// neighbouring threads read neighbouring columns, so the loads coalesce.
// x (rows, cols), out (cols)
__global__ void sum_rows_kernel(int64_t rows, int64_t cols, const float* x, float* out) {
  for (int64_t c = first_index(); c < cols; c += grid_stride()) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += double(x[r * cols + c]);
    out[c] = float(s);
  }
}

// *bad = 1 when some x (n) is NaN or infinite
__global__ void all_finite_kernel(int64_t n, const float* x, int* bad) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    if (!isfinite(x[i])) atomicOr(bad, 1);
}

// *count += the number of x (n) != 0 (NaN counts, as on the CPU); integer atomics are exact.
__global__ void count_nonzero_kernel(int64_t n, const float* x, unsigned long long* count) {
  __shared__ unsigned long long shared[kThreads];
  unsigned long long c = 0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) c += x[i] != 0.0f;
  shared[threadIdx.x] = c;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0 && shared[0] != 0) atomicAdd(count, shared[0]);
}

}  // namespace

void sum(int64_t n, const float* x, float factor, float* out) {
  const unsigned blocks = std::min(blocks_for(n), kMaxPartials);
  const size_t bytes = blocks * sizeof(double);
  double* partial = static_cast<double*>(device_alloc(bytes));  // (blocks)
  sum_partial_kernel<<<blocks, kThreads, 0, stream()>>>(n, x, partial);
  SPRIG_CUDA_LAUNCHED("sum_partial_kernel");
  sum_finish_kernel<<<1, kThreads, 0, stream()>>>(blocks, partial, factor, out);
  SPRIG_CUDA_LAUNCHED("sum_finish_kernel");
  device_free(partial, bytes);
}

void sum_rows(int64_t rows, int64_t cols, const float* x, float* out) {
  if (cols <= 0) return;
  sum_rows_kernel<<<blocks_for(cols), kThreads, 0, stream()>>>(rows, cols, x, out);
  SPRIG_CUDA_LAUNCHED("sum_rows_kernel");
}

bool all_finite(int64_t n, const float* x) {
  if (n <= 0) return true;
  int* bad = static_cast<int*>(device_alloc(sizeof(int)));  // (1)
  zero(bad, sizeof(int));
  all_finite_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, bad);
  SPRIG_CUDA_LAUNCHED("all_finite_kernel");
  int host_bad = 0;
  copy_to_host(&host_bad, bad, sizeof(int));
  device_free(bad, sizeof(int));
  return host_bad == 0;
}

int64_t count_nonzero(int64_t n, const float* x) {
  if (n <= 0) return 0;
  using Count = unsigned long long;
  Count* count = static_cast<Count*>(device_alloc(sizeof(Count)));  // (1)
  zero(count, sizeof(Count));
  count_nonzero_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, count);
  SPRIG_CUDA_LAUNCHED("count_nonzero_kernel");
  Count host_count = 0;
  copy_to_host(&host_count, count, sizeof(Count));
  device_free(count, sizeof(Count));
  return int64_t(host_count);
}

}  // namespace sprig::cuda
