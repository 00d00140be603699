// Softmax cross-entropy and MSE on the GPU, as kernels/cpu/loss.cpp: the softmax is shifted by
// the row maximum, log-sum-exp and the means are accumulated in double. Each softmax row is
// one warp; sums use a fixed tree (warp shuffles, then a block tree), so results are
// deterministic. The loss and dloss scalars stay in device memory.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/loss.cuh"
#include "kernels/cuda/runtime.cuh"

namespace sprig::cuda {

using detail::block_sum;
using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr unsigned kMaxPartials = 1024;

// Blocks giving one warp per row, capped (the kernels loop over rows per warp).
unsigned blocks_for_rows(int64_t rows) {
  return blocks_for(rows * kWarp);
}

// Warp-wide reductions with a fixed butterfly: every lane gets the same result.
__device__ inline float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ inline double warp_sum(double v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// log(sum(exp(row - max))) + max for row (C), computed by a whole warp. As on the CPU the
// shift is in float and the exponentials and their sum in double. A NaN anywhere makes the
// sum NaN (fmaxf skips it for the max, exp does not).
__device__ double row_logsumexp(int64_t C, const float* row, int lane) {
  float mx = -INFINITY;
  for (int64_t c = lane; c < C; c += kWarp) mx = fmaxf(mx, row[c]);
  mx = warp_max(mx);
  double s = 0.0;
  for (int64_t c = lane; c < C; c += kWarp) s += exp(double(row[c] - mx));
  s = warp_sum(s);
  return log(s) + double(mx);
}

// One block: loss[0] = float(sum(terms (count)) / divisor)
__global__ void mean_finish_kernel(int64_t count, const double* terms, double divisor,
                                   float* loss) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += terms[i];
  double total = block_sum(s, shared);
  if (threadIdx.x == 0) loss[0] = float(total / divisor);
}

// row_loss (N) = logsumexp(row) - row[label]; an out-of-range label gives NaN instead of
// reading outside the row. logits (N, C), labels (N)
__global__ void softmax_ce_rows_kernel(int64_t N, int64_t C, const float* logits,
                                       const int32_t* labels, double* row_loss) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = grid_stride() / kWarp;
  for (int64_t i = first_index() / kWarp; i < N; i += warps) {
    const float* row = logits + i * C;  // (C)
    double lse = row_logsumexp(C, row, lane);
    if (lane == 0) {
      const int32_t y = labels[i];
      row_loss[i] = (y >= 0 && y < C) ? lse - double(row[y]) : double(NAN);
    }
  }
}

// dlogits (N, C) = dloss / N * (softmax - onehot), with the CPU's float formula:
// g * exp(row - lse), then g subtracted at the label.
__global__ void softmax_ce_backward_kernel(int64_t N, int64_t C, const float* logits,
                                           const int32_t* labels, const float* dloss,
                                           float* dlogits) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = grid_stride() / kWarp;
  const float g = dloss[0] / float(N);
  for (int64_t i = first_index() / kWarp; i < N; i += warps) {
    const float* row = logits + i * C;  // (C)
    float* drow = dlogits + i * C;      // (C)
    const float lse = float(row_logsumexp(C, row, lane));
    const int32_t y = labels[i];
    for (int64_t c = lane; c < C; c += kWarp) {
      // __fmul_rn: no fused multiply-subtract at the label, which the CPU does not do either.
      float d = __fmul_rn(g, expf(row[c] - lse));
      if (c == y) d -= g;
      drow[c] = d;
    }
  }
}

// partial (gridDim.x) = per-block sums of (pred - target)^2 in double. pred, target (n)
__global__ void mse_partial_kernel(int64_t n, const float* pred, const float* target,
                                   double* partial) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    double d = double(pred[i]) - double(target[i]);
    s += d * d;
  }
  double total = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// dpred (n) = 2 * dloss / n * (pred - target)
__global__ void mse_backward_kernel(int64_t n, const float* pred, const float* target,
                                    const float* dloss, float* dpred) {
  const float g = 2.0f * dloss[0] / float(n);
  for (int64_t i = first_index(); i < n; i += grid_stride()) dpred[i] = g * (pred[i] - target[i]);
}

// *bad = 1 when some label (N) is outside [0, C)
__global__ void labels_check_kernel(int64_t N, const int32_t* labels, int64_t C, int* bad) {
  for (int64_t i = first_index(); i < N; i += grid_stride())
    if (labels[i] < 0 || labels[i] >= C) atomicOr(bad, 1);
}

}  // namespace

bool labels_in_range(int64_t N, const int32_t* labels, int64_t C) {
  if (N <= 0) return true;
  int* bad = static_cast<int*>(device_alloc(sizeof(int)));  // (1)
  zero(bad, sizeof(int));
  labels_check_kernel<<<blocks_for(N), kThreads, 0, stream()>>>(N, labels, C, bad);
  SPRIG_CUDA_LAUNCHED("labels_check_kernel");
  int host_bad = 0;
  copy_to_host(&host_bad, bad, sizeof(int));
  device_free(bad, sizeof(int));
  return host_bad == 0;
}

void softmax_cross_entropy_forward(int64_t N, int64_t C, const float* logits, const int32_t* labels,
                                   float* loss) {
  // N == 0 gives 0 / 0 = NaN, as on the CPU.
  const size_t bytes = std::max<int64_t>(N, 1) * sizeof(double);
  double* row_loss = static_cast<double*>(device_alloc(bytes));  // (N)
  if (N > 0) {
    softmax_ce_rows_kernel<<<blocks_for_rows(N), kThreads, 0, stream()>>>(N, C, logits, labels,
                                                                          row_loss);
    SPRIG_CUDA_LAUNCHED("softmax_ce_rows_kernel");
  }
  mean_finish_kernel<<<1, kThreads, 0, stream()>>>(N, row_loss, double(N), loss);
  SPRIG_CUDA_LAUNCHED("mean_finish_kernel");
  device_free(row_loss, bytes);
}

void softmax_cross_entropy_backward(int64_t N, int64_t C, const float* logits,
                                    const int32_t* labels, const float* dloss, float* dlogits) {
  if (N <= 0 || C <= 0) return;
  softmax_ce_backward_kernel<<<blocks_for_rows(N), kThreads, 0, stream()>>>(N, C, logits, labels,
                                                                            dloss, dlogits);
  SPRIG_CUDA_LAUNCHED("softmax_ce_backward_kernel");
}

void mse_forward(int64_t n, const float* pred, const float* target, float* loss) {
  const unsigned blocks = std::min(blocks_for(n), kMaxPartials);
  const size_t bytes = blocks * sizeof(double);
  double* partial = static_cast<double*>(device_alloc(bytes));  // (blocks)
  mse_partial_kernel<<<blocks, kThreads, 0, stream()>>>(n, pred, target, partial);
  SPRIG_CUDA_LAUNCHED("mse_partial_kernel");
  mean_finish_kernel<<<1, kThreads, 0, stream()>>>(blocks, partial, double(n), loss);
  SPRIG_CUDA_LAUNCHED("mean_finish_kernel");
  device_free(partial, bytes);
}

void mse_backward(int64_t n, const float* pred, const float* target, const float* dloss,
                  float* dpred) {
  if (n <= 0) return;
  mse_backward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, pred, target, dloss, dpred);
  SPRIG_CUDA_LAUNCHED("mse_backward_kernel");
}

}  // namespace sprig::cuda
