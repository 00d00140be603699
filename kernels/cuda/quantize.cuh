#pragma once
// Quantisation-aware training on the GPU (mirrors the fake_quantize_* functions of
// kernels/cpu/quantize.h, with the same formulas, so both give the same floats). Pointers are
// in device memory; calls are queued on sprig's stream.
#include <cstdint>
#include <vector>

#include "kernels/shapes.h"

namespace sprig::cuda {

// y (n) = scale x (clamp(round(x / scale) + zero, 0, 255) - zero), halves to even.
void fake_quantize_activations(int64_t n, const float* x, float scale, int32_t zero, float* y);
// dx = dy where round(x / scale) + zero lies inside [0, 255], else 0.
void fake_quantize_activations_backward(int64_t n, const float* x, const float* dy, float scale,
                                        int32_t zero, float* dx);
// y (rows, cols) = s_r x clamp(round(w / s_r), -127, 127), s_r = max |w[r, :]| / 127 (1 for an
// all-zero row, NaN when the row holds a non-finite weight).
void fake_quantize_weights_per_channel(int64_t rows, int64_t cols, const float* w, float* y);

// int8 inference (mirrors kernels/cpu/quantize.h, gemm_int8.h and conv_int8.h): uint8
// activations with a zero point, int8 weights per output channel, exact int32 sums, and the
// float epilogue y = a_scale x w_scales[n] x sum + bias[n] (bias may be null), ReLU when relu.

// q (n) uint8 = clamp(round(x / scale) + zero, 0, 255), halves to even, NaN 0: the codes of
// cpu::quantize_activations, bit for bit.
void quantize_activations(int64_t n, const float* x, float scale, int32_t zero, uint8_t* q);

// y (M, N) = epilogue(sum_k (A[m, k] - a_zero) W[n, k]): A (M, K) uint8; W as words of 4 int8
// (N, ceil(K / 4)), zero past K (int8_weight_words builds them); row_sums (N) = sum_k W[n, k].
void linear_u8s8_dequantize(int64_t M, int64_t N, int64_t K, const uint8_t* A, int32_t a_zero,
                            const int32_t* w_words, const int32_t* row_sums, float a_scale,
                            const float* w_scales, const float* bias, bool relu, float* y);
// The words linear_u8s8_dequantize reads, on the host: W (N, K) int8 -> (N, ceil(K / 4)).
std::vector<int32_t> int8_weight_words(const int8_t* W, int64_t N, int64_t K);

// y (N, K, P, Q) = epilogue(conv(x - x_zero, w)): x (N, C, H, W) uint8 (padding reads as
// x_zero, so it adds nothing), w (K, C, R, S) int8.
void conv2d_u8s8_dequantize(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const int8_t* w,
                            float a_scale, const float* w_scales, const float* bias, bool relu,
                            float* y);

}  // namespace sprig::cuda
