#pragma once
// int8 quantisation around gemm_u8s8 (gemm_int8.h): weights symmetric per output channel,
// activations asymmetric per tensor, and the epilogue that turns int32 sums back into floats
// with bias and ReLU fused. A real value v is stored as q with v ~ scale x (q - zero).
#include <cstdint>

namespace sprig::cpu {

// W (N, K) float -> Q (N, K) int8 with scales (N): scale[n] = max |W[n, :]| / 127 (1 for an
// all-zero row), q = round(w / scale[n]) in [-127, 127]. A zero weight stays exactly zero, so a
// pruned weight is never brought back by rounding. Throws sprig::Error on a non-finite weight.
void quantize_weights_per_channel(const float* W, int64_t N, int64_t K, int8_t* Q, float* scales);

// Activation parameters covering [lo, hi] (widened to include 0, so that zero, the value ReLU
// and padding produce most, is exact): scale = (hi - lo) / 255, zero = round(-lo / scale).
struct ActivationQuant {
  float scale = 1.0f;
  int32_t zero = 0;
};
ActivationQuant activation_quant_from_range(float lo, float hi);
// x (n) float -> q (n) uint8: clamp(round(x / scale) + zero, 0, 255) with halves rounded to
// even, ONNX QuantizeLinear's definition; NaN becomes 0.
void quantize_activations(const float* x, int64_t n, ActivationQuant a, uint8_t* q);
// The same with a plain division per value: the definition the fast path is tested against.
void quantize_activations_ref(const float* x, int64_t n, ActivationQuant a, uint8_t* q);

// y (M, N) = a_scale x w_scales[n] x acc[m, n] + bias[n] (bias may be null), then max(y, 0)
// when relu: the float result of a quantised Linear whose sums gemm_u8s8 left in acc.
void dequantize_bias_relu(int64_t M, int64_t N, const int32_t* acc, int64_t ldacc, float a_scale,
                          const float* w_scales, const float* bias, bool relu, float* y,
                          int64_t ldy);
// y (N, K, HW) = a_scale x w_scales[k] x acc[n, k, :] + bias[k] (bias may be null), then ReLU
// when relu: the same epilogue for a quantised convolution, whose channels are rows.
void dequantize_channels_bias_relu(int64_t N, int64_t K, int64_t HW, const int32_t* acc,
                                   float a_scale, const float* w_scales, const float* bias,
                                   bool relu, float* y);

// Quantisation-aware training: the float value each quantiser above stands for, so a float
// model computes what its int8 twin will (the same codes, the same rounding).
// y (n) = a.scale x (q - a.zero) with q as quantize_activations gives it.
void fake_quantize_activations(const float* x, int64_t n, ActivationQuant a, float* y);
// The straight-through estimator: dx = dy where round(x / scale) + zero lies inside [0, 255],
// 0 where the quantiser clamps (and for NaN), as PyTorch's FakeQuantize.
void fake_quantize_activations_backward(const float* x, const float* dy, int64_t n,
                                        ActivationQuant a, float* dx);
// Y (N, K) = scale[n] x q[n, k] with scale and q as quantize_weights_per_channel gives them
// (a non-finite weight propagates instead of throwing: training reports the NaN loss). Y may
// be W.
void fake_quantize_weights_per_channel(const float* W, int64_t N, int64_t K, float* Y);

}  // namespace sprig::cpu
