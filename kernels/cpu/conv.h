#pragma once
// 2-D convolution (cross-correlation, as in PyTorch), NCHW, forward and backward.
#include <cstdint>

#include "kernels/shapes.h"

namespace sprig::cpu {

// How conv2d_forward computes: Auto picks by shape; the others force one (tests, benchmarks).
enum class ConvForward { Auto, Im2colGemm, Direct, Winograd };

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C, R, S)) + b (K); b may be null. With relu, y is
// max(0, that). packed_w, when not null, is w already packed by conv2d_forward_pack for the
// kernel that how resolves to (conv2d_forward_kernel), which then reads it instead of packing w
// itself on every call; im2col + gemm ignores it.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                    bool relu = false, ConvForward how = ConvForward::Auto,
                    const float* packed_w = nullptr);

// The kernel conv2d_forward runs s on under how: how itself, or for Auto the one that pays
// (never Auto). Throws sprig::Error when how forces a kernel that cannot run s.
ConvForward conv2d_forward_kernel(const Conv2dShape& s, ConvForward how = ConvForward::Auto);
// Floats of w packed for kernel: Direct K*C*R*S, Winograd 16*K*C, Im2colGemm 0 (it reads w).
int64_t conv2d_packed_size(const Conv2dShape& s, ConvForward kernel);
// wp (conv2d_packed_size floats) = w (K, C, R, S) as kernel reads it. It depends on the shape's
// K, C, R, S and the instruction set only (the packed models pack once, at load).
void conv2d_forward_pack(const Conv2dShape& s, ConvForward kernel, const float* w, float* wp);

// ---- the direct kernel (conv_direct.cpp) ---------------------------------------------------
// wp (K*C*R*S floats) = w (K, C, R, S) in the direct kernel's order: for each block of output
// channels [k0, k0 + kb) of its register tiles, at wp + k0*C*R*S, (C, R*S, kb).
void conv2d_direct_pack(const Conv2dShape& s, const float* w, float* wp);
// Whether ConvForward::Direct runs s: a kernel wider than 1x1 (a 1x1 is a plain product,
// left to gemm), in a CPU build with AVX-512 or AVX2 (conv_direct.cpp).
bool conv2d_direct_suits(const Conv2dShape& s);
// Whether ConvForward::Auto takes the direct kernel for s: where it suits, and with AVX2 only
// where it measured faster than im2col + gemm (conv_direct.cpp).
bool conv2d_direct_pays(const Conv2dShape& s);

// ---- Winograd F(2x2, 3x3) (conv_winograd.cpp) -------------------------------------------
// wt (16*K*C floats) = G g G^T of each 3x3 filter g, as (16, C, K).
void conv2d_winograd_pack(const Conv2dShape& s, const float* w, float* wt);
// Whether ConvForward::Winograd runs s: a 3x3 kernel at stride 1, dilation 1 (any padding), in
// a CPU build with AVX2.
bool conv2d_winograd_suits(const Conv2dShape& s);
// Whether ConvForward::Auto takes Winograd for s (measured against the direct kernel).
bool conv2d_winograd_pays(const Conv2dShape& s);

namespace detail {
// Output rows [p0, p1) of one sample, yn (K, P, Q) from xn (C, H, W) and wp (conv2d_direct_pack),
// by the direct kernel; only where conv2d_direct_suits(s). Single-threaded.
void conv2d_direct_rows(const Conv2dShape& s, const float* xn, const float* wp, const float* b,
                        bool relu, float* yn, int64_t p0, int64_t p1);
// The same by Winograd from wt (conv2d_winograd_pack), output channels [k0, k1) only; only
// where conv2d_winograd_suits(s).
void conv2d_winograd_rows(const Conv2dShape& s, const float* xn, const float* wt, const float* b,
                          bool relu, float* yn, int64_t p0, int64_t p1, int64_t k0, int64_t k1);
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
