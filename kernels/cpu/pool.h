#pragma once
// 2-D max pooling, NCHW. Padding positions count as -inf (never chosen), as in PyTorch.
#include <cstdint>

namespace sprig::cpu {

struct Pool2dShape {
  int64_t N, C, H, W;
  int64_t kernel, stride, pad = 0;
  int64_t P() const { return (H + 2 * pad - kernel) / stride + 1; }
  int64_t Q() const { return (W + 2 * pad - kernel) / stride + 1; }
};

// y (N, C, P, Q); argmax (N, C, P, Q) holds the flat index h * W + w of the chosen input
// within its (H, W) plane (first maximum wins on ties).
void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax);
// Overwrites dx (N, C, H, W) with dy routed to the argmax positions.
void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx);

void maxpool2d_forward_ref(const Pool2dShape& s, const float* x, float* y, int32_t* argmax);
void maxpool2d_backward_ref(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                            float* dx);

}  // namespace sprig::cpu
