// Element-wise kernels: one grid-stride loop each, same formulas as kernels/cpu/eltwise.cpp.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/eltwise.cuh"

namespace sprig::cuda {

using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

__global__ void add_kernel(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

__global__ void add_relu_kernel(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = a[i] + b[i];
    out[i] = v <= 0.0f ? 0.0f : v;
  }
}

__global__ void sub_kernel(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = a[i] - b[i];
}

__global__ void mul_kernel(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = a[i] * b[i];
}

__global__ void scale_kernel(int64_t n, const float* a, float s, float* out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = a[i] * s;
}

__global__ void fill_kernel(int64_t n, float value, float* out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = value;
}

// scalar: one float in device memory (a loss or a sum the GPU computed).
__global__ void fill_scaled_kernel(int64_t n, const float* scalar, float factor, float* out) {
  const float value = factor * scalar[0];
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = value;
}

// x > 0 is false for NaN, so NaN maps to 0 as on the CPU.
__global__ void relu_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
}

__global__ void relu_backward_kernel(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = x[i] <= 0.0f ? 0.0f : dy[i];
}

// y (rows, cols), b (cols)
__global__ void add_row_bias_kernel(int64_t rows, int64_t cols, const float* b, float* y) {
  const int64_t n = rows * cols;
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] += b[i % cols];
}

__global__ void mask_zero_kernel(int64_t n, const uint8_t* keep, float* x) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    if (keep[i] == 0) x[i] = 0.0f;
}

}  // namespace

void add(int64_t n, const float* a, const float* b, float* out) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, a, b, out);
  SPRIG_CUDA_LAUNCHED("add_kernel");
}

void add_relu(int64_t n, const float* a, const float* b, float* out) {
  if (n <= 0) return;
  add_relu_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, a, b, out);
  SPRIG_CUDA_LAUNCHED("add_relu_kernel");
}

void sub(int64_t n, const float* a, const float* b, float* out) {
  if (n <= 0) return;
  sub_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, a, b, out);
  SPRIG_CUDA_LAUNCHED("sub_kernel");
}

void mul(int64_t n, const float* a, const float* b, float* out) {
  if (n <= 0) return;
  mul_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, a, b, out);
  SPRIG_CUDA_LAUNCHED("mul_kernel");
}

void scale(int64_t n, const float* a, float s, float* out) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, a, s, out);
  SPRIG_CUDA_LAUNCHED("scale_kernel");
}

void fill(int64_t n, float value, float* out) {
  if (n <= 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, value, out);
  SPRIG_CUDA_LAUNCHED("fill_kernel");
}

void fill_scaled(int64_t n, const float* scalar, float factor, float* out) {
  if (n <= 0) return;
  fill_scaled_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, scalar, factor, out);
  SPRIG_CUDA_LAUNCHED("fill_scaled_kernel");
}

void relu_forward(int64_t n, const float* x, float* y) {
  if (n <= 0) return;
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, y);
  SPRIG_CUDA_LAUNCHED("relu_forward_kernel");
}

void relu_backward(int64_t n, const float* x, const float* dy, float* dx) {
  if (n <= 0) return;
  relu_backward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, dy, dx);
  SPRIG_CUDA_LAUNCHED("relu_backward_kernel");
}

void add_row_bias(int64_t rows, int64_t cols, const float* b, float* y) {
  if (rows <= 0 || cols <= 0) return;
  add_row_bias_kernel<<<blocks_for(rows * cols), kThreads, 0, stream()>>>(rows, cols, b, y);
  SPRIG_CUDA_LAUNCHED("add_row_bias_kernel");
}

void mask_zero(int64_t n, const uint8_t* keep, float* x) {
  if (n <= 0) return;
  mask_zero_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, keep, x);
  SPRIG_CUDA_LAUNCHED("mask_zero_kernel");
}

}  // namespace sprig::cuda
