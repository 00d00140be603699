#pragma once
// int8 convolution: uint8 activations (zero point x_zero) times int8 weights, exact int32 sums,
// as im2col in uint8 followed by gemm_u8s8 (gemm_int8.h) on weights packed once. Padding reads
// as x_zero, the uint8 of a real 0, so a padded border contributes nothing, as in the float
// convolution. Nothing here knows what a Tensor is.
#include <cstdint>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/quantize.h"

namespace sprig::cpu {

// acc (N, K, P, Q) int32 = conv(x - x_zero, w): x (N, C, H, W) uint8, w the weight (K, C, R, S)
// viewed as (K, C*R*S) and packed by pack_int8_weights. Runs on sprig's threads outside
// another kernel's item (kernels/cpu/threads.h).
void conv2d_u8s8(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const PackedInt8Weights& w,
                 int32_t* acc);

// Weights for the direct int8 convolution below: w (K, C, R, S) regrouped into 32-bit words of
// 4 taps along a kernel row, (c, r, s..s+3) with zeros past S, one word per output channel, so
// that one word broadcast against 16 output pixels' 4 input bytes is one vpdpbusd.
struct DirectConvInt8Weights {
  int64_t K = 0, C = 0, R = 0, S = 0;
  int64_t chunks = 0;             // ceil(S / 4) words per kernel row
  int64_t Kp = 0;                 // K rounded up to a multiple of 4 (zero words past K)
  std::vector<int32_t> words;     // (C, R, chunks, Kp)
  std::vector<int32_t> row_sums;  // (K) sum of each output channel's weights (zero point)
};
// w (K, C, R, S) int8.
DirectConvInt8Weights pack_conv_int8_direct(const int8_t* w, int64_t K, int64_t C, int64_t R,
                                            int64_t S);

// Whether conv2d_u8s8_direct runs this convolution and is the better kernel for it: the CPU has
// AVX-512 VNNI and VBMI (vpermb builds 16 pixels' sliding 4-byte windows from one 64-byte load,
// so no im2col is written), the windows fit one load (15 x stride + 3 x dilation < 64), and the
// kernel is wider than 1 (a 1 x 1 kernel fills a quarter of each word; im2col + gemm_u8s8 groups
// 4 input channels instead).
bool conv2d_u8s8_direct_suits(const Conv2dShape& s);

// acc (N, K, P, Q) int32 = conv(x - x_zero, w), exactly as conv2d_u8s8, with no im2col: each
// image is copied once into a zero-point-padded plane, 16 output pixels of a row are one vector
// and up to 16 output channels accumulate in registers. Only where conv2d_u8s8_direct_suits.
void conv2d_u8s8_direct(const Conv2dShape& s, const uint8_t* x, int32_t x_zero,
                        const DirectConvInt8Weights& w, int32_t* acc);
// The same convolution with dequantize_channels_bias_relu (quantize.h) fused into its stores:
// y (N, K, P, Q) = a_scale x w_scales[k] x acc + bias[k] (bias may be null), ReLU when relu.
void conv2d_u8s8_direct_dequantize(const Conv2dShape& s, const uint8_t* x, int32_t x_zero,
                                   const DirectConvInt8Weights& w, float a_scale,
                                   const float* w_scales, const float* bias, bool relu, float* y);

// The same again with the result quantised with `out` (the next int8 layer's input): y (N, K,
// P, Q) uint8 holds the codes quantize_activations gives the float result above, bit for bit,
// so int8 layers can hand each other bytes instead of floats.
void conv2d_u8s8_direct_requantize(const Conv2dShape& s, const uint8_t* x, int32_t x_zero,
                                   const DirectConvInt8Weights& w, float a_scale,
                                   const float* w_scales, const float* bias, bool relu,
                                   ActivationQuant out, uint8_t* y);

// The direct seven-loop convolution on the unpacked w (K, C, R, S) int8: the tests' reference.
void conv2d_u8s8_ref(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const int8_t* w,
                     int32_t* acc);

}  // namespace sprig::cpu
