#pragma once
// Element-wise kernels on n contiguous floats. out may alias an input.
#include <cstdint>

namespace sprig::cpu {

void add(int64_t n, const float* a, const float* b, float* out);
void sub(int64_t n, const float* a, const float* b, float* out);
void mul(int64_t n, const float* a, const float* b, float* out);
void scale(int64_t n, const float* a, float s, float* out);
void axpy(int64_t n, float alpha, const float* x, float* y);  // y += alpha * x
void fill(int64_t n, float value, float* out);
// y = max(x, 0)
void relu_forward(int64_t n, const float* x, float* y);
// out = max(a + b, 0) in one pass: a residual block's join (NaN passes through, as relu)
void add_relu(int64_t n, const float* a, const float* b, float* out);
// dx = dy where x > 0, else 0 (the subgradient at 0 is 0, as in PyTorch)
void relu_backward(int64_t n, const float* x, const float* dy, float* dx);
// y (rows, cols) += b (cols) broadcast over rows
void add_row_bias(int64_t rows, int64_t cols, const float* b, float* y);

// Scalar references for the tests.
void relu_forward_ref(int64_t n, const float* x, float* y);
void relu_backward_ref(int64_t n, const float* x, const float* dy, float* dx);

}  // namespace sprig::cpu
