#pragma once
// 2-D pooling and the option-A shortcut, NCHW, on the GPU (mirrors kernels/cpu/pool.h: same
// argmax convention, same summation order, so average pooling matches the CPU bit for bit).
#include <cstdint>

#include "kernels/shapes.h"

namespace sprig::cuda {

// argmax may be null (no backward).
void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax);
void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx);
void avgpool2d_forward(const Pool2dShape& s, const float* x, float* y);
void avgpool2d_backward(const Pool2dShape& s, const float* dy, float* dx);
void global_avgpool_forward(int64_t planes, int64_t hw, const float* x, float* y);
void global_avgpool_backward(int64_t planes, int64_t hw, const float* dy, float* dx);
void shortcut_forward(const ShortcutShape& s, const float* x, float* y);
void shortcut_backward(const ShortcutShape& s, const float* dy, float* dx);

}  // namespace sprig::cuda
