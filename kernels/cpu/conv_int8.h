#pragma once
// int8 convolution: uint8 activations (zero point x_zero) times int8 weights, exact int32 sums,
// as im2col in uint8 followed by gemm_u8s8 (gemm_int8.h) on weights packed once. Padding reads
// as x_zero, the uint8 of a real 0, so a padded border contributes nothing, as in the float
// convolution. Nothing here knows what a Tensor is.
#include <cstdint>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/gemm_int8.h"

namespace sprig::cpu {

// acc (N, K, P, Q) int32 = conv(x - x_zero, w): x (N, C, H, W) uint8, w the weight (K, C, R, S)
// viewed as (K, C*R*S) and packed by pack_int8_weights. Runs on the OpenMP team outside a
// parallel region.
void conv2d_u8s8(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const PackedInt8Weights& w,
                 int32_t* acc);

// The direct seven-loop convolution on the unpacked w (K, C, R, S) int8: the tests' reference.
void conv2d_u8s8_ref(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const int8_t* w,
                     int32_t* acc);

}  // namespace sprig::cpu
