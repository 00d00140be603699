// 2-D convolution as im2col + gemm, one sample at a time.
//
// Forward, per sample n:   y_n (K, PQ) = W (K, CRS) x col_n (CRS, PQ)
// Backward, per sample n:  dW (K, CRS) += dy_n (K, PQ) x col_n^T (PQ, CRS)
//                          dcol (CRS, PQ) = W^T (CRS, K) x dy_n (K, PQ), then col2im -> dx_n
//
// The batch is split across OpenMP threads (static, contiguous samples per thread) and
// each thread runs the single-threaded gemm on its own samples: for the small images we
// train on, one sample's gemm is too small to split well, while the batch splits evenly.
// dW and db are accumulated per thread and summed in thread order afterwards, so results
// are bit-identical from run to run for a fixed thread count.
#include "kernels/cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace sprig::cpu {
namespace {

// Per-thread scratch that only grows, so warm calls do not allocate.
thread_local std::vector<float> tls_col;      // im2col / dcol buffer (CRS, PQ)
thread_local std::vector<float> tls_partial;  // dW (K, CRS) then db (K) partial sums

float* grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

int64_t ceil_div(int64_t a, int64_t b) {
  return a <= 0 ? 0 : (a + b - 1) / b;
}

// A 1x1 kernel with stride 1 and no padding reads x as it is: col_n is x_n (C, HW).
bool is_pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
}

// For kernel column offset ss: the output columns q whose input column
// w = q * stride - pad + ss * dilation lies inside [0, W) are [*q0, *q1).
void valid_cols(const Conv2dShape& s, int64_t Q, int64_t ss, int64_t* q0, int64_t* q1) {
  int64_t off = ss * s.dilation - s.pad;
  *q0 = std::min(Q, ceil_div(-off, s.stride));
  *q1 = std::max(*q0, std::min(Q, ceil_div(s.W - off, s.stride)));
}

// col (C*R*S, P*Q) <- x (C, H, W) of one sample; out-of-image taps are 0.
void im2col(const Conv2dShape& s, const float* x, float* col) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t c = 0; c < s.C; c++)
    for (int64_t r = 0; r < s.R; r++)
      for (int64_t ss = 0; ss < s.S; ss++) {
        float* dst = col + ((c * s.R + r) * s.S + ss) * P * Q;
        int64_t q0, q1;
        valid_cols(s, Q, ss, &q0, &q1);
        int64_t woff = ss * s.dilation - s.pad;
        for (int64_t p = 0; p < P; p++) {
          float* d = dst + p * Q;
          int64_t h = p * s.stride - s.pad + r * s.dilation;
          if (h < 0 || h >= s.H) {
            std::memset(d, 0, Q * sizeof(float));
            continue;
          }
          const float* src = x + (c * s.H + h) * s.W + woff;  // src[q * stride] is tap q
          for (int64_t q = 0; q < q0; q++) d[q] = 0.0f;
          if (s.stride == 1)
            std::memcpy(d + q0, src + q0, (q1 - q0) * sizeof(float));
          else
            for (int64_t q = q0; q < q1; q++) d[q] = src[q * s.stride];
          for (int64_t q = q1; q < Q; q++) d[q] = 0.0f;
        }
      }
}

// dx (C, H, W) = sum of col (C*R*S, P*Q) scattered back to the taps it came from.
void col2im(const Conv2dShape& s, const float* col, float* dx) {
  const int64_t P = s.P(), Q = s.Q();
  std::memset(dx, 0, s.C * s.H * s.W * sizeof(float));
  for (int64_t c = 0; c < s.C; c++)
    for (int64_t r = 0; r < s.R; r++)
      for (int64_t ss = 0; ss < s.S; ss++) {
        const float* src = col + ((c * s.R + r) * s.S + ss) * P * Q;
        int64_t q0, q1;
        valid_cols(s, Q, ss, &q0, &q1);
        int64_t woff = ss * s.dilation - s.pad;
        for (int64_t p = 0; p < P; p++) {
          int64_t h = p * s.stride - s.pad + r * s.dilation;
          if (h < 0 || h >= s.H) continue;
          float* d = dx + (c * s.H + h) * s.W + woff;
          const float* sp = src + p * Q;
          if (s.stride == 1)
            for (int64_t q = q0; q < q1; q++) d[q] += sp[q];
          else
            for (int64_t q = q0; q < q1; q++) d[q * s.stride] += sp[q];
        }
      }
}

// Use the team over the batch only from outside a parallel region and with >1 sample;
// otherwise one thread walks the batch and gemm may still thread internally.
int batch_threads(int64_t N) {
  if (N < 2 || omp_in_parallel()) return 1;
  return (int)std::min<int64_t>(omp_get_max_threads(), N);
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,
                    float* y) {
  const int64_t CRS = s.C * s.R * s.S, PQ = s.P() * s.Q(), CHW = s.C * s.H * s.W;
  const bool pointwise = is_pointwise(s);
  auto sample = [&](int64_t n) {
    const float* xn = x + n * CHW;  // (C, H, W)
    float* yn = y + n * s.K * PQ;   // (K, P, Q)
    const float* col = xn;          // (CRS, PQ)
    if (!pointwise) {
      float* buf = grow(tls_col, CRS * PQ);
      im2col(s, xn, buf);
      col = buf;
    }
    gemm(false, false, s.K, PQ, CRS, 1.0f, w, CRS, col, PQ, 0.0f, yn, PQ);
    if (b)
      for (int64_t k = 0; k < s.K; k++)
        for (int64_t i = 0; i < PQ; i++) yn[k * PQ + i] += b[k];
  };
  const int nt = batch_threads(s.N);
  if (nt > 1) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t n = 0; n < s.N; n++) sample(n);
  } else {
    for (int64_t n = 0; n < s.N; n++) sample(n);
  }
}

void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db) {
  const int64_t CRS = s.C * s.R * s.S, PQ = s.P() * s.Q(), CHW = s.C * s.H * s.W;
  const int64_t KCRS = s.K * CRS;
  const bool pointwise = is_pointwise(s);
  const bool want_partial = dw || db;
  constexpr int kMaxThreads = 256;
  const int nt = std::min(batch_threads(s.N), kMaxThreads);
  float* partial[kMaxThreads];  // partial[t]: thread t's dW (K, CRS) followed by db (K)

  // Thread t of T handles samples [N t / T, N (t + 1) / T) and fills partial[t].
  auto run = [&](int t, int T) {
    float* pdw = nullptr;
    if (want_partial) {
      pdw = grow(tls_partial, KCRS + s.K);
      std::memset(pdw, 0, (KCRS + s.K) * sizeof(float));
      partial[t] = pdw;
    }
    float* pdb = pdw ? pdw + KCRS : nullptr;
    for (int64_t n = s.N * t / T; n < s.N * (t + 1) / T; n++) {
      const float* xn = x + n * CHW;         // (C, H, W)
      const float* dyn = dy + n * s.K * PQ;  // (K, PQ)
      if (dw) {
        const float* col = xn;  // (CRS, PQ)
        if (!pointwise) {
          float* buf = grow(tls_col, CRS * PQ);
          im2col(s, xn, buf);
          col = buf;
        }
        gemm(false, true, s.K, CRS, PQ, 1.0f, dyn, PQ, col, PQ, 1.0f, pdw, CRS);
      }
      if (db)
        for (int64_t k = 0; k < s.K; k++) {
          double acc = 0.0;
          for (int64_t i = 0; i < PQ; i++) acc += dyn[k * PQ + i];
          pdb[k] += (float)acc;
        }
      if (dx) {
        float* dxn = dx + n * CHW;  // (C, H, W)
        if (pointwise) {
          gemm(true, false, s.C, PQ, s.K, 1.0f, w, CRS, dyn, PQ, 0.0f, dxn, PQ);
        } else {
          // (CRS, PQ): reuses the col buffer, which the dW product has finished with.
          float* dcol = grow(tls_col, CRS * PQ);
          gemm(true, false, CRS, PQ, s.K, 1.0f, w, CRS, dyn, PQ, 0.0f, dcol, PQ);
          col2im(s, dcol, dxn);
        }
      }
    }
  };
  // Sums the partials in thread order over elements [e0, e1) of dW ++ db.
  auto reduce = [&](int T, int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; e++) {
      float v = partial[0][e];
      for (int u = 1; u < T; u++) v += partial[u][e];
      if (e < KCRS) {
        if (dw) dw[e] = v;
      } else if (db) {
        db[e - KCRS] = v;
      }
    }
  };

  if (nt <= 1) {
    run(0, 1);
    if (want_partial) reduce(1, 0, KCRS + s.K);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    run(t, T);
    if (want_partial) {
#pragma omp barrier
      int64_t total = KCRS + s.K;
      reduce(T, total * t / T, total * (t + 1) / T);
    }
  }
}

void conv2d_forward_ref(const Conv2dShape& s, const float* x, const float* w, const float* b,
                        float* y) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t k = 0; k < s.K; k++)
      for (int64_t p = 0; p < P; p++)
        for (int64_t q = 0; q < Q; q++) {
          double acc = b ? b[k] : 0.0;
          for (int64_t c = 0; c < s.C; c++)
            for (int64_t r = 0; r < s.R; r++)
              for (int64_t ss = 0; ss < s.S; ss++) {
                int64_t h = p * s.stride - s.pad + r * s.dilation;
                int64_t wi = q * s.stride - s.pad + ss * s.dilation;
                if (h < 0 || h >= s.H || wi < 0 || wi >= s.W) continue;
                acc += (double)x[((n * s.C + c) * s.H + h) * s.W + wi] *
                       w[((k * s.C + c) * s.R + r) * s.S + ss];
              }
          y[((n * s.K + k) * P + p) * Q + q] = (float)acc;
        }
}

void conv2d_backward_ref(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                         float* dx, float* dw, float* db) {
  const int64_t P = s.P(), Q = s.Q();
  // Double accumulators, rounded once at the end.
  std::vector<double> gx(s.N * s.C * s.H * s.W, 0.0), gw(s.K * s.C * s.R * s.S, 0.0), gb(s.K, 0.0);
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t k = 0; k < s.K; k++)
      for (int64_t p = 0; p < P; p++)
        for (int64_t q = 0; q < Q; q++) {
          double g = dy[((n * s.K + k) * P + p) * Q + q];
          gb[k] += g;
          for (int64_t c = 0; c < s.C; c++)
            for (int64_t r = 0; r < s.R; r++)
              for (int64_t ss = 0; ss < s.S; ss++) {
                int64_t h = p * s.stride - s.pad + r * s.dilation;
                int64_t wi = q * s.stride - s.pad + ss * s.dilation;
                if (h < 0 || h >= s.H || wi < 0 || wi >= s.W) continue;
                int64_t xi = ((n * s.C + c) * s.H + h) * s.W + wi;
                int64_t wj = ((k * s.C + c) * s.R + r) * s.S + ss;
                gx[xi] += g * w[wj];
                gw[wj] += g * x[xi];
              }
        }
  if (dx)
    for (size_t i = 0; i < gx.size(); i++) dx[i] = (float)gx[i];
  if (dw)
    for (size_t i = 0; i < gw.size(); i++) dw[i] = (float)gw[i];
  if (db)
    for (size_t i = 0; i < gb.size(); i++) db[i] = (float)gb[i];
}

}  // namespace sprig::cpu
