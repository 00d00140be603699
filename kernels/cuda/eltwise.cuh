#pragma once
// Element-wise kernels on n contiguous floats in device memory (mirrors kernels/cpu/eltwise.h).
// out may alias an input. All calls are queued on sprig's stream.
#include <cstdint>

namespace sprig::cuda {

void add(int64_t n, const float* a, const float* b, float* out);
// out = max(a + b, 0) in one pass (a residual block's join), NaN passing through as relu_forward
void add_relu(int64_t n, const float* a, const float* b, float* out);
void sub(int64_t n, const float* a, const float* b, float* out);
void mul(int64_t n, const float* a, const float* b, float* out);
void scale(int64_t n, const float* a, float s, float* out);
void fill(int64_t n, float value, float* out);
// out[i] = factor * scalar[0]; scalar is one float in device memory.
void fill_scaled(int64_t n, const float* scalar, float factor, float* out);
// y = max(x, 0), NaN passing through as on the CPU (and in PyTorch)
void relu_forward(int64_t n, const float* x, float* y);
// dx = dy where x > 0, else 0
void relu_backward(int64_t n, const float* x, const float* dy, float* dx);
// y (rows, cols) += b (cols) broadcast over rows
void add_row_bias(int64_t rows, int64_t cols, const float* b, float* y);
// x[i] = 0 where keep[i] == 0
void mask_zero(int64_t n, const uint8_t* keep, float* x);

}  // namespace sprig::cuda
