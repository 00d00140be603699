#pragma once
// 2-D convolution, NCHW, forward and backward on the GPU (mirrors kernels/cpu/conv.h): im2col /
// col2im kernels of our own and the products through cuBLAS.
#include "kernels/shapes.h"

namespace sprig::cuda {

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C, R, S)) + b (K); b may be null.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y);
// Given dy (N, K, P, Q), overwrites any of dx, dw, db that is not null.
void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db);

}  // namespace sprig::cuda
