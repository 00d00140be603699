#pragma once
// 2-D max pooling, NCHW, on the GPU (mirrors kernels/cpu/pool.h, same argmax convention).
#include <cstdint>

#include "kernels/cpu/pool.h"

namespace sprig::cuda {

using cpu::Pool2dShape;

void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax);
void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx);

}  // namespace sprig::cuda
