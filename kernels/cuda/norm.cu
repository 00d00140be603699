// Batch normalisation, NCHW, on the GPU, with kernels/cpu/norm.cpp's formulas. One block per
// channel takes its statistics (two passes: mean, then squared deviations) and its gradient sums
// in double, each thread over a fixed stride and the block by detail::block_sum's fixed tree, so
// results do not change from run to run; no atomics. The block also turns them into per-channel
// float coefficients, and an element-wise kernel over the whole tensor applies them.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/runtime.cuh"

namespace sprig::cuda {

using detail::block_sum;
using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

// Flat index of the j-th value (j < N * HW) of channel c in (N, C, HW).
__device__ inline int64_t at(const BatchNormShape& s, int64_t c, int64_t j) {
  return ((j / s.HW) * s.C + c) * s.HW + j % s.HW;
}

// Blocks for per-channel kernels; they loop over channels beyond the grid.
unsigned channel_blocks(int64_t C) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(C, 65535)));
}

// Writes save_mean / save_invstd (C), scale (C) = gamma * invstd, and updates the running
// statistics as PyTorch does (unbiased variance; n == 1 keeps the zero biased one).
__global__ void batchnorm_stats_kernel(BatchNormShape s, const float* x, const float* gamma,
                                       float eps, float momentum, float* running_mean,
                                       float* running_var, float* save_mean, float* save_invstd,
                                       float* scale) {
  __shared__ double shared[kThreads];
  const int64_t n = s.N * s.HW;
  for (int64_t c = blockIdx.x; c < s.C; c += gridDim.x) {
    if (n == 0) {  // an empty batch: no statistics, running ones untouched (as on the CPU)
      if (threadIdx.x == 0) {
        save_mean[c] = 0.0f;
        save_invstd[c] = float(1.0 / sqrt(double(eps)));
        scale[c] = 0.0f;
      }
      continue;
    }
    double acc = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += double(x[at(s, c, j)]);
    const double mean = block_sum(acc, shared) / double(n);
    acc = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const double d = double(x[at(s, c, j)]) - mean;
      acc += d * d;
    }
    const double var = block_sum(acc, shared) / double(n);
    if (threadIdx.x == 0) {
      const double invstd = 1.0 / sqrt(var + double(eps));
      save_mean[c] = float(mean);
      save_invstd[c] = float(invstd);
      scale[c] = float((gamma ? double(gamma[c]) : 1.0) * invstd);
      const double m = double(momentum);
      const double unbiased = n > 1 ? var * double(n) / double(n - 1) : var;
      if (running_mean) running_mean[c] = float((1.0 - m) * double(running_mean[c]) + m * mean);
      if (running_var) running_var[c] = float((1.0 - m) * double(running_var[c]) + m * unbiased);
    }
  }
}

// Evaluation mode: the running statistics stand in for the batch's. All (C).
__global__ void batchnorm_eval_stats_kernel(int64_t C, const float* gamma,
                                            const float* running_mean, const float* running_var,
                                            float eps, float* save_mean, float* save_invstd,
                                            float* scale) {
  for (int64_t c = first_index(); c < C; c += grid_stride()) {
    const double invstd = 1.0 / sqrt(double(running_var[c]) + double(eps));
    save_mean[c] = running_mean[c];
    save_invstd[c] = float(invstd);
    scale[c] = float((gamma ? double(gamma[c]) : 1.0) * invstd);
  }
}

// y = (x - mean) * scale + beta. x, y (N, C, HW); mean, scale, beta (C)
__global__ void batchnorm_apply_kernel(BatchNormShape s, const float* x, const float* mean,
                                       const float* scale, const float* beta, float* y) {
  const int64_t total = s.N * s.C * s.HW;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t c = (i / s.HW) % s.C;
    y[i] = (x[i] - mean[c]) * scale[c] + (beta ? beta[c] : 0.0f);
  }
}

// Per channel: dgamma = sum(dy * xhat), dbeta = sum(dy) (either may be null), and when coef is
// not null the dx coefficients coef (C, 3) = (a, b, d) of dx = a * dy + b * (x - mean) + d.
__global__ void batchnorm_backward_channel_kernel(BatchNormShape s, bool batch_stats,
                                                  bool need_sums, const float* x,
                                                  const float* gamma, const float* save_mean,
                                                  const float* save_invstd, const float* dy,
                                                  float* dgamma, float* dbeta, float* coef) {
  __shared__ double shared[kThreads];
  const int64_t n = s.N * s.HW;
  for (int64_t c = blockIdx.x; c < s.C; c += gridDim.x) {
    const double mean = double(save_mean[c]), invstd = double(save_invstd[c]);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    if (need_sums) {
      double a = 0.0, b = 0.0;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const int64_t i = at(s, c, j);
        a += double(dy[i]);
        b += double(dy[i]) * (double(x[i]) - mean);
      }
      sum_dy = block_sum(a, shared);
      sum_dy_xhat = block_sum(b, shared) * invstd;
    }
    if (threadIdx.x == 0) {
      if (dgamma) dgamma[c] = float(sum_dy_xhat);
      if (dbeta) dbeta[c] = float(sum_dy);
      if (coef) {
        const double ad = (gamma ? double(gamma[c]) : 1.0) * invstd;
        float b = 0.0f, d = 0.0f;
        if (batch_stats && n > 0) {
          b = float(-ad * invstd * sum_dy_xhat / double(n));
          d = float(-ad * sum_dy / double(n));
        }
        coef[3 * c] = float(ad);
        coef[3 * c + 1] = b;
        coef[3 * c + 2] = d;
      }
    }
  }
}

// x, dy, dx (N, C, HW); mean (C); coef (C, 3)
__global__ void batchnorm_dx_kernel(BatchNormShape s, const float* x, const float* mean,
                                    const float* coef, const float* dy, float* dx) {
  const int64_t total = s.N * s.C * s.HW;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t c = (i / s.HW) % s.C;
    dx[i] = coef[3 * c] * dy[i] + coef[3 * c + 1] * (x[i] - mean[c]) + coef[3 * c + 2];
  }
}

void apply(const BatchNormShape& s, const float* x, const float* mean, const float* scale,
           const float* beta, float* y) {
  const int64_t total = s.N * s.C * s.HW;
  if (total <= 0) return;
  batchnorm_apply_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, x, mean, scale, beta, y);
  SPRIG_CUDA_LAUNCHED("batchnorm_apply_kernel");
}

}  // namespace

void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float eps, float momentum, float* running_mean,
                             float* running_var, float* y, float* save_mean, float* save_invstd) {
  if (s.C <= 0) return;
  const size_t bytes = size_t(s.C) * sizeof(float);
  float* scale = static_cast<float*>(device_alloc(bytes));  // (C)
  batchnorm_stats_kernel<<<channel_blocks(s.C), kThreads, 0, stream()>>>(
      s, x, gamma, eps, momentum, running_mean, running_var, save_mean, save_invstd, scale);
  SPRIG_CUDA_LAUNCHED("batchnorm_stats_kernel");
  apply(s, x, save_mean, scale, beta, y);
  device_free(scale, bytes);
}

void batchnorm_forward_eval(const BatchNormShape& s, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var,
                            float eps, float* y, float* save_mean, float* save_invstd) {
  if (s.C <= 0) return;
  const size_t bytes = size_t(s.C) * sizeof(float);
  float* scale = static_cast<float*>(device_alloc(bytes));  // (C)
  batchnorm_eval_stats_kernel<<<blocks_for(s.C), kThreads, 0, stream()>>>(
      s.C, gamma, running_mean, running_var, eps, save_mean, save_invstd, scale);
  SPRIG_CUDA_LAUNCHED("batchnorm_eval_stats_kernel");
  apply(s, x, save_mean, scale, beta, y);
  device_free(scale, bytes);
}

void batchnorm_backward(const BatchNormShape& s, bool batch_stats, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd,
                        const float* dy, float* dx, float* dgamma, float* dbeta) {
  if (s.C <= 0 || (!dx && !dgamma && !dbeta)) return;
  const bool need_sums = dgamma || dbeta || (dx && batch_stats);
  const size_t bytes = dx ? size_t(s.C) * 3 * sizeof(float) : 0;
  float* coef = dx ? static_cast<float*>(device_alloc(bytes)) : nullptr;  // (C, 3)
  batchnorm_backward_channel_kernel<<<channel_blocks(s.C), kThreads, 0, stream()>>>(
      s, batch_stats, need_sums, x, gamma, save_mean, save_invstd, dy, dgamma, dbeta, coef);
  SPRIG_CUDA_LAUNCHED("batchnorm_backward_channel_kernel");
  if (dx) {
    const int64_t total = s.N * s.C * s.HW;
    if (total > 0) {
      batchnorm_dx_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, x, save_mean, coef, dy,
                                                                        dx);
      SPRIG_CUDA_LAUNCHED("batchnorm_dx_kernel");
    }
    device_free(coef, bytes);
  }
}

}  // namespace sprig::cuda
