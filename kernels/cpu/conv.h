#pragma once
// 2-D convolution (cross-correlation, as in PyTorch), NCHW, forward and backward.
#include <cstdint>

#include "kernels/shapes.h"

namespace sprig::cpu {

// How conv2d_forward computes: Auto picks by shape; the others force one (tests, benchmarks).
enum class ConvForward { Auto, Im2colGemm, Direct };

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C, R, S)) + b (K); b may be null. With relu, y is
// max(0, that). direct_w, when not null, is w already packed by conv2d_direct_pack, which the
// direct kernel then reads instead of packing w itself (every call); the other path ignores it.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                    bool relu = false, ConvForward how = ConvForward::Auto,
                    const float* direct_w = nullptr);

// wp (K*C*R*S floats) = w (K, C, R, S) in the direct kernel's order: for each block of output
// channels [k0, k0 + kb) of its register tiles, at wp + k0*C*R*S, (C, R*S, kb). The blocks
// depend on K and the instruction set only (the packed models pack once, at load).
void conv2d_direct_pack(const Conv2dShape& s, const float* w, float* wp);

// Whether ConvForward::Direct runs s: a kernel wider than 1x1 (a 1x1 is a plain product,
// left to gemm), in a CPU build with AVX-512 or AVX2 (conv_direct.cpp).
bool conv2d_direct_suits(const Conv2dShape& s);
// Whether ConvForward::Auto takes the direct kernel for s: where it suits, and with AVX2 only
// where it measured faster than im2col + gemm (conv_direct.cpp).
bool conv2d_direct_pays(const Conv2dShape& s);

namespace detail {
// Output rows [p0, p1) of one sample, yn (K, P, Q) from xn (C, H, W) and wp (conv2d_direct_pack),
// by the direct kernel; only where conv2d_direct_suits(s). Single-threaded.
void conv2d_direct_rows(const Conv2dShape& s, const float* xn, const float* wp, const float* b,
                        bool relu, float* yn, int64_t p0, int64_t p1);
}  // namespace detail

// Given dy (N, K, P, Q), writes (overwrites) any of dx (N, C, H, W), dw (K, C, R, S), db (K)
// that is not null. Deterministic for a fixed thread count.
void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db);

// Direct seven-loop references.
void conv2d_forward_ref(const Conv2dShape& s, const float* x, const float* w, const float* b,
                        float* y);
void conv2d_backward_ref(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                         float* dx, float* dw, float* db);

}  // namespace sprig::cpu
