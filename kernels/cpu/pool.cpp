// 2-D pooling and the option-A shortcut, NCHW. Planes (n, c) are independent, so both
// directions parallelise over them with no write conflicts, and every sum is done in a fixed
// order: the fast kernels add in the same order as the references, so they agree bit for bit.
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/parallel.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace sprig::cpu {
namespace {

// One (H, W) plane. The window is clipped to the image first, so padding is never read and
// never chosen. As in PyTorch, the index starts at the first in-image element and a NaN
// wins (so NaN propagates), otherwise only a strictly larger value replaces the best.
void maxpool_plane(const Pool2dShape& s, const float* x, float* y, int32_t* am) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t p = 0; p < P; p++) {
    int64_t h0 = p * s.stride - s.pad, h1 = std::min(h0 + s.kernel, s.H);
    h0 = std::max<int64_t>(h0, 0);
    for (int64_t q = 0; q < Q; q++) {
      int64_t w0 = q * s.stride - s.pad, w1 = std::min(w0 + s.kernel, s.W);
      w0 = std::max<int64_t>(w0, 0);
      float best = -std::numeric_limits<float>::infinity();
      // A window entirely in the padding (pad > kernel / 2, which PyTorch rejects) keeps -1.
      int32_t idx = h0 < h1 && w0 < w1 ? (int32_t)(h0 * s.W + w0) : -1;
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) {
          float v = x[h * s.W + w];
          if (v > best || std::isnan(v)) {
            best = v;
            idx = (int32_t)(h * s.W + w);
          }
        }
      y[p * Q + q] = best;
      if (am) am[p * Q + q] = idx;
    }
  }
}

// maxpool_plane for kernel 2, stride 2, no padding (LeNet's and most CNNs' pooling), the same
// choices in the same order (first element, then each later one that is larger or NaN), as
// selects along q: the generic loop above is scalar and made lenet5's pooling cost more than
// its convolutions. am may be null (inference: no index is kept).
#if defined(__AVX512F__)
// With AVX-512, 16 outputs at a time: each window row's 32 inputs are split into its even and
// odd columns by two permutes, and the three compares and blends run on whole vectors (the
// compiler left the scalar loop's stride-2 loads unvectorized: a quarter of lenet5's forward).
void maxpool_plane_2x2(const Pool2dShape& s, const float* x, float* y, int32_t* am) {
  const int64_t P = s.P(), Q = s.Q(), W = s.W;
  alignas(64) static const int32_t kEven[16] = {0,  2,  4,  6,  8,  10, 12, 14,
                                                16, 18, 20, 22, 24, 26, 28, 30};
  const __m512i even = _mm512_load_si512(kEven);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t p = 0; p < P; p++) {
    const float* r0 = x + 2 * p * W;  // the window's two rows
    const float* r1 = r0 + W;
    for (int64_t q0 = 0; q0 < Q; q0 += 16) {
      const int64_t n = std::min<int64_t>(16, Q - q0);  // outputs in this vector
      const __mmask16 out = __mmask16((1u << n) - 1u);
      // Inputs 2 q0 .. 2 q0 + 2n - 1 of each row, in two masked loads (never past the row's
      // last input that a window reads).
      const __mmask16 lo = __mmask16((1u << std::min<int64_t>(16, 2 * n)) - 1u);
      const __mmask16 hi = __mmask16((1u << std::max<int64_t>(0, 2 * n - 16)) - 1u);
      const __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * q0);
      const __m512 a1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * q0 + 16);
      const __m512 b0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * q0);
      const __m512 b1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * q0 + 16);
      const __m512 v0 = _mm512_permutex2var_ps(a0, even, a1);  // (2p, 2q)
      const __m512 v1 = _mm512_permutex2var_ps(a0, odd, a1);   // (2p, 2q + 1)
      const __m512 v2 = _mm512_permutex2var_ps(b0, even, b1);  // (2p + 1, 2q)
      const __m512 v3 = _mm512_permutex2var_ps(b0, odd, b1);   // (2p + 1, 2q + 1)
      // Taken: larger than the best so far, or NaN.
      auto takes = [](__m512 v, __m512 best) {
        return __mmask16(_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                         _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
      };
      __m512 best = v0;
      const __mmask16 t1 = takes(v1, best);
      best = _mm512_mask_blend_ps(t1, best, v1);
      const __mmask16 t2 = takes(v2, best);
      best = _mm512_mask_blend_ps(t2, best, v2);
      const __mmask16 t3 = takes(v3, best);
      best = _mm512_mask_blend_ps(t3, best, v3);
      _mm512_mask_storeu_ps(y + p * Q + q0, out, best);
      if (am) {
        // The flat index of each candidate: 2p W + 2q (+1, +W, +W+1).
        const __m512i i0 = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * p * W + 2 * q0)), even);
        __m512i idx = i0;
        idx = _mm512_mask_add_epi32(idx, t1, i0, _mm512_set1_epi32(1));
        idx = _mm512_mask_add_epi32(idx, t2, i0, _mm512_set1_epi32(int32_t(W)));
        idx = _mm512_mask_add_epi32(idx, t3, i0, _mm512_set1_epi32(int32_t(W + 1)));
        _mm512_mask_storeu_epi32(am + p * Q + q0, out, idx);
      }
    }
  }
}
#else
void maxpool_plane_2x2(const Pool2dShape& s, const float* x, float* y, int32_t* am) {
  const int64_t P = s.P(), Q = s.Q(), W = s.W;
  for (int64_t p = 0; p < P; p++) {
    const float* r0 = x + 2 * p * W;  // the window's two rows
    const float* r1 = r0 + W;
    float* yp = y + p * Q;
    const int32_t base = int32_t(2 * p * W);
    for (int64_t q = 0; q < Q; q++) {
      float best = r0[2 * q];
      int32_t idx = base + int32_t(2 * q);
      const float v1 = r0[2 * q + 1], v2 = r1[2 * q], v3 = r1[2 * q + 1];
      bool t = v1 > best || v1 != v1;
      best = t ? v1 : best;
      idx = t ? base + int32_t(2 * q + 1) : idx;
      t = v2 > best || v2 != v2;
      best = t ? v2 : best;
      idx = t ? base + int32_t(W + 2 * q) : idx;
      t = v3 > best || v3 != v3;
      best = t ? v3 : best;
      idx = t ? base + int32_t(W + 2 * q + 1) : idx;
      yp[q] = best;
      if (am) am[p * Q + q] = idx;
    }
  }
}
#endif

// One (H, W) plane: window sums in row-major order over the in-image part (padding adds 0),
// divided by the full window size (count_include_pad).
void avgpool_plane(const Pool2dShape& s, const float* x, float* y) {
  const int64_t P = s.P(), Q = s.Q();
  const float area = float(s.kernel * s.kernel);
  for (int64_t p = 0; p < P; p++) {
    int64_t h0 = p * s.stride - s.pad, h1 = std::min(h0 + s.kernel, s.H);
    h0 = std::max<int64_t>(h0, 0);
    for (int64_t q = 0; q < Q; q++) {
      int64_t w0 = q * s.stride - s.pad, w1 = std::min(w0 + s.kernel, s.W);
      w0 = std::max<int64_t>(w0, 0);
      float acc = 0.0f;
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) acc += x[h * s.W + w];
      y[p * Q + q] = acc / area;
    }
  }
}

// Scatter over one plane: each input collects the dy of its windows in output order (the
// order of the gather in the reference and on the GPU), and is divided once at the end.
// dy (P, Q), dx (H, W)
void avgpool_backward_plane(const Pool2dShape& s, const float* dy, float* dx) {
  const int64_t P = s.P(), Q = s.Q();
  const float area = float(s.kernel * s.kernel);
  std::memset(dx, 0, s.H * s.W * sizeof(float));
  for (int64_t p = 0; p < P; p++) {
    int64_t h0 = p * s.stride - s.pad, h1 = std::min(h0 + s.kernel, s.H);
    h0 = std::max<int64_t>(h0, 0);
    for (int64_t q = 0; q < Q; q++) {
      int64_t w0 = q * s.stride - s.pad, w1 = std::min(w0 + s.kernel, s.W);
      w0 = std::max<int64_t>(w0, 0);
      const float g = dy[p * Q + q];
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) dx[h * s.W + w] += g;
    }
  }
  for (int64_t i = 0; i < s.H * s.W; i++) dx[i] /= area;
}

}  // namespace

void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax) {
  const int64_t planes = s.N * s.C, HW = s.H * s.W, PQ = s.P() * s.Q();
  const bool two = s.kernel == 2 && s.stride == 2 && s.pad == 0;
  parallel_for(planes, planes > 1 && planes * PQ * s.kernel * s.kernel > 32768, [&](int64_t i) {
    int32_t* am = argmax ? argmax + i * PQ : nullptr;
    if (two)
      maxpool_plane_2x2(s, x + i * HW, y + i * PQ, am);
    else
      maxpool_plane(s, x + i * HW, y + i * PQ, am);
  });
}

void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t planes = s.N * s.C, HW = s.H * s.W, PQ = s.P() * s.Q();
  parallel_for(planes, planes > 1 && planes * (HW + PQ) > 32768, [&](int64_t i) {
    float* dxp = dx + i * HW;  // (H, W)
    const float* dyp = dy + i * PQ;
    const int32_t* ap = argmax + i * PQ;
    std::memset(dxp, 0, HW * sizeof(float));
    // Overlapping windows (stride < kernel) can route several outputs to one input.
    for (int64_t j = 0; j < PQ; j++)
      if (ap[j] >= 0 && ap[j] < HW) dxp[ap[j]] += dyp[j];
  });
}

void avgpool2d_forward(const Pool2dShape& s, const float* x, float* y) {
  const int64_t planes = s.N * s.C, HW = s.H * s.W, PQ = s.P() * s.Q();
  parallel_for(planes, planes > 1 && planes * PQ * s.kernel * s.kernel > 32768,
               [&](int64_t i) { avgpool_plane(s, x + i * HW, y + i * PQ); });
}

void avgpool2d_backward(const Pool2dShape& s, const float* dy, float* dx) {
  const int64_t planes = s.N * s.C, HW = s.H * s.W, PQ = s.P() * s.Q();
  parallel_for(planes, planes > 1 && planes * (HW + PQ * s.kernel * s.kernel) > 32768,
               [&](int64_t i) { avgpool_backward_plane(s, dy + i * PQ, dx + i * HW); });
}

// Each plane's sum runs in order in double, as in the reference and on the GPU (one thread per
// plane there), so all three agree bit for bit.
void global_avgpool_forward(int64_t planes, int64_t hw, const float* x, float* y) {
  parallel_for(planes, planes > 1 && planes * hw > 32768, [&](int64_t p) {
    const float* xp = x + p * hw;  // (hw)
    double acc = 0.0;
    for (int64_t i = 0; i < hw; i++) acc += xp[i];
    y[p] = float(acc / double(hw));
  });
}

void global_avgpool_backward(int64_t planes, int64_t hw, const float* dy, float* dx) {
  const float div = float(hw);
  parallel_for(planes, planes > 1 && planes * hw > 32768, [&](int64_t p) {
    const float g = dy[p] / div;
    float* dxp = dx + p * hw;  // (hw)
    for (int64_t i = 0; i < hw; i++) dxp[i] = g;
  });
}

void shortcut_forward(const ShortcutShape& s, const float* x, float* y) {
  const int64_t P = s.P(), Q = s.Q(), planes = s.N * s.K;
  parallel_for(planes, planes > 1 && planes * P * Q > 32768, [&](int64_t i) {
    const int64_t n = i / s.K, c = i % s.K - s.pad_lo;
    float* yp = y + i * P * Q;  // (P, Q)
    if (c < 0 || c >= s.C) {
      std::memset(yp, 0, P * Q * sizeof(float));
      return;
    }
    const float* xp = x + (n * s.C + c) * s.H * s.W;  // (H, W)
    if (s.stride == 1) {
      std::memcpy(yp, xp, P * Q * sizeof(float));
      return;
    }
    for (int64_t p = 0; p < P; p++) {
      const float* row = xp + p * s.stride * s.W;
      for (int64_t q = 0; q < Q; q++) yp[p * Q + q] = row[q * s.stride];
    }
  });
}

void shortcut_backward(const ShortcutShape& s, const float* dy, float* dx) {
  const int64_t P = s.P(), Q = s.Q(), planes = s.N * s.C, HW = s.H * s.W;
  parallel_for(planes, planes > 1 && planes * HW > 32768, [&](int64_t i) {
    const int64_t n = i / s.C, c = i % s.C;
    const float* dyp = dy + (n * s.K + s.pad_lo + c) * P * Q;  // (P, Q)
    float* dxp = dx + i * HW;                                  // (H, W)
    if (s.stride == 1) {
      std::memcpy(dxp, dyp, HW * sizeof(float));
      return;
    }
    std::memset(dxp, 0, HW * sizeof(float));
    for (int64_t p = 0; p < P; p++) {
      float* row = dxp + p * s.stride * s.W;
      for (int64_t q = 0; q < Q; q++) row[q * s.stride] = dyp[p * Q + q];
    }
  });
}

// References: scan the full unclipped window and test every position against the image.
void maxpool2d_forward_ref(const Pool2dShape& s, const float* x, float* y, int32_t* argmax) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t c = 0; c < s.C; c++) {
      const float* xp = x + (n * s.C + c) * s.H * s.W;
      for (int64_t p = 0; p < P; p++)
        for (int64_t q = 0; q < Q; q++) {
          float best = -std::numeric_limits<float>::infinity();
          int32_t idx = -1;
          for (int64_t i = 0; i < s.kernel; i++)
            for (int64_t j = 0; j < s.kernel; j++) {
              int64_t h = p * s.stride - s.pad + i, w = q * s.stride - s.pad + j;
              if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
              float v = xp[h * s.W + w];
              if (idx < 0 || v > best || std::isnan(v)) {
                best = v;
                idx = (int32_t)(h * s.W + w);
              }
            }
          int64_t o = ((n * s.C + c) * P + p) * Q + q;
          y[o] = idx < 0 ? -std::numeric_limits<float>::infinity() : best;
          argmax[o] = idx;
        }
    }
}

void maxpool2d_backward_ref(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                            float* dx) {
  // For each input position, gather every output that chose it (in output order).
  const int64_t PQ = s.P() * s.Q(), HW = s.H * s.W;
  for (int64_t i = 0; i < s.N * s.C; i++)
    for (int64_t hw = 0; hw < HW; hw++) {
      float g = 0.0f;
      for (int64_t j = 0; j < PQ; j++)
        if (argmax[i * PQ + j] == hw) g += dy[i * PQ + j];
      dx[i * HW + hw] = g;
    }
}

void avgpool2d_forward_ref(const Pool2dShape& s, const float* x, float* y) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t c = 0; c < s.C; c++) {
      const float* xp = x + (n * s.C + c) * s.H * s.W;
      for (int64_t p = 0; p < P; p++)
        for (int64_t q = 0; q < Q; q++) {
          float acc = 0.0f;
          for (int64_t i = 0; i < s.kernel; i++)
            for (int64_t j = 0; j < s.kernel; j++) {
              int64_t h = p * s.stride - s.pad + i, w = q * s.stride - s.pad + j;
              if (h >= 0 && h < s.H && w >= 0 && w < s.W) acc += xp[h * s.W + w];
            }
          y[((n * s.C + c) * P + p) * Q + q] = acc / float(s.kernel * s.kernel);
        }
    }
}

void avgpool2d_backward_ref(const Pool2dShape& s, const float* dy, float* dx) {
  // For each input position, gather every output whose window covers it (in output order).
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t i = 0; i < s.N * s.C; i++)
    for (int64_t h = 0; h < s.H; h++)
      for (int64_t w = 0; w < s.W; w++) {
        float g = 0.0f;
        for (int64_t p = 0; p < P; p++)
          for (int64_t q = 0; q < Q; q++) {
            int64_t dh = h - (p * s.stride - s.pad), dw = w - (q * s.stride - s.pad);
            if (dh >= 0 && dh < s.kernel && dw >= 0 && dw < s.kernel) g += dy[(i * P + p) * Q + q];
          }
        dx[(i * s.H + h) * s.W + w] = g / float(s.kernel * s.kernel);
      }
}

void global_avgpool_forward_ref(int64_t planes, int64_t hw, const float* x, float* y) {
  for (int64_t p = 0; p < planes; p++) {
    double acc = 0.0;
    for (int64_t i = 0; i < hw; i++) acc += x[p * hw + i];
    y[p] = float(acc / double(hw));
  }
}

void global_avgpool_backward_ref(int64_t planes, int64_t hw, const float* dy, float* dx) {
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < hw; i++) dx[p * hw + i] = dy[p] / float(hw);
}

void shortcut_forward_ref(const ShortcutShape& s, const float* x, float* y) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t k = 0; k < s.K; k++)
      for (int64_t p = 0; p < P; p++)
        for (int64_t q = 0; q < Q; q++) {
          const int64_t c = k - s.pad_lo;
          y[((n * s.K + k) * P + p) * Q + q] =
              c >= 0 && c < s.C ? x[((n * s.C + c) * s.H + p * s.stride) * s.W + q * s.stride]
                                : 0.0f;
        }
}

void shortcut_backward_ref(const ShortcutShape& s, const float* dy, float* dx) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t c = 0; c < s.C; c++)
      for (int64_t h = 0; h < s.H; h++)
        for (int64_t w = 0; w < s.W; w++) {
          const bool picked = h % s.stride == 0 && w % s.stride == 0;
          dx[((n * s.C + c) * s.H + h) * s.W + w] =
              picked ? dy[((n * s.K + s.pad_lo + c) * P + h / s.stride) * Q + w / s.stride] : 0.0f;
        }
}

}  // namespace sprig::cpu
