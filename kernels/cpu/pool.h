#pragma once
// 2-D pooling, NCHW: max pooling (padding counts as -inf, never chosen, as in PyTorch),
// average pooling, global average pooling, and the option-A residual shortcut (a strided
// subsample with zero channels around it), which picks inputs the way a 1x1 pool does.
#include <cstdint>

#include "kernels/shapes.h"

namespace sprig::cpu {

// y (N, C, P, Q); argmax (N, C, P, Q) holds the flat index h * W + w of the chosen input
// within its (H, W) plane (first maximum wins on ties). argmax may be null (no backward).
void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax);
// Overwrites dx (N, C, H, W) with dy routed to the argmax positions.
void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx);

// Average pooling with PyTorch's defaults (count_include_pad = true, ceil_mode = false): each
// output is the sum of its window's in-image values divided by kernel * kernel.
// y (N, C, P, Q) from x (N, C, H, W); backward overwrites dx (N, C, H, W).
void avgpool2d_forward(const Pool2dShape& s, const float* x, float* y);
void avgpool2d_backward(const Pool2dShape& s, const float* dy, float* dx);

// Global average pooling: y[p] = mean of x[p, 0..hw) for each of the `planes` = N * C planes.
// x (planes, hw) -> y (planes); backward overwrites dx (planes, hw) with dy[p] / hw.
void global_avgpool_forward(int64_t planes, int64_t hw, const float* x, float* y);
void global_avgpool_backward(int64_t planes, int64_t hw, const float* dy, float* dx);

// The option-A shortcut of He et al.'s CIFAR ResNets (pytorch_resnet_cifar10's LambdaLayer:
// F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, pad_lo, K - C - pad_lo))):
// y[n, pad_lo + c, p, q] = x[n, c, p * stride, q * stride], other channels of y are 0.
// y (N, K, P, Q)
void shortcut_forward(const ShortcutShape& s, const float* x, float* y);
// Overwrites dx (N, C, H, W): dy at the picked positions, 0 elsewhere.
void shortcut_backward(const ShortcutShape& s, const float* dy, float* dx);

void maxpool2d_forward_ref(const Pool2dShape& s, const float* x, float* y, int32_t* argmax);
void maxpool2d_backward_ref(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                            float* dx);
void avgpool2d_forward_ref(const Pool2dShape& s, const float* x, float* y);
void avgpool2d_backward_ref(const Pool2dShape& s, const float* dy, float* dx);
void global_avgpool_forward_ref(int64_t planes, int64_t hw, const float* x, float* y);
void global_avgpool_backward_ref(int64_t planes, int64_t hw, const float* dy, float* dx);
void shortcut_forward_ref(const ShortcutShape& s, const float* x, float* y);
void shortcut_backward_ref(const ShortcutShape& s, const float* dy, float* dx);

}  // namespace sprig::cpu
