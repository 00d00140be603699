// csr_conv2d: direct sparse convolution, W (K, C*R*S) in CSR, no im2col.
//
// With stride 1, output row k over the padded input xp (C, Hp, Wp) is
//   y[k, p, q] = sum over stored (c, r, s) of  w * xp[c, p + r*d, q + s*d]
// and if y is computed Wp columns wide (the Wp - Q extra columns are dropped afterwards), every
// stored weight is one AXPY over a contiguous run:  yext[k, 0:P*Wp] += w * xp[off(c,r,s) + 0:P*Wp]
// with off = (c*Hp + r*d)*Wp + s*d. That is the SpMM of sparse_linear.cpp with the "column" of
// a weight replaced by an offset into xp (ldr = 1): the same register-blocked rows, 64 output
// positions at a time, and no im2col buffer nine times the input to write and read back.
// A stride st > 1 splits xp into st x st phase planes (plane (a, b) holds xp[a::st, b::st]), so
// xp[c, p*st + tr, q*st + tc] = phase[c, tr % st, tc % st][p + tr/st, q + tc/st] and each tap
// is again a contiguous run, now Wph = ceil(Wp / st) wide.
// The extended width wastes (Wph - Q) / Wph of the work: 7% on a padded 28x28 3x3 conv, 0 for
// 1x1 stride-1 unpadded, which reads x itself. Each 64-wide panel of extended outputs is summed
// in registers and only its real outputs are stored.
// The reference is conv2d_forward_ref on the same zeroed dense weights (tests/test_kernels_sparse).

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/short_rows.h"
#include "kernels/cpu/sparse.h"
#include "kernels/cpu/sparse_impl.h"
#include "kernels/error.h"

namespace sprig::cpu {
namespace {
using namespace sparse_detail;

thread_local std::vector<float> tls_xphase;     // (C, st, st, Hph, Wph), per thread
thread_local std::vector<int32_t> tls_off;      // (nnz) of the calling thread, read by the team
thread_local std::vector<int32_t> tls_col_off;  // (C*R*S) offset of each weight column

// The layout whose zeros (padding, and the phase planes' gaps) tls_xphase holds, so that a
// call with the same layout writes only the input over them. Rewriting the zeros had cost a
// fifth of cnn2's 8 -> 16 conv at batch 1 (90% zeros, one core). fill_phases writes the zeros'
// positions with zeros only, and every call that takes the buffer (and may move it when it
// grows) records its layout here, so the zeros stay in place until another layout's call.
struct ZeroedLayout {
  int64_t C = 0, H = 0, W = 0, pad = 0, stride = 0;
  bool holds(const Conv2dShape& s) const {
    return s.C == C && s.H == H && s.W == W && s.pad == pad && s.stride == stride;
  }
};
thread_local ZeroedLayout tls_zeroed;

// Where the phase-split padded input of one sample lives and how big it is.
struct PhaseLayout {
  int64_t st, Hph, Wph, plane;  // plane = Hph * Wph
  int64_t floats;               // C * st * st * plane
  bool direct;                  // 1x1, stride 1, no padding: x itself is the layout
};

PhaseLayout phase_layout(const Conv2dShape& s) {
  PhaseLayout l;
  l.st = s.stride;
  const int64_t Hp = s.H + 2 * s.pad, Wp = s.W + 2 * s.pad;
  l.Hph = (Hp + l.st - 1) / l.st;
  l.Wph = (Wp + l.st - 1) / l.st;
  l.plane = l.Hph * l.Wph;
  l.floats = s.C * l.st * l.st * l.plane;
  l.direct = s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
  return l;
}

// d[j] = xr[j * ST] for j < n; a compile-time stride lets the compiler vectorize it (permutes).
template <int ST>
void strided_copy(const float* xr, int64_t n, float* d) {
  for (int64_t j = 0; j < n; j++) d[j] = xr[j * ST];
}

// Channel c of sample xn (C, H, W) into its st*st phase planes: zeros, then each input row
// scattered into the planes of its row phase (one branch-free strided loop per column phase).
// zeroed: the planes' zeros are in place already (only the input is written). Only padded
// rows [hp0, hp1) are written (with !zeroed, all of them must be asked for).
void fill_phases(const Conv2dShape& s, const PhaseLayout& l, const float* xn, int64_t c, float* xph,
                 bool zeroed, int64_t hp0, int64_t hp1) {
  float* xc = xph + c * l.st * l.st * l.plane;  // (st, st, Hph, Wph)
  if (l.st == 1) {  // one plane: zero rows above and below, each input row between zeros
    for (int64_t hp = hp0; hp < hp1; hp++) {
      float* d = xc + hp * l.Wph;  // (Wph) padded row hp
      const int64_t h = hp - s.pad;
      if (h < 0 || h >= s.H) {
        if (!zeroed) short_rows::zero_row(d, l.Wph);
        continue;
      }
      if (!zeroed) {
        short_rows::zero_row(d, s.pad);
        short_rows::zero_row(d + s.pad + s.W, l.Wph - s.pad - s.W);
      }
      short_rows::copy_row(d + s.pad, xn + (c * s.H + h) * s.W, s.W, false);
    }
    return;
  }
  if (!zeroed) std::fill(xc, xc + l.st * l.st * l.plane, 0.0f);
  const int64_t h0 = std::max<int64_t>(0, hp0 - s.pad), h1 = std::min(s.H, hp1 - s.pad);
#ifdef SPRIG_SPARSE_AVX512
  if (l.st == 2) {
    // Input column wi goes to column phase (wi + pad) % 2, at plane column (wi + pad) / 2: 32
    // columns at a time, the even and odd ones split by two permutes. A scalar strided copy
    // had cost as much as a stride-2 layer's products at batch 1.
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd =
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const int64_t b_even = s.pad % 2, b_odd = (s.pad + 1) % 2;
    for (int64_t h = h0; h < h1; h++) {
      const float* xr = xn + (c * s.H + h) * s.W;  // (W)
      const int64_t hp = h + s.pad;
      float* d = xc + (hp % 2) * 2 * l.plane + hp / 2 * l.Wph;  // row hp / 2 of phase (hp % 2, 0)
      for (int64_t w0 = 0; w0 < s.W; w0 += 32) {
        const int64_t n = std::min<int64_t>(32, s.W - w0);
        const __m512 lo = _mm512_maskz_loadu_ps(short_rows::first_lanes(n), xr + w0);
        const __m512 hi = _mm512_maskz_loadu_ps(short_rows::first_lanes(n - 16), xr + w0 + 16);
        _mm512_mask_storeu_ps(d + b_even * l.plane + w0 / 2 + s.pad / 2,
                              short_rows::first_lanes((n + 1) / 2),
                              _mm512_permutex2var_ps(lo, even, hi));
        _mm512_mask_storeu_ps(d + b_odd * l.plane + w0 / 2 + (s.pad + 1) / 2,
                              short_rows::first_lanes(n / 2), _mm512_permutex2var_ps(lo, odd, hi));
      }
    }
    return;
  }
#endif
  for (int64_t h = h0; h < h1; h++) {
    const float* xr = xn + (c * s.H + h) * s.W;  // (W)
    const int64_t hp = h + s.pad, a = hp % l.st, i = hp / l.st;
    for (int64_t b = 0; b < l.st; b++) {
      float* d = xc + (a * l.st + b) * l.plane + i * l.Wph;  // padded columns b, b + st, ...
      // Plane column j holds input column j * st + b - pad: the first j with that >= 0.
      const int64_t j0 = s.pad > b ? (s.pad - b + l.st - 1) / l.st : 0;
      const int64_t w0 = j0 * l.st + b - s.pad;
      const int64_t n = w0 < s.W ? (s.W - w0 + l.st - 1) / l.st : 0;
      if (l.st == 2)
        strided_copy<2>(xr + w0, n, d + j0);
      else
        for (int64_t j = 0; j < n; j++) d[j0 + j] = xr[w0 + j * l.st];
    }
  }
}

// off[k] = where the run of stored weight k starts in the phase buffer, through a table of the
// offset of every column (C*R*S). Divisions only for the R*S taps of one channel: a 64-bit
// division per column or per stored weight costs more than a small conv's multiply-adds (at
// batch 1, 4 per column had taken as long as a 64-channel layer's products).
template <typename Idx>
void tap_offsets(const CsrRef& w, const Idx* col, const Conv2dShape& s, const PhaseLayout& l,
                 int32_t* off) {
  const int64_t RS = s.R * s.S;
  int32_t* table = [&] {
    if (tls_col_off.size() < size_t(w.cols + RS)) tls_col_off.resize(size_t(w.cols + RS));
    return tls_col_off.data();
  }();
  int32_t* tap = table + w.cols;  // (R*S) offset of tap (r, ss) within channel 0
  for (int64_t r = 0; r < s.R; r++)
    for (int64_t ss = 0; ss < s.S; ss++) {
      const int64_t tr = r * s.dilation, tc = ss * s.dilation;
      tap[r * s.S + ss] =
          int32_t(((tr % l.st) * l.st + tc % l.st) * l.plane + tr / l.st * l.Wph + tc / l.st);
    }
  const int64_t channel = l.st * l.st * l.plane;  // floats of one channel's phase planes
  for (int64_t c = 0; c < s.C; c++)
    for (int64_t t = 0; t < RS; t++) table[c * RS + t] = int32_t(c * channel) + tap[t];
  for (int64_t k = 0; k < w.nnz; k++) off[k] = table[col[k]];
}

#ifndef SPRIG_SPARSE_AVX512
// A piece of a 64-wide panel of extended outputs that is a run of real outputs of one row.
struct Segment {
  int64_t from, to, len;  // panel position, output position p * Q + q, length
};

// The segments of extended outputs [j0, j0 + wd): each output row p covers positions
// [p * Wph, p * Wph + Q); the rest (the dropped columns) belongs to no segment. At most
// 64 / Wph + 2 segments.
int64_t panel_segments(int64_t j0, int64_t wd, int64_t Wph, int64_t Q, Segment* seg) {
  int64_t n = 0;
  for (int64_t p = j0 / Wph; p * Wph < j0 + wd; p++) {
    const int64_t lo = std::max(j0, p * Wph), hi = std::min(j0 + wd, p * Wph + Q);
    if (lo < hi) seg[n++] = {lo - j0, p * Q + lo - p * Wph, hi - lo};
  }
  return n;
}
#else
// Where each vector of a panel's sums goes (short_rows::grid_vector_stores): lane l of vector q
// (extended position j0 + 16 q + l) to the output it is on the grid. Built once per panel, used
// by every output row, so a row's sums are stored from registers by a few masked stores
// instead of through a tile and a copy per segment.
struct PanelLanes {
  static constexpr int64_t kMax = 4 * 18;  // a vector meets at most 16 / Wph + 2 rows
  int64_t first[5] = {};                   // stores of vector q: [first[q], first[q + 1])
  int64_t delta[kMax];                     // lanes go to yi + delta + 16 q
  __mmask16 mask[kMax];

  // For the panel at extended position j0 of a grid Wph wide holding P output rows of Q.
  void build(int64_t j0, int64_t Wph, int64_t Q, int64_t P) {
    int64_t n = 0;
    for (int64_t q = 0; q < 4; ++q) {
      first[q] = n;
      short_rows::grid_vector_stores(j0 + 16 * q, Wph, Q, P, [&](int64_t shift, __mmask16 m) {
        delta[n] = j0 + shift;
        mask[n++] = m;
      });
    }
    first[4] = n;
  }

  // The sums + bias (+ the residual ri, laid out as yi, when given), then ReLU when relu.
  template <int NV>
  void store(const RowAcc<NV>& acc, float bias, bool relu, float* yi, const float* ri) const {
    const __m512 bv = _mm512_set1_ps(bias);
    // The sums first, in an unrolled loop: acc indexed by the store loop's q kept GCC from
    // holding it in registers, and every multiply-add of the row was stored to the stack.
    __m512 sums[NV];
#pragma GCC unroll 4
    for (int q = 0; q < NV; ++q) sums[q] = _mm512_add_ps(_mm512_add_ps(acc.a[q], acc.b[q]), bv);
    for (int q = 0; q < NV; ++q) {
      const __m512 s = sums[q];
      for (int64_t e = first[q]; e < first[q + 1]; ++e) {
        const int64_t at = delta[e] + 16 * q;
        __m512 t = ri ? _mm512_add_ps(s, _mm512_maskz_loadu_ps(mask[e], ri + at)) : s;
        // max(0, t): NaN (the second operand) passes through, as relu_forward.
        if (relu) t = _mm512_maskz_max_ps(0xFFFF, _mm512_setzero_ps(), t);
        _mm512_mask_storeu_ps(yi + at, mask[e], t);
      }
    }
  }
};
#endif

// A row with at most this many stored weights skips the panels: its outputs are computed row
// by row (a panel's fixed cost, building its stores, outweighs a few multiply-adds). Up to 4
// (from 2): 3 -> 16 at 28x28 with 90% zeros (2.7 stored a row), batch 1, one core,
// 1.9 -> 1.5 us; 8 -> 16 (7.2 a row) unchanged.
constexpr int64_t kFewEntries = 4;

#if defined(SPRIG_SPARSE_AVX512) || defined(SPRIG_SPARSE_AVX2)
// Output channel i of yn (P, Q) from its CNT stored weights: each output is bias + the
// products (+ ri, laid out as yi, when RES), then ReLU when RELU, stored once. A row of Q is
// whole vectors and a tail (masked with AVX-512, scalar with AVX2). cnn2's 1 -> 8 conv at 90%
// zeros (7 weights) went from 1.0-1.1 to 0.7 us a sample on one core (AVX-512), against 2-3
// passes over the outputs before.
template <int CNT, bool RELU, bool RES>
void few_entries_rows(const float* val, const int32_t* off, const float* src, int64_t P, int64_t Q,
                      int64_t Wph, float bias, float* yi, const float* ri) {
  const float* x[CNT > 0 ? CNT : 1];  // (P, Wph) the run of each stored weight
  for (int k = 0; k < CNT; k++) x[k] = src + off[k];
#ifdef SPRIG_SPARSE_AVX512
  constexpr int64_t L = 16;
  __m512 v[CNT > 0 ? CNT : 1];
  for (int k = 0; k < CNT; k++) v[k] = _mm512_set1_ps(val[k]);
  const __m512 bv = _mm512_set1_ps(bias);
  const int64_t full = Q / L * L;
  const __mmask16 tail = short_rows::first_lanes(Q - full);
  auto vector_at = [&](int64_t e, int64_t at, __mmask16 m) {  // output e, run position at
    __m512 t = bv;
    for (int k = 0; k < CNT; k++) t = _mm512_fmadd_ps(v[k], _mm512_maskz_loadu_ps(m, x[k] + at), t);
    if (RES) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, ri + e));
    // max(0, t): NaN (the second operand) passes through, as relu_forward.
    if (RELU) t = _mm512_maskz_max_ps(0xFFFF, _mm512_setzero_ps(), t);
    _mm512_mask_storeu_ps(yi + e, m, t);
  };
#else
  constexpr int64_t L = 8;
  __m256 v[CNT > 0 ? CNT : 1];
  for (int k = 0; k < CNT; k++) v[k] = _mm256_set1_ps(val[k]);
  const __m256 bv = _mm256_set1_ps(bias);
  const int64_t full = Q / L * L;
  auto vector_at = [&](int64_t e, int64_t at) {
    __m256 t = bv;
    for (int k = 0; k < CNT; k++) t = _mm256_fmadd_ps(v[k], _mm256_loadu_ps(x[k] + at), t);
    if (RES) t = _mm256_add_ps(t, _mm256_loadu_ps(ri + e));
    if (RELU) t = _mm256_max_ps(t, _mm256_setzero_ps());  // NaN (the second operand) passes
    _mm256_storeu_ps(yi + e, t);
  };
#endif
  for (int64_t p = 0; p < P; p++) {
    int64_t q = 0;
#ifdef SPRIG_SPARSE_AVX512
    for (; q < full; q += L) vector_at(p * Q + q, p * Wph + q, 0xFFFF);
    if (tail) vector_at(p * Q + q, p * Wph + q, tail);
#else
    for (; q < full; q += L) vector_at(p * Q + q, p * Wph + q);
    for (; q < Q; q++) {
      float t = bias;
      for (int k = 0; k < CNT; k++) t = std::fma(val[k], x[k][p * Wph + q], t);
      if (RES) t += ri[p * Q + q];
      yi[p * Q + q] = RELU && t <= 0.0f ? 0.0f : t;
    }
#endif
  }
}

void few_entries_row(const float* val, const int32_t* off, int64_t cnt, const float* src, int64_t P,
                     int64_t Q, int64_t Wph, float bias, bool relu, float* yi, const float* ri) {
  static_assert(kFewEntries == 4, "few_entries_row instantiates 0 to 4 stored weights");
  auto with_flags = [&](auto c) {
    constexpr int CNT = decltype(c)::value;
    if (relu)
      ri ? few_entries_rows<CNT, true, true>(val, off, src, P, Q, Wph, bias, yi, ri)
         : few_entries_rows<CNT, true, false>(val, off, src, P, Q, Wph, bias, yi, ri);
    else
      ri ? few_entries_rows<CNT, false, true>(val, off, src, P, Q, Wph, bias, yi, ri)
         : few_entries_rows<CNT, false, false>(val, off, src, P, Q, Wph, bias, yi, ri);
  };
  switch (cnt) {
    case 0:
      return with_flags(std::integral_constant<int, 0>{});
    case 1:
      return with_flags(std::integral_constant<int, 1>{});
    case 2:
      return with_flags(std::integral_constant<int, 2>{});
    case 3:
      return with_flags(std::integral_constant<int, 3>{});
    default:
      return with_flags(std::integral_constant<int, 4>{});
  }
}
#else
// Output channel i of yn (P, Q) from its few stored weights, in stored order: the bias, each
// weight's run added row by row, the residual, the ReLU.
void few_entries_row(const float* val, const int32_t* off, int64_t cnt, const float* src, int64_t P,
                     int64_t Q, int64_t Wph, float bias, bool relu, float* yi, const float* ri) {
  std::fill(yi, yi + P * Q, bias);
  for (int64_t k = 0; k < cnt; k++) {
    const float v = val[k];
    for (int64_t p = 0; p < P; p++) {
      const float* xr = src + off[k] + p * Wph;  // this output row's run
      float* yr = yi + p * Q;
      for (int64_t q = 0; q < Q; q++) yr[q] += v * xr[q];
    }
  }
  if (ri)
    for (int64_t e = 0; e < P * Q; e++) yi[e] += ri[e];
  if (relu)
    for (int64_t e = 0; e < P * Q; e++) yi[e] = yi[e] <= 0.0f ? 0.0f : yi[e];
}
#endif

// yn rows [r0, r1) (rows, P, Q) of one sample = bias + sum over stored k of
// val[k] * src[off[k] + extended position] (+ rn, laid out as yn, when given), then ReLU when
// relu (NaN passes through, as relu_forward). The extended positions are taken 64 at a time, so
// the runs every row reads stay in cache; each row's panel is summed in registers and its real
// outputs go straight to yn.
// ystride: the distance between output channels of yn and rn (P * Q, or more where yn is a
// band of rows of a taller output).
void conv_rows(const CsrRef& w, const int32_t* off, int64_t r0, int64_t r1, const float* src,
               int64_t P, int64_t Q, int64_t Wph, int64_t ystride, const float* bias, bool relu,
               float* yn, const float* rn) {
  const float* val = w.values;
  const int32_t* rp = w.row_ptr;
  const int64_t n_ext = (P - 1) * Wph + Q;
  bool any_panel_row = false;  // the panels' set-up is for rows with more stored weights
  for (int64_t i = r0; i < r1; i++) {
    const int64_t cnt = rp[i + 1] - rp[i];
    any_panel_row |= cnt > kFewEntries;
    if (cnt <= kFewEntries)
      few_entries_row(val + rp[i], off + rp[i], cnt, src, P, Q, Wph, bias ? bias[i] : 0.0f, relu,
                      yn + i * ystride, rn ? rn + i * ystride : nullptr);
  }
  if (!any_panel_row) return;
#ifdef SPRIG_SPARSE_AVX512
  PanelLanes lanes;
#else
  Segment seg[kPanel + 2];
  alignas(64) float tile[kPanel];
#endif
  for (int64_t j0 = 0; j0 < n_ext; j0 += kPanel) {
    const int64_t wd = std::min(kPanel, n_ext - j0);
#ifdef SPRIG_SPARSE_AVX512
    lanes.build(j0, Wph, Q, P);
#else
    const int64_t nseg = panel_segments(j0, wd, Wph, Q, seg);
#endif
    with_nv(wd, [&](auto nv) {
      constexpr int NV = decltype(nv)::value;
      for (int64_t i = r0; i < r1; i++) {
        const int64_t cnt = rp[i + 1] - rp[i];
        if (cnt <= kFewEntries) continue;
        const float b = bias ? bias[i] : 0.0f;
        float* yi = yn + i * ystride;
        const float* ri = rn ? rn + i * ystride : nullptr;
#ifdef SPRIG_SPARSE_AVX512
        // The panel's sums go from registers straight to the real outputs, lane-masked.
        RowAcc<NV> acc(wd);
        const int32_t* o = off + rp[i];
        const float* v = val + rp[i];
        int64_t k = 0;
        for (; k + 1 < cnt; k += 2) {
          acc.fma_a(v[k], src + j0 + o[k]);
          acc.fma_b(v[k + 1], src + j0 + o[k + 1]);
        }
        if (k < cnt) acc.fma_a(v[k], src + j0 + o[k]);
        lanes.store(acc, b, relu, yi, ri);
#else
        csr_row<NV>(off + rp[i], val + rp[i], cnt, src + j0, 1, wd, b, tile);
        for (int64_t g = 0; g < nseg; g++) {
          float* d = yi + seg[g].to;
          const float* t = tile + seg[g].from;
          if (!ri) {
            short_rows::copy_row(d, t, seg[g].len, relu);
            continue;
          }
          for (int64_t e = 0; e < seg[g].len; e++) {
            const float v = t[e] + ri[seg[g].to + e];
            d[e] = relu && v <= 0.0f ? 0.0f : v;
          }
        }
#endif
      }
    });
  }
}

// The layout of s's padded sample, after checking that w fits s.
PhaseLayout checked_layout(const CsrRef& w, const Conv2dShape& s) {
  if (w.rows != s.K || w.cols != s.C * s.R * s.S)
    throw Error("csr_conv2d: weight is " + std::to_string(w.rows) + "x" + std::to_string(w.cols) +
                ", conv needs " + std::to_string(s.K) + "x" + std::to_string(s.C * s.R * s.S) +
                " (K x C*R*S)");
  const PhaseLayout l = phase_layout(s);
  if (l.floats > INT32_MAX)
    throw Error("csr_conv2d: one sample's padded input has " + std::to_string(l.floats) +
                " values, more than 2^31 - 1");
  return l;
}

void fill_offsets(const CsrRef& w, const Conv2dShape& s, const PhaseLayout& l, int32_t* off) {
  if (w.narrow())
    tap_offsets(w, w.col16, s, l, off);
  else
    tap_offsets(w, w.col32, s, l, off);
}

}  // namespace

std::vector<int32_t> csr_conv2d_offsets(const CsrRef& w, const Conv2dShape& s) {
  const PhaseLayout l = checked_layout(w, s);
  std::vector<int32_t> off(size_t(w.nnz));  // (nnz)
  fill_offsets(w, s, l, off.data());
  return off;
}

void csr_conv2d(const CsrRef& w, const Conv2dShape& s, const float* x, const float* bias, float* y,
                bool relu, const int32_t* offsets, const float* residual) {
  const PhaseLayout l = checked_layout(w, s);
  if (s.N <= 0 || s.K <= 0 || s.P() <= 0 || s.Q() <= 0) return;
  const int64_t P = s.P(), Q = s.Q(), PQ = P * Q, CHW = s.C * s.H * s.W, K = s.K;
  const int T = threads_for(double(w.nnz) * PQ * s.N);
  if (csr_conv2d_in_lanes(w, s)) {  // sparse_conv_lanes.cpp
    csr_conv2d_lanes(w, s, x, -1, bias, y, -1, relu, residual);
    return;
  }
  const int32_t* off = offsets;
  if (!off) {
    if (tls_off.size() < size_t(w.nnz)) tls_off.resize(size_t(w.nnz));
    fill_offsets(w, s, l, tls_off.data());
    off = tls_off.data();
  }

  // Output channels [r0, r1), output rows [p0, p1) of sample n, on the calling thread: the
  // input rows they read laid out in the thread's own buffer (x itself when direct), then the
  // products.
  auto sample_rows = [&](int64_t n, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
    const float* src = x + n * CHW;
    if (!l.direct) {
      float* xph = aligned_scratch(tls_xphase, size_t(l.floats));
      const bool zeroed = tls_zeroed.holds(s);
      // The padded rows that output rows [p0, p1) read; all of them the first time, when the
      // zeros are written everywhere, so that later bands find them in place.
      const int64_t Hp = s.H + 2 * s.pad;
      const int64_t hp0 = zeroed ? p0 * s.stride : 0;
      const int64_t hp1 =
          zeroed ? std::min(Hp, (p1 - 1) * s.stride + (s.R - 1) * s.dilation + 1) : Hp;
      for (int64_t c = 0; c < s.C; c++) fill_phases(s, l, x + n * CHW, c, xph, zeroed, hp0, hp1);
      tls_zeroed = {s.C, s.H, s.W, s.pad, s.stride};
      src = xph;
    }
    conv_rows(w, off, r0, r1, src + p0 * l.Wph, p1 - p0, Q, l.Wph, PQ, bias, relu,
              y + n * K * PQ + p0 * Q, residual ? residual + n * K * PQ + p0 * Q : nullptr);
  };
  if (s.N >= T) {
    // Enough samples: one sample per thread at a time, claimed as threads come free.
    run_items(s.N, T, [&](int64_t n) { sample_rows(n, 0, K, 0, P); });
    return;
  }
  // Fewer samples than threads. With at least 4 output rows a thread, each thread takes a band
  // of output rows of every channel and lays out only the input rows it reads. cnn2's 8 -> 16
  // conv at batch 1 (90% zeros), split over the output channels instead, gained 1.37x from a
  // second thread, each laying out the whole sample. Otherwise the output channels are split by
  // stored entries and every thread lays out each sample itself. Neither has a barrier inside
  // the region, where a descheduled thread would stall the others.
  if (P >= 4 * T) {
    run_items(T, T, [&](int64_t t) {
      for (int64_t n = 0; n < s.N; n++) sample_rows(n, 0, K, P * t / T, P * (t + 1) / T);
    });
    return;
  }
  auto bounds = split_rows(K, T, [&](int64_t i) { return w.row_ptr[i] + i; });
  run_items(T, T, [&](int64_t t) {
    for (int64_t n = 0; n < s.N; n++) sample_rows(n, bounds[t], bounds[t + 1], 0, P);
  });
}

}  // namespace sprig::cpu
