#pragma once
// Quantisation-aware training on the GPU (mirrors the fake_quantize_* functions of
// kernels/cpu/quantize.h, with the same formulas, so both give the same floats). Pointers are
// in device memory; calls are queued on sprig's stream.
#include <cstdint>

namespace sprig::cuda {

// y (n) = scale x (clamp(round(x / scale) + zero, 0, 255) - zero), halves to even.
void fake_quantize_activations(int64_t n, const float* x, float scale, int32_t zero, float* y);
// dx = dy where round(x / scale) + zero lies inside [0, 255], else 0.
void fake_quantize_activations_backward(int64_t n, const float* x, const float* dy, float scale,
                                        int32_t zero, float* dx);
// y (rows, cols) = s_r x clamp(round(w / s_r), -127, 127), s_r = max |w[r, :]| / 127 (1 for an
// all-zero row, NaN when the row holds a non-finite weight).
void fake_quantize_weights_per_channel(int64_t rows, int64_t cols, const float* w, float* y);

}  // namespace sprig::cuda
