// Fake quantisation for quantisation-aware training: the formulas of kernels/cpu/quantize.cpp.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/quantize.cuh"

namespace sprig::cuda {

using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

__global__ void fake_quantize_kernel(int64_t n, const float* x, float scale, float zero, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = rintf(x[i] / scale) + zero;  // IEEE division and round-half-even, as the CPU
    const float above = 0.0f < v ? v : 0.0f;     // NaN: 0
    const float q = above < 255.0f ? above : 255.0f;
    y[i] = scale * (q - zero);
  }
}

__global__ void fake_quantize_backward_kernel(int64_t n, const float* x, const float* dy,
                                              float scale, float zero, float* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = rintf(x[i] / scale) + zero;
    dx[i] = v >= 0.0f && v <= 255.0f ? dy[i] : 0.0f;
  }
}

// One block per row: the row's largest |w| (and whether all are finite), then its codes.
__global__ void fake_quantize_channels_kernel(int64_t cols, const float* w, float* y) {
  __shared__ float amax[kThreads];
  __shared__ int bad[kThreads];
  const float* row = w + int64_t(blockIdx.x) * cols;
  float m = 0.0f;
  int nonfinite = 0;
  for (int64_t k = threadIdx.x; k < cols; k += blockDim.x) {
    m = fmaxf(m, fabsf(row[k]));
    nonfinite |= !isfinite(row[k]);
  }
  amax[threadIdx.x] = m;
  bad[threadIdx.x] = nonfinite;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      amax[threadIdx.x] = fmaxf(amax[threadIdx.x], amax[threadIdx.x + s]);
      bad[threadIdx.x] |= bad[threadIdx.x + s];
    }
    __syncthreads();
  }
  const float scale = bad[0] ? NAN : amax[0] > 0.0f ? amax[0] / 127.0f : 1.0f;
  float* out = y + int64_t(blockIdx.x) * cols;
  for (int64_t k = threadIdx.x; k < cols; k += blockDim.x)
    out[k] = scale * fminf(fmaxf(rintf(row[k] / scale), -127.0f), 127.0f);
}

}  // namespace

void fake_quantize_activations(int64_t n, const float* x, float scale, int32_t zero, float* y) {
  if (n <= 0) return;
  fake_quantize_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, scale, float(zero), y);
  SPRIG_CUDA_LAUNCHED("fake_quantize_kernel");
}

void fake_quantize_activations_backward(int64_t n, const float* x, const float* dy, float scale,
                                        int32_t zero, float* dx) {
  if (n <= 0) return;
  fake_quantize_backward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, dy, scale,
                                                                          float(zero), dx);
  SPRIG_CUDA_LAUNCHED("fake_quantize_backward_kernel");
}

void fake_quantize_weights_per_channel(int64_t rows, int64_t cols, const float* w, float* y) {
  if (rows <= 0 || cols <= 0) return;
  fake_quantize_channels_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(cols, w, y);
  SPRIG_CUDA_LAUNCHED("fake_quantize_channels_kernel");
}

}  // namespace sprig::cuda
