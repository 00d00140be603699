// 2-D convolution as im2col + gemm, one sample at a time.
//
// Forward, per sample n:   y_n (K, PQ) = W (K, CRS) x col_n (CRS, PQ)
// Backward, per sample n:  dW (K, CRS) += dy_n (K, PQ) x col_n^T (PQ, CRS)
//                          dcol (CRS, PQ) = W^T (CRS, K) x dy_n (K, PQ), then col2im -> dx_n
// For stride 1 (square kernels, pad <= dilation*(R-1)), dx_n is instead the forward
// convolution of dy_n with the flipped, transposed kernel Wf (C, K, R, S) and padding
// dilation*(R-1) - pad: one im2col of dy and a product whose inner dimension is K*R*S, where
// W^T x dy's is only K (16 in a ResNet's first stage, a poor shape for gemm) and col2im's
// scatter-add is a second pass.
//
// The batch is split across threads (samples, or fixed chunks of samples, taken
// dynamically) and each thread runs the single-threaded gemm on its samples: for the small
// images we train on, one sample's gemm is too small to split well, while the batch splits
// evenly. dW and db are accumulated per chunk and summed in chunk order afterwards, so
// results are bit-identical from run to run for a fixed thread count.
#include "kernels/cpu/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/short_rows.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace sprig::cpu {
namespace {

// Per-thread scratch that only grows, so warm calls do not allocate.
thread_local std::vector<float> tls_col;             // im2col / dcol buffer (CRS, PQ)
thread_local std::vector<float> tls_chunk_partials;  // (chunks, K*CRS + K), see backward
thread_local std::vector<float> tls_packed_w;        // w packed for the forward's kernel

// The backward pass sums dW over the batch in this many fixed chunks (fewer when the batch
// is smaller). More chunks balance better between threads; each costs one (K, CRS) partial.
constexpr int64_t kBackwardChunks = 16;

// Multiply-adds of one sample above which a batch smaller than the team is split by output
// rows. Measured with 2 threads: cnn2's 8 -> 16 conv on 28x28 (0.9M) went from 0.020 to
// 0.013 ms, a ResNet's 16 -> 16 (1.8M) from 0.083 (threaded gemm) to 0.023 ms.
constexpr int64_t kSplitRowsMinWork = 1 << 18;

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

// Writes one im2col row: d[q] = src[q] for q in [q0, q1) and 0 for the rest of [0, Q)
// (stride 1). Rows are short (Q = 28 for our images), so a libc memcpy + memset per row cost
// more than the copy itself; with AVX-512 the row is a few masked load/stores whose masks are
// computed once per kernel column. Masked loads never touch src outside [q0, q1) (which may
// lie before the image row when padding).
struct RowCopier {
  int64_t Q, q0, q1;
#if defined(__AVX512F__)
  static constexpr int64_t kMaxChunks = 64;  // rows up to 1024 wide use the masks
  int64_t chunks = 0;                        // 0: fall back to the scalar copy
  __mmask16 load[kMaxChunks], store[kMaxChunks];
#endif
  RowCopier(int64_t Q_, int64_t q0_, int64_t q1_) : Q(Q_), q0(q0_), q1(q1_) {
#if defined(__AVX512F__)
    using short_rows::first_lanes;
    if (Q <= 16 * kMaxChunks) {
      chunks = (Q + 15) / 16;
      for (int64_t i = 0; i < chunks; i++) {
        store[i] = first_lanes(Q - 16 * i);
        load[i] = first_lanes(q1 - 16 * i) & (__mmask16)~first_lanes(q0 - 16 * i);
      }
    }
#endif
  }
  void copy(const float* src, float* d) const {
#if defined(__AVX512F__)
    if (chunks) {
      for (int64_t i = 0; i < chunks; i++)
        _mm512_mask_storeu_ps(d + 16 * i, store[i], _mm512_maskz_loadu_ps(load[i], src + 16 * i));
      return;
    }
#endif
    for (int64_t q = 0; q < q0; q++) d[q] = 0.0f;
    std::memcpy(d + q0, src + q0, (q1 - q0) * sizeof(float));
    for (int64_t q = q1; q < Q; q++) d[q] = 0.0f;
  }
  void zero(float* d) const {
#if defined(__AVX512F__)
    if (chunks) {
      for (int64_t i = 0; i < chunks; i++)
        _mm512_mask_storeu_ps(d + 16 * i, store[i], _mm512_setzero_ps());
      return;
    }
#endif
    std::memset(d, 0, Q * sizeof(float));
  }
};

// col (C*R*S, (p1 - p0) * Q) <- the taps of output rows [p0, p1) of x (C, H, W), one sample;
// out-of-image taps are 0.
void im2col(const Conv2dShape& s, const float* x, float* col, int64_t p0, int64_t p1) {
  const int64_t Q = s.Q(), L = (p1 - p0) * Q;
  for (int64_t ss = 0; ss < s.S; ss++) {
    int64_t q0, q1;
    valid_cols(s, Q, ss, &q0, &q1);
    const int64_t woff = ss * s.dilation - s.pad;
    const RowCopier row(Q, q0, q1);
    for (int64_t c = 0; c < s.C; c++)
      for (int64_t r = 0; r < s.R; r++) {
        float* dst = col + ((c * s.R + r) * s.S + ss) * L;
        for (int64_t p = p0; p < p1; p++) {
          float* d = dst + (p - p0) * Q;
          int64_t h = p * s.stride - s.pad + r * s.dilation;
          if (h < 0 || h >= s.H) {
            row.zero(d);
            continue;
          }
          const float* src = x + (c * s.H + h) * s.W + woff;  // src[q * stride] is tap q
          if (s.stride == 1) {
            row.copy(src, d);
            continue;
          }
          for (int64_t q = 0; q < q0; q++) d[q] = 0.0f;
          for (int64_t q = q0; q < q1; q++) d[q] = src[q * s.stride];
          for (int64_t q = q1; q < Q; q++) d[q] = 0.0f;
        }
      }
  }
}

// dx (C, H, W) = sum of col (C*R*S, P*Q) scattered back to the taps it came from.
// (Plain loops here: masked read-modify-writes of neighbouring dx rows measured slower, as
// a masked load that overlaps a recent masked store cannot take the stored data forward.)
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

// Sum of x[0, n) in double. Eight interleaved accumulators (lane j takes x[i] with
// i % 8 == j, then the lanes are added in order) so the loop vectorizes instead of waiting
// on one add chain; the order is fixed, so the result is deterministic.
double sum_plane(const float* x, int64_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) lane[j] += x[i + j];
  for (; i < n; i++) lane[i % 8] += x[i];
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Threads over the batch only with >1 sample and more than one thread available (not inside
// another kernel's item); otherwise one thread walks the batch and gemm may still thread
// internally.
int batch_threads(int64_t N) {
  return N < 2 ? 1 : int(std::min<int64_t>(available_threads(), N));
}

// Output rows [p0, p1) of yn (K, P, Q) = conv of one sample xn (C, H, W) with w (K, CRS)
// (+ b (K) when not null, then ReLU when relu) by kernel (never Auto): the direct or Winograd
// kernel on packed_w (conv2d_forward_pack), or im2col + gemm on the calling thread's col buffer.
void forward_rows(const Conv2dShape& s, ConvForward kernel, const float* xn, const float* w,
                  const float* packed_w, const float* b, bool relu, float* yn, int64_t p0,
                  int64_t p1) {
  if (kernel == ConvForward::Direct) {
    detail::conv2d_direct_rows(s, xn, packed_w, b, relu, yn, p0, p1);
    return;
  }
  if (kernel == ConvForward::Winograd) {
    detail::conv2d_winograd_rows(s, xn, packed_w, b, relu, yn, p0, p1, 0, s.K);
    return;
  }
  const int64_t CRS = s.C * s.R * s.S, Q = s.Q(), PQ = s.P() * Q, L = (p1 - p0) * Q;
  const float* col = xn + p0 * Q;  // (CRS, L) with row stride ldb
  int64_t ldb = PQ;
  if (!is_pointwise(s)) {
    float* buf = grow(tls_col, CRS * L);
    im2col(s, xn, buf, p0, p1);
    col = buf;
    ldb = L;
  }
  gemm(false, false, s.K, L, CRS, 1.0f, w, CRS, col, ldb, 0.0f, yn + p0 * Q, PQ);
  if (!b && !relu) return;
  for (int64_t k = 0; k < s.K; k++) {
    const float bk = b ? b[k] : 0.0f;
    float* yk = yn + k * PQ;
    if (relu)
      for (int64_t i = p0 * Q; i < p1 * Q; i++) yk[i] = std::max(yk[i] + bk, 0.0f);
    else
      for (int64_t i = p0 * Q; i < p1 * Q; i++) yk[i] += bk;
  }
}

// The convolution whose forward pass gives dx from dy (see the top of the file), when there
// is one: *t (one sample) reads dy_n (K, P, Q) and writes dx_n (C, H, W).
bool transposed_as_forward(const Conv2dShape& s, Conv2dShape* t) {
  const int64_t reach = s.dilation * (s.R - 1);
  if (s.stride != 1 || s.R != s.S || s.pad > reach || is_pointwise(s)) return false;
  *t = Conv2dShape{1, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, reach - s.pad, s.dilation};
  return true;
}

// wf (C, K, R, S): wf[c][k][r][s] = w[k][c][R-1-r][S-1-s].
void flip_transpose(const Conv2dShape& s, const float* w, float* wf) {
  const int64_t RS = s.R * s.S;
  for (int64_t k = 0; k < s.K; k++)
    for (int64_t c = 0; c < s.C; c++) {
      const float* src = w + (k * s.C + c) * RS;
      float* dst = wf + (c * s.K + k) * RS;
      for (int64_t i = 0; i < RS; i++) dst[i] = src[RS - 1 - i];
    }
}

}  // namespace

ConvForward conv2d_forward_kernel(const Conv2dShape& s, ConvForward how) {
  switch (how) {
    case ConvForward::Auto:
      return conv2d_winograd_pays(s) ? ConvForward::Winograd
             : conv2d_direct_pays(s) ? ConvForward::Direct
                                     : ConvForward::Im2colGemm;
    case ConvForward::Direct:
      SPRIG_CHECK(conv2d_direct_suits(s), "conv2d_forward: the direct kernel cannot run this ",
                  "convolution (stride ", s.stride, ", ", s.R, "x", s.S, " kernel, pad ", s.pad,
                  ")");
      return how;
    case ConvForward::Winograd:
      SPRIG_CHECK(conv2d_winograd_suits(s), "conv2d_forward: Winograd F(2x2, 3x3) cannot run ",
                  "this convolution (stride ", s.stride, ", ", s.R, "x", s.S, " kernel, dilation ",
                  s.dilation, ")");
      return how;
    case ConvForward::Im2colGemm:
      break;
  }
  return ConvForward::Im2colGemm;
}

int64_t conv2d_packed_size(const Conv2dShape& s, ConvForward kernel) {
  switch (kernel) {
    case ConvForward::Direct:
      return s.K * s.C * s.R * s.S;
    case ConvForward::Winograd:
      return 16 * s.K * s.C;
    default:
      return 0;
  }
}

void conv2d_forward_pack(const Conv2dShape& s, ConvForward kernel, const float* w, float* wp) {
  if (kernel == ConvForward::Direct) conv2d_direct_pack(s, w, wp);
  if (kernel == ConvForward::Winograd) conv2d_winograd_pack(s, w, wp);
}

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                    bool relu, ConvForward how, const float* packed_w) {
  const int64_t P = s.P(), PQ = P * s.Q(), CHW = s.C * s.H * s.W;
  // The kernel's weights: the caller's, or packed on the calling thread for its team.
  const ConvForward kernel = conv2d_forward_kernel(s, how);
  if (kernel == ConvForward::Im2colGemm) {
    packed_w = nullptr;
  } else if (!packed_w) {
    float* wp = grow(tls_packed_w, size_t(conv2d_packed_size(s, kernel)));
    conv2d_forward_pack(s, kernel, w, wp);
    packed_w = wp;
  }
  const int T = available_threads();
  if (s.N < T && P >= T && s.K * s.C * s.R * s.S * PQ >= kSplitRowsMinWork) {
    // Fewer samples than threads (batch 1): each thread takes a band of output rows of every
    // sample and does its im2col and its product itself, so the band's im2col columns never
    // leave the core that wrote them (a threaded gemm over one shared im2col buffer made batch 1
    // slower with 2 threads than with 1). Bands write disjoint columns of y: no barrier.
    // Winograd takes bands of whole 2x2 tile rows, so that its outputs do not depend on T, and
    // splits the output channels instead where a band would be under 4 tile rows: at 7x7 or
    // 14x14 that is a tile row or two, which half fills its vectors, while splitting the
    // channels repeats the input transform on every thread. Batch 1, 2 threads of a Zen 5,
    // AVX-512: 64 channels at 7x7 0.016-0.024 ms in bands, 0.011 ms by channels (direct
    // 0.016); AVX2: 8 -> 16 at 28x28 0.012-0.014 ms by channels, against the direct 0.010.
    const bool winograd = kernel == ConvForward::Winograd;
    if (winograd && P < 8 * T) {
      run_items(T, T, [&](int64_t t) {
        for (int64_t n = 0; n < s.N; n++)
          detail::conv2d_winograd_rows(s, x + n * CHW, packed_w, b, relu, y + n * s.K * PQ, 0, P,
                                       s.K * t / T, s.K * (t + 1) / T);
      });
      return;
    }
    run_items(T, T, [&](int64_t t) {
      // Winograd's bands start on even rows, at whole tile rows.
      auto edge = [&](int64_t p) { return winograd ? std::min(P, (p + 1) / 2 * 2) : p; };
      const int64_t p0 = edge(P * t / T), p1 = edge(P * (t + 1) / T);
      for (int64_t n = 0; n < s.N; n++)
        if (p1 > p0)
          forward_rows(s, kernel, x + n * CHW, w, packed_w, b, relu, y + n * s.K * PQ, p0, p1);
    });
    return;
  }
  auto sample = [&](int64_t n) {
    forward_rows(s, kernel, x + n * CHW, w, packed_w, b, relu, y + n * s.K * PQ, 0, P);
  };
  // One item per sample, claimed as threads come free: when another process takes one core
  // for a while the other thread keeps taking samples instead of waiting at the end (static
  // halves made a busy machine cost twice the time). On one thread, a plain loop: inside an
  // item gemm would run single-threaded, and here it may still split its own work.
  const int nt = batch_threads(s.N);
  if (nt <= 1) {
    for (int64_t n = 0; n < s.N; n++) sample(n);
    return;
  }
  run_items(s.N, nt, sample);
}

void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db) {
  const int64_t CRS = s.C * s.R * s.S, PQ = s.P() * s.Q(), CHW = s.C * s.H * s.W;
  const int64_t KCRS = s.K * CRS, part_len = KCRS + s.K;
  const bool pointwise = is_pointwise(s);
  const bool want_partial = dw || db;
  // The batch is cut into a fixed number of chunks, each with its own dW ++ db partial sum,
  // and the threads take chunks dynamically (a thread slowed by another process does not
  // hold the other back). Partials are summed in chunk order, so the result depends on
  // neither the thread count nor which thread ran which chunk.
  const int64_t chunks = std::min<int64_t>(s.N, kBackwardChunks);
  if (chunks == 0) {  // empty batch: the gradients are zero, dx is empty
    if (dw) std::memset(dw, 0, KCRS * sizeof(float));
    if (db) std::memset(db, 0, s.K * sizeof(float));
    return;
  }
  // (chunks, KCRS + K): chunk c's dW (K, CRS) followed by its db (K). Owned by the calling
  // thread and shared with the team.
  float* partials = want_partial ? grow(tls_chunk_partials, chunks * part_len) : nullptr;
  Conv2dShape tshape;
  const bool dx_by_forward = dx && transposed_as_forward(s, &tshape);
  std::vector<float> wflip(dx_by_forward ? KCRS : 0);  // (C, K, R, S)
  if (dx_by_forward) flip_transpose(s, w, wflip.data());
  // wflip packed for the kernel that runs dx, where that kernel reads packed weights
  const ConvForward dx_kernel =
      dx_by_forward ? conv2d_forward_kernel(tshape) : ConvForward::Im2colGemm;
  std::vector<float> wflip_packed(size_t(conv2d_packed_size(tshape, dx_kernel)));
  if (!wflip_packed.empty())
    conv2d_forward_pack(tshape, dx_kernel, wflip.data(), wflip_packed.data());

  auto run_chunk = [&](int64_t c) {
    float* pdw = want_partial ? partials + c * part_len : nullptr;
    float* pdb = pdw ? pdw + KCRS : nullptr;
    if (pdw) std::memset(pdw, 0, part_len * sizeof(float));
    for (int64_t n = s.N * c / chunks; n < s.N * (c + 1) / chunks; n++) {
      const float* xn = x + n * CHW;         // (C, H, W)
      const float* dyn = dy + n * s.K * PQ;  // (K, PQ)
      if (dw) {
        const float* col = xn;  // (CRS, PQ)
        if (!pointwise) {
          float* buf = grow(tls_col, CRS * PQ);
          im2col(s, xn, buf, 0, s.P());
          col = buf;
        }
        gemm(false, true, s.K, CRS, PQ, 1.0f, dyn, PQ, col, PQ, 1.0f, pdw, CRS);
      }
      if (db)
        for (int64_t k = 0; k < s.K; k++) pdb[k] += (float)sum_plane(dyn + k * PQ, PQ);
      if (dx) {
        float* dxn = dx + n * CHW;  // (C, H, W)
        if (pointwise) {
          gemm(true, false, s.C, PQ, s.K, 1.0f, w, CRS, dyn, PQ, 0.0f, dxn, PQ);
        } else if (dx_by_forward) {
          forward_rows(tshape, dx_kernel, dyn, wflip.data(), wflip_packed.data(), nullptr, false,
                       dxn, 0, tshape.P());
        } else {
          // (CRS, PQ): reuses the col buffer, which the dW product has finished with.
          float* dcol = grow(tls_col, CRS * PQ);
          gemm(true, false, CRS, PQ, s.K, 1.0f, w, CRS, dyn, PQ, 0.0f, dcol, PQ);
          col2im(s, dcol, dxn);
        }
      }
    }
  };
  // Sums the chunk partials in chunk order over elements [e0, e1) of dW ++ db.
  auto reduce = [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; e++) {
      float v = partials[e];
      for (int64_t c = 1; c < chunks; c++) v += partials[c * part_len + e];
      if (e < KCRS) {
        if (dw) dw[e] = v;
      } else if (db) {
        db[e - KCRS] = v;
      }
    }
  };

  const int nt = batch_threads(s.N);
  if (nt <= 1) {
    for (int64_t c = 0; c < chunks; c++) run_chunk(c);
    if (want_partial) reduce(0, part_len);
    return;
  }
  run_items(chunks, nt, run_chunk);
  // Every partial is complete: sum them, each thread a slice of the elements.
  if (want_partial)
    run_items(nt, nt, [&](int64_t t) { reduce(part_len * t / nt, part_len * (t + 1) / nt); });
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
