// 2-D max pooling, NCHW. Planes (n, c) are independent, so both directions parallelise over
// them with no write conflicts, and every sum is done in a fixed order.
#include "kernels/cpu/pool.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

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
      am[p * Q + q] = idx;
    }
  }
}

}  // namespace

void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax) {
  const int64_t planes = s.N * s.C, HW = s.H * s.W, PQ = s.P() * s.Q();
#pragma omp parallel for schedule(static) if (planes > 1 && \
                                              planes * PQ * s.kernel * s.kernel > 32768)
  for (int64_t i = 0; i < planes; i++) maxpool_plane(s, x + i * HW, y + i * PQ, argmax + i * PQ);
}

void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t planes = s.N * s.C, HW = s.H * s.W, PQ = s.P() * s.Q();
#pragma omp parallel for schedule(static) if (planes > 1 && planes * (HW + PQ) > 32768)
  for (int64_t i = 0; i < planes; i++) {
    float* dxp = dx + i * HW;  // (H, W)
    const float* dyp = dy + i * PQ;
    const int32_t* ap = argmax + i * PQ;
    std::memset(dxp, 0, HW * sizeof(float));
    // Overlapping windows (stride < kernel) can route several outputs to one input.
    for (int64_t j = 0; j < PQ; j++)
      if (ap[j] >= 0 && ap[j] < HW) dxp[ap[j]] += dyp[j];
  }
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

}  // namespace sprig::cpu
