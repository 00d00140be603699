// csr_conv2d with 16 samples to a vector, and the activations that consecutive such convs hand
// each other (sparse.h, LanesShape).
//
// From 16 samples on, a vector holds one position of 16 samples instead of 16 positions of one
// sample. The padded input of a group of 16 is laid out (C, Hp, Wp, 16), so the run of a stored
// weight is a column of aligned vectors (step st vectors along a row, no phase planes), and a
// tile of 2 output rows x 8 positions of one output channel (16 accumulators) takes one
// broadcast and 16 aligned loads per stored weight. The per-sample runs of sparse_conv.cpp start
// anywhere, so most of their loads split a cache line: resnet20's 16 -> 16 conv at 50% zeros,
// 32 samples on one core, went 1.41 -> 0.98 ms with this layout (the dense direct conv: 1.06-1.13
// ms).
// An (N, C, H, W) input is laid out a group at a time in a thread's own buffer, and an (N, K, P,
// Q) output is stored by transposing each tile back in registers into 16 samples' row pieces.
// Both cost: the lay-out ~0.13 ms of that 0.98, and the pieces, K*P*Q floats apart, share cache
// sets and evict each other half written. A conv whose neighbours run here too takes and gives
// its activations in the lanes layout instead, and does neither.
// AVX2 builds run the same layout with tiles of 2 x 3 positions (below, at their lanes_tile).
// The reference is conv2d_forward_ref on the same zeroed dense weights (tests/test_kernels_sparse).

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/short_rows.h"
#include "kernels/cpu/sparse.h"
#include "kernels/cpu/sparse_impl.h"
#include "kernels/error.h"

namespace sprig::cpu {

namespace {
constexpr int64_t kLanes = csr_conv2d_group;  // samples in a group
constexpr int64_t kMaxTileQ = 8;  // output positions of a tile row, at most (AVX-512's tiles)
// Strides up to this many read their tiles' unused positions within kSlack floats past a group.
constexpr int64_t kMaxStride = 4;
// The last tile of a row reads up to kMaxTileQ - 1 positions (each stride columns) past the real
// ones; past the last row of a group, that is past its end. The layout is the same whatever the
// build's tiles.
constexpr int64_t kSlack = kMaxTileQ * kMaxStride * kLanes;
}  // namespace

int64_t LanesShape::group_floats() const {
  return C * (H + 2 * pad) * (W + 2 * pad) * csr_conv2d_group;
}
int64_t LanesShape::floats() const {
  return groups() * group_floats() + kSlack;
}

#if defined(SPRIG_SPARSE_AVX512) || defined(SPRIG_SPARSE_AVX2)
namespace {
using namespace sparse_detail;

thread_local std::vector<float> tls_lanes;       // (C, Hp, Wp, 16) + slack, per thread
thread_local std::vector<int32_t> tls_lane_off;  // (nnz) of the calling thread, read by the team
thread_local std::vector<int32_t> tls_col_off;   // (C*R*S) offset of each weight column
thread_local std::vector<int64_t> tls_blocks;    // (K, blocks + 1) of the calling thread, read
                                                 // by the team: channel_blocks
thread_local std::vector<float> tls_partial;     // (K, kPartial) a tile's partial sums, per thread
thread_local std::vector<float> tls_zero_row;    // (W) zeros: the lanes of missing samples

// off[k] = where the run of stored weight k starts in a group's (C, Hp, Wp, 16) input, through
// a table of every column's offset (no division per stored weight).
template <typename Idx>
void lane_offsets(const CsrRef& w, const Idx* col, const Conv2dShape& s, int64_t Hp, int64_t Wp,
                  int32_t* off) {
  if (tls_col_off.size() < size_t(w.cols)) tls_col_off.resize(size_t(w.cols));
  int32_t* table = tls_col_off.data();  // (C*R*S)
  for (int64_t c = 0, j = 0; c < s.C; c++)
    for (int64_t r = 0; r < s.R; r++)
      for (int64_t ss = 0; ss < s.S; ss++, j++)
        table[j] = int32_t(((c * Hp + r * s.dilation) * Wp + ss * s.dilation) * kLanes);
  for (int64_t k = 0; k < w.nnz; k++) off[k] = table[col[k]];
}

// From 32 input channels, a tile's stored weights are taken a block of channels at a time,
// every output channel through one block before the next, its sums kept between blocks: the
// block's inputs (2 rows x 8 positions x 16 samples, 2.5 KB a channel at 3x3) then stay in L1
// for all output channels, where a whole tile's (80 KB at 32 channels) had left it. Blocks of 8
// channels, or fewer blocks where a row would have under 24 stored weights a block (keeping the
// sums costs 32 loads and stores a block). 64 samples on one core, (N, K, P, Q) out: 32
// channels at 14x14 0.88 -> 0.81 ms at 50% zeros, 0.62 -> 0.56 at 70%; 64 at 7x7 0.87 -> 0.81
// at 50%, 0.60 -> 0.54 at 70%, 0.27 -> 0.24 at 90% (two blocks). In blocks of 8 regardless, 64
// at 7x7 with 90% zeros (7 stored a row a block) had been 14% slower, and 16 at 28x28 (40 KB, in
// L1) 3% slower in two.
constexpr int64_t kPartial = 256;  // floats of one output channel's partial sums: 16 vectors

// The channels of a block (s.C: no blocks). AVX2's tiles (2 rows x 3 positions, 1.3 KB a
// channel) fit L1 to 32 channels: there, blocks made 64 at 7x7 with 70% zeros 6% slower.
int64_t channel_block(const CsrRef& w, const Conv2dShape& s) {
#ifndef SPRIG_SPARSE_AVX512
  (void)w;
  return s.C;
#else
  if (s.C < 32) return s.C;
  const double per_row = double(w.nnz) / double(std::max<int64_t>(w.rows, 1));
  const int64_t nb = std::min<int64_t>((s.C + 7) / 8, int64_t(per_row / 24.0));
  return nb > 1 ? (s.C + nb - 1) / nb : s.C;
#endif
}

// blocks[i * (nb + 1) + b] = the first stored weight of row i whose input channel is in block b
// (of cb channels) or later (the CSR columns of a row are increasing), nb = ceil(C / cb).
template <typename Idx>
void channel_blocks(const CsrRef& w, const Idx* col, const Conv2dShape& s, int64_t cb,
                    int64_t* blocks) {
  const int64_t nb = (s.C + cb - 1) / cb, RS = s.R * s.S;
  for (int64_t i = 0; i < w.rows; i++) {
    int64_t k = w.row_ptr[i];
    for (int64_t b = 0; b < nb; b++) {
      while (k < w.row_ptr[i + 1] && int64_t(col[k]) / RS < b * cb) k++;
      blocks[i * (nb + 1) + b] = k;
    }
    blocks[i * (nb + 1) + nb] = w.row_ptr[i + 1];
  }
}

// The border of channels [c0, c1), rows [p0, p1) of one group's y (C, Hp, Wp, 16) in layout a
// zeroed: the pad columns of those rows, and the pad rows above (p0 == 0) and below (p1 == H).
void zero_border(const LanesShape& a, int64_t c0, int64_t c1, int64_t p0, int64_t p1, float* y) {
  if (a.pad == 0) return;
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad;
  for (int64_t c = c0; c < c1; c++) {
    float* yc = y + c * Hp * Wp * kLanes;  // (Hp, Wp, 16)
    if (p0 == 0) std::fill_n(yc, a.pad * Wp * kLanes, 0.0f);
    if (p1 == a.H) std::fill_n(yc + (a.pad + a.H) * Wp * kLanes, a.pad * Wp * kLanes, 0.0f);
    for (int64_t p = p0; p < p1; p++) {
      float* row = yc + (p + a.pad) * Wp * kLanes;
      std::fill_n(row, a.pad * kLanes, 0.0f);
      std::fill_n(row + (a.pad + a.W) * kLanes, a.pad * kLanes, 0.0f);
    }
  }
}

// Where one tile's sums (2 rows x kTileQ positions) go: into (N, K, P, Q) as 16 samples' row
// pieces, or into a group's (K, P + 2 pad, Q + 2 pad, 16) lanes as they are.
struct TileOut {
  float* y;        // the tile's first output: sample 0 of the group, or its lanes vector
  const float* r;  // the residual at the same place in its own (equal) layout, or nullptr
  int64_t row;     // floats from an output row to the next
  int64_t ldy;     // floats from a sample to the next (NCHW only)
  int64_t nv;      // samples of the group that are stored (NCHW only)
  bool lanes;
  // Between channel blocks (lanes_tile's BLOCKED): the sums start from sums_in (kPartial floats)
  // rather than the bias when it is set, and go there as they are, not to y, when sums_out is.
  const float* sums_in;
  float* sums_out;
};

#ifdef SPRIG_SPARSE_AVX512
constexpr int64_t kTileQ = 8;  // output positions of a tile row

// One row of W positions of 16 samples (rows[n], n < 16) into dr (W, 16): 16 x 16 blocks (16
// samples x 16 columns) transposed in registers.
void row_to_lanes(const float* const (&rows)[kLanes], int64_t W, float* dr) {
  for (int64_t w0 = 0; w0 < W; w0 += 16) {
    const int64_t wn = std::min<int64_t>(16, W - w0);
    const __mmask16 m = short_rows::first_lanes(wn);
    __m512 r[16];
    for (int n = 0; n < 16; n++) r[n] = _mm512_maskz_loadu_ps(m, rows[n] + w0);
    transpose16_regs(r);
    for (int q = 0; q < 16; q++)
      if (kTransposedCol[q] < wn) _mm512_store_ps(dr + (w0 + kTransposedCol[q]) * kLanes, r[q]);
  }
}

// Output rows p .. p + PR - 1 (PR = 1 or 2), positions q0 .. q0 + nq - 1 (nq <= 8) of output
// channel i for the group, at stride ST: bias + its stored weights in stored order (+ the
// residual, when given), then ReLU when relu (NaN passes through, as relu_forward). base is the
// group's input at the tile's first tap, pstep the floats from one output row's taps to the next.
// ST is a template constant so that the 8 positions' loads are immediate offsets from one base
// a row: with a run-time stride each load had an address add of its own and the loop spilled.
template <int PR, int ST, bool REV, bool BLOCKED>
void lanes_tile(const float* v, const int32_t* o, int64_t cnt, const float* base, int64_t pstep,
                float bias, bool relu, int64_t nq, const TileOut& out) {
  constexpr int64_t qstep = ST * kLanes;
  __m512 acc[16];
  for (int j = 0; j < 16; j++)
    acc[j] = BLOCKED && out.sums_in ? _mm512_load_ps(out.sums_in + 16 * j)
             : j < PR * kTileQ      ? _mm512_set1_ps(bias)
                                    : _mm512_setzero_ps();
  const float* base1 = base + pstep;  // the second row's taps
  if (REV && cnt > 0) {  // the stored weights last to first (an empty row's arrays may be null)
    v += cnt - 1;
    o += cnt - 1;
  }
  for (int64_t t = 0; t < cnt; t++) {
    const int64_t k = REV ? -t : t;
    const __m512 vv = _mm512_set1_ps(v[k]);
    const float* b0 = base + o[k];
    const float* b1 = base1 + o[k];
    for (int j = 0; j < kTileQ; j++)
      acc[j] = _mm512_fmadd_ps(vv, _mm512_load_ps(b0 + j * qstep), acc[j]);
    if (PR == 2)
      for (int j = 0; j < kTileQ; j++)
        acc[kTileQ + j] = _mm512_fmadd_ps(vv, _mm512_load_ps(b1 + j * qstep), acc[kTileQ + j]);
  }
  if (BLOCKED && out.sums_out) {
    for (int j = 0; j < 16; j++) _mm512_store_ps(out.sums_out + 16 * j, acc[j]);
    return;
  }
  if (out.lanes) {
    for (int r = 0; r < PR; r++)
      for (int j = 0; j < nq; j++) {
        const int64_t at = r * out.row + j * kLanes;
        __m512 t = acc[r * kTileQ + j];
        if (out.r) t = _mm512_add_ps(t, _mm512_load_ps(out.r + at));
        // max(0, t): NaN (the second operand) passes through, as relu_forward.
        _mm512_store_ps(out.y + at, relu ? _mm512_max_ps(_mm512_setzero_ps(), t) : t);
      }
    return;
  }
  // Register q now holds sample kTransposedCol[q]: row p in lanes 0-7, row p + 1 in 8-15.
  transpose16_regs(acc);
  const __mmask8 m = __mmask8((1u << nq) - 1u);
  auto finish = [&](__m256 t, const float* r) {
    if (r) t = _mm256_add_ps(t, _mm256_maskz_loadu_ps(m, r));
    return relu ? _mm256_max_ps(_mm256_setzero_ps(), t) : t;
  };
  for (int q = 0; q < 16; q++) {
    const int64_t n = kTransposedCol[q];
    if (n >= out.nv) continue;
    float* yn = out.y + n * out.ldy;
    const float* rn = out.r ? out.r + n * out.ldy : nullptr;
    _mm256_mask_storeu_ps(yn, m, finish(_mm512_castps512_ps256(acc[q]), rn));
    if (PR == 2)
      _mm256_mask_storeu_ps(
          yn + out.row, m,
          finish(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[q]), 1)),
                 rn ? rn + out.row : nullptr));
  }
}

// One padded row's real positions (W, 16) of a group into the rows of its samples [0, nv), at
// d + n * ld: 16 x 16 blocks transposed in registers.
void row_from_lanes(const float* row, int64_t W, int64_t nv, float* d, int64_t ld) {
  for (int64_t w0 = 0; w0 < W; w0 += 16) {
    const int64_t wn = std::min<int64_t>(16, W - w0);
    __m512 r[16];
    for (int j = 0; j < 16; j++)
      r[j] = j < wn ? _mm512_load_ps(row + (w0 + j) * kLanes) : _mm512_setzero_ps();
    transpose16_regs(r);  // r[q]: sample kTransposedCol[q]'s positions w0 ..
    const __mmask16 m = short_rows::first_lanes(wn);
    for (int q = 0; q < 16; q++)
      if (kTransposedCol[q] < nv) _mm512_mask_storeu_ps(d + kTransposedCol[q] * ld + w0, m, r[q]);
  }
}

#else  // AVX2

// AVX2 has 16 registers of 8 floats: a position of a group is two of them (samples 0-7, 8-15), so
// a tile is 2 output rows x 3 positions, 12 accumulators, with room left for the broadcast
// weight. Each stored weight then costs a broadcast and 12 FMAs that take their input from
// memory: on Zen 3 (two loads and two FMAs a cycle) that is load- and FMA-bound alike.
// Three positions waste little on the widths convs have: 33 computed for 32, 9 for 8.
constexpr int64_t kTileQ = 3;  // output positions of a tile row

// As the AVX-512 row_to_lanes, with 8 x 8 blocks (8 samples x 8 columns).
void row_to_lanes(const float* const (&rows)[kLanes], int64_t W, float* dr) {
  for (int64_t w0 = 0; w0 < W; w0 += 8) {
    const __m256i m = first8(W - w0);
    const int64_t wn = std::min<int64_t>(8, W - w0);
    for (int half = 0; half < 2; half++) {
      __m256 r[8];
      for (int n = 0; n < 8; n++) r[n] = _mm256_maskload_ps(rows[8 * half + n] + w0, m);
      transpose8_regs(r);  // r[q]: column w0 + q of the half's 8 samples
      for (int q = 0; q < wn; q++) _mm256_store_ps(dr + (w0 + q) * kLanes + 8 * half, r[q]);
    }
  }
}

// As the AVX-512 lanes_tile, with 2 x 3 positions. Accumulator 2 * (r * kTileQ + j) + h holds
// row r, position j, samples 8h .. 8h + 7. An (N, K, P, Q) output goes through a buffer, one
// float at a time: a sample's row piece is 3 floats.
template <int PR, int ST, bool REV, bool BLOCKED>
void lanes_tile(const float* v, const int32_t* o, int64_t cnt, const float* base, int64_t pstep,
                float bias, bool relu, int64_t nq, const TileOut& out) {
  constexpr int64_t qstep = ST * kLanes;
  constexpr int A = 2 * PR * kTileQ;
  static_assert(!BLOCKED, "AVX2 tiles take no channel blocks (channel_block)");
  __m256 acc[A];
#pragma GCC unroll 12
  for (int j = 0; j < A; j++) acc[j] = _mm256_set1_ps(bias);
  const float* base1 = base + pstep;  // the second row's taps
  if (REV && cnt > 0) {  // the stored weights last to first (an empty row's arrays may be null)
    v += cnt - 1;
    o += cnt - 1;
  }
  for (int64_t t = 0; t < cnt; t++) {
    const int64_t k = REV ? -t : t;
    const __m256 vv = _mm256_broadcast_ss(v + k);
    const float* b0 = base + o[k];
    const float* b1 = base1 + o[k];
    for (int j = 0; j < kTileQ; j++) {
      acc[2 * j] = _mm256_fmadd_ps(vv, _mm256_load_ps(b0 + j * qstep), acc[2 * j]);
      acc[2 * j + 1] = _mm256_fmadd_ps(vv, _mm256_load_ps(b0 + j * qstep + 8), acc[2 * j + 1]);
    }
    if (PR == 2)
      for (int j = 0; j < kTileQ; j++) {
        constexpr int r1 = 2 * kTileQ;
        acc[r1 + 2 * j] = _mm256_fmadd_ps(vv, _mm256_load_ps(b1 + j * qstep), acc[r1 + 2 * j]);
        acc[r1 + 2 * j + 1] =
            _mm256_fmadd_ps(vv, _mm256_load_ps(b1 + j * qstep + 8), acc[r1 + 2 * j + 1]);
      }
  }
  // The loops below run to constants, so that every accumulator index is one: an index that
  // depends on nq makes GCC keep the array on the stack and store it at every stored weight.
  if (out.lanes) {
#pragma GCC unroll 2
    for (int r = 0; r < PR; r++)
#pragma GCC unroll 3
      for (int j = 0; j < kTileQ; j++)
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
          if (j >= nq) continue;
          const int64_t at = r * out.row + j * kLanes + 8 * h;
          __m256 t = acc[2 * (r * kTileQ + j) + h];
          if (out.r) t = _mm256_add_ps(t, _mm256_load_ps(out.r + at));
          // max(0, t): NaN (the second operand) passes through, as relu_forward.
          _mm256_store_ps(out.y + at, relu ? _mm256_max_ps(_mm256_setzero_ps(), t) : t);
        }
    return;
  }
  alignas(32) float sums[A * 8];  // (PR, kTileQ, 16): the accumulators as they are
#pragma GCC unroll 12
  for (int j = 0; j < A; j++) _mm256_store_ps(sums + 8 * j, acc[j]);
  for (int64_t n = 0; n < out.nv; n++) {
    float* yn = out.y + n * out.ldy;
    const float* rn = out.r ? out.r + n * out.ldy : nullptr;
    for (int r = 0; r < PR; r++)
      for (int j = 0; j < nq; j++) {
        float t = sums[(r * kTileQ + j) * kLanes + n];
        if (rn) t += rn[r * out.row + j];
        yn[r * out.row + j] = relu && 0.0f > t ? 0.0f : t;  // as _mm256_max_ps(0, t) above
      }
  }
}

// As the AVX-512 row_from_lanes, with 8 x 8 blocks.
void row_from_lanes(const float* row, int64_t W, int64_t nv, float* d, int64_t ld) {
  for (int64_t w0 = 0; w0 < W; w0 += 8) {
    const int64_t wn = std::min<int64_t>(8, W - w0);
    const __m256i m = first8(wn);
    for (int half = 0; half < 2 && 8 * half < nv; half++) {
      __m256 r[8];
      for (int j = 0; j < 8; j++)
        r[j] = j < wn ? _mm256_load_ps(row + (w0 + j) * kLanes + 8 * half) : _mm256_setzero_ps();
      transpose8_regs(r);  // r[q]: sample 8 half + q's positions w0 ..
      for (int q = 0; q < 8 && 8 * half + q < nv; q++)
        _mm256_maskstore_ps(d + (8 * half + q) * ld + w0, m, r[q]);
    }
  }
}

#endif
static_assert(kTileQ <= kMaxTileQ, "a tile row reads past its group within kSlack");

// Padded rows [h0, h1) of channels [c0, c1) of one group's xt (C, Hp, Wp, 16) in layout a, from
// samples [n0, n0 + nv) of x (N, C, H, W); lanes past nv zero.
void fill_lanes(const LanesShape& a, const float* x, int64_t n0, int64_t nv, int64_t c0, int64_t c1,
                int64_t h0, int64_t h1, float* xt) {
  const int64_t CHW = a.C * a.H * a.W, Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad;
  if (int64_t(tls_zero_row.size()) < a.W) tls_zero_row.assign(size_t(a.W), 0.0f);
  for (int64_t c = c0; c < c1; c++)
    for (int64_t hp = h0; hp < h1; hp++) {
      float* d = xt + (c * Hp + hp) * Wp * kLanes;  // (Wp, 16) padded row hp
      const int64_t h = hp - a.pad;
      if (h < 0 || h >= a.H) {
        std::fill_n(d, Wp * kLanes, 0.0f);
        continue;
      }
      std::fill_n(d, a.pad * kLanes, 0.0f);
      std::fill_n(d + (a.pad + a.W) * kLanes, a.pad * kLanes, 0.0f);
      const float* rows[kLanes];  // row h of channel c of each sample
      for (int64_t n = 0; n < kLanes; n++)
        rows[n] = n < nv ? x + (n0 + n) * CHW + (c * a.H + h) * a.W : tls_zero_row.data();
      row_to_lanes(rows, a.W, d + a.pad * kLanes);
    }
}

// f(std::integral_constant<int, stride>) for a stride of 1 to kMaxStride.
template <class F>
void with_stride(int64_t stride, F&& f) {
  switch (stride) {
    case 1:
      return f(std::integral_constant<int, 1>());
    case 2:
      return f(std::integral_constant<int, 2>());
    case 3:
      return f(std::integral_constant<int, 3>());
    default:
      return f(std::integral_constant<int, 4>());
  }
}
static_assert(kMaxStride == 4, "with_stride instantiates strides 1 to 4");

// One call's operands: x and y each (N, ...) or in lanes (pad >= 0).
struct LanesConv {
  const CsrRef& w;
  const int32_t* off;     // (nnz) lane_offsets in x's layout
  const int64_t* blocks;  // (K, nb + 1) channel_blocks, when there are blocks
  int64_t nb;             // channel blocks (1: none)
  Conv2dShape s;
  LanesShape xa, ya;  // x and y as lanes; pad -1 where they are (N, ...)
  const float *x, *bias, *residual;
  float* y;
  bool relu;
};

// Output rows [p0, p1) of group g, on the calling thread; BLOCKED: in channel blocks. Each its
// own function: the blocks' variant inlined beside the other had made convs of one block
// (8 -> 16, 90% zeros) 12-20% slower.
template <bool BLOCKED>
__attribute__((noinline)) void lanes_rows(const LanesConv& c, int64_t g, int64_t p0, int64_t p1) {
  const Conv2dShape& s = c.s;
  const int64_t n0 = g * kLanes, nv = std::min(kLanes, s.N - n0);
  const int64_t P = s.P(), Q = s.Q();
  // The group's input in the conv's own padding: x's lanes shifted by the extra border, or laid
  // out here.
  LanesShape in = c.xa;
  const float* xg;
  if (c.xa.pad >= 0) {
    const int64_t extra = c.xa.pad - s.pad, Wp = s.W + 2 * c.xa.pad;
    xg = c.x + g * c.xa.group_floats() + (extra * Wp + extra) * kLanes;
  } else {
    in = {s.N, s.C, s.H, s.W, s.pad};
    float* xt = aligned_scratch(tls_lanes, size_t(in.group_floats() + kSlack));
    const int64_t h1 = std::min(s.H + 2 * s.pad, (p1 - 1) * s.stride + (s.R - 1) * s.dilation + 1);
    fill_lanes(in, c.x, n0, nv, 0, s.C, p0 * s.stride, h1, xt);
    std::fill(xt + in.group_floats(), xt + in.group_floats() + kSlack, 0.0f);  // read, unused
    xg = xt;
  }
  const int64_t Wp = in.W + 2 * in.pad;
  const int64_t qstep = s.stride * kLanes, pstep = s.stride * Wp * kLanes;
  // Where output (channel 0, row p, position q0) of the group goes, and its residual.
  TileOut out{};
  out.lanes = c.ya.pad >= 0;
  int64_t ch;  // floats from an output channel to the next
  float* yg;
  const float* rg = nullptr;
  if (out.lanes) {
    const int64_t Wy = Q + 2 * c.ya.pad;
    yg = c.y + g * c.ya.group_floats() + (c.ya.pad * Wy + c.ya.pad) * kLanes;
    if (c.residual) rg = c.residual + (yg - c.y);
    out.row = Wy * kLanes;
    ch = (P + 2 * c.ya.pad) * Wy * kLanes;
    zero_border(c.ya, 0, s.K, p0, p1, c.y + g * c.ya.group_floats());
  } else {
    out.ldy = s.K * P * Q;
    out.nv = nv;
    out.row = Q;
    ch = P * Q;
    yg = c.y + n0 * out.ldy;
    if (c.residual) rg = c.residual + n0 * out.ldy;
  }
  const int64_t pos = out.lanes ? kLanes : 1;  // floats from an output position to the next
  const float* val = c.w.values;
  const int32_t* rp = c.w.row_ptr;
  const int64_t nb = BLOCKED ? c.nb : 1;
  float* partial = BLOCKED ? aligned_scratch(tls_partial, size_t(s.K * kPartial)) : nullptr;
  for (int64_t p = p0; p < p1; p += 2)
    for (int64_t q0 = 0; q0 < Q; q0 += kTileQ) {
      const float* base = xg + p * pstep + q0 * qstep;
      const int64_t nq = std::min(kTileQ, Q - q0);
      const int64_t at = p * out.row + q0 * pos;
      with_stride(s.stride, [&](auto st) {
        constexpr int ST = decltype(st)::value;
        for (int64_t bl = 0; bl < nb; bl++)  // every output channel through block bl, then bl + 1
          for (int64_t i = 0; i < s.K; i++) {
            const float b = c.bias ? c.bias[i] : 0.0f;
            out.y = yg + i * ch + at;
            out.r = rg ? rg + i * ch + at : nullptr;
            int64_t k0 = rp[i], k1 = rp[i + 1];
            if (BLOCKED) {
              k0 = c.blocks[i * (nb + 1) + bl], k1 = c.blocks[i * (nb + 1) + bl + 1];
              out.sums_in = bl > 0 ? partial + i * kPartial : nullptr;
              out.sums_out = bl + 1 < nb ? partial + i * kPartial : nullptr;
            }
            const float* v = val + k0;
            const int32_t* o = c.off + k0;
            const int64_t cnt = k1 - k0;
            if (p + 1 < p1 && i % 2 == 0)
              lanes_tile<2, ST, false, BLOCKED>(v, o, cnt, base, pstep, b, c.relu, nq, out);
            else if (p + 1 < p1)
              lanes_tile<2, ST, true, BLOCKED>(v, o, cnt, base, pstep, b, c.relu, nq, out);
            else if (i % 2 == 0)
              lanes_tile<1, ST, false, BLOCKED>(v, o, cnt, base, pstep, b, c.relu, nq, out);
            else
              lanes_tile<1, ST, true, BLOCKED>(v, o, cnt, base, pstep, b, c.relu, nq, out);
          }
      });
    }
}

// Whether the lanes suit w on s (with 16 samples or more) when the output is (N, K, P, Q). Each
// tile then writes 8-position pieces of 16 samples' rows; the samples' outputs are K*P*Q floats
// apart, often a multiple of 4 KiB, so those pieces share cache sets and evict each other half
// written. Where rows have few stored weights, that costs more than the loads saved. Staging
// the outputs to write whole rows cost more than it saved.
// Measured against the per-sample path (sparse_conv.cpp, 8 samples a call), 32 samples, one
// core, 3x3 convs at 90% zeros unless said:
// - AVX-512 (Zen 5): lanes / per sample 1.83 at 2.7 stored a row (3 -> 16, 32x32), 1.37 at 3.6
//   (4 -> 16), 0.79-0.81 at 4.3-4.5 (16 -> 32 at 14x14, 97%; 5 -> 16 at 28x28), 0.73-0.75 at
//   7.2-14.4 (8 and 16 -> 16 at 28x28), 0.61 at 57.6 (64 at 7x7); on two threads 0.66 at 72 (16
//   at 28x28, 50%).
// - AVX2 keeps the rule first set for AVX-512 (9599d3b: 3 -> 16 at 32x32 0.31 against 0.16 ms,
//   16 -> 16 at 28x28 0.50 against 0.45, and at 70% 0.70 against 0.92). The AVX2 build run on
//   that Zen 5 suggests that it takes the lanes too early (1.57 at 7.2 a row for 8 -> 16 at
//   16x16, 1.13 at 28.8, 0.95 at 57.6); not changed without an AVX2 machine to measure on.
bool nchw_out_suits(const CsrRef& w, const Conv2dShape& s) {
  const double per_row = double(w.nnz) / double(std::max<int64_t>(s.K, 1));
#ifdef SPRIG_SPARSE_AVX512
  (void)s;
  return per_row >= 4.0;
#else
  const double sample_bytes = 4.0 * double(s.K) * double(s.P()) * double(s.Q());
  return per_row >= 1.5 && (sample_bytes < 48.0 * 1024.0 || per_row >= 16.0);
#endif
}

}  // namespace

bool lanes_built() {
  return true;
}

bool csr_conv2d_lanes_fit(const CsrRef& w, const Conv2dShape& s) {
  const LanesShape a{s.N, s.C, s.H, s.W, s.pad};
  return s.N >= kLanes && s.stride <= kMaxStride && a.floats() <= INT32_MAX && w.rows == s.K &&
         w.cols == s.C * s.R * s.S && s.P() > 0 && s.Q() > 0;
}

bool csr_conv2d_in_lanes(const CsrRef& w, const Conv2dShape& s) {
  const bool direct = s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;  // x read in place
  return csr_conv2d_lanes_fit(w, s) && !direct && nchw_out_suits(w, s);
}

void csr_conv2d_lanes(const CsrRef& w, const Conv2dShape& s, const float* x, int64_t x_pad,
                      const float* bias, float* y, int64_t y_pad, bool relu,
                      const float* residual) {
  if (!csr_conv2d_lanes_fit(w, s))
    throw Error("csr_conv2d_lanes: this weight and shape do not run 16 samples to a vector");
  if (x_pad >= 0 && x_pad < s.pad)
    throw Error("csr_conv2d_lanes: the input's lanes have a border of " + std::to_string(x_pad) +
                ", the conv pads " + std::to_string(s.pad));
  LanesConv c{w, nullptr, nullptr,  1, s,   {-1, -1, -1, -1, -1}, {-1, -1, -1, -1, -1},
              x, bias,    residual, y, relu};
  if (x_pad >= 0) c.xa = {s.N, s.C, s.H, s.W, x_pad};
  if (y_pad >= 0) c.ya = {s.N, s.K, s.P(), s.Q(), y_pad};
  if (c.xa.pad >= 0 && c.xa.group_floats() > INT32_MAX)
    throw Error("csr_conv2d_lanes: a group of the input has more than 2^31 - 1 values");
  const int64_t Hp = s.H + 2 * std::max(x_pad, s.pad), Wp = s.W + 2 * std::max(x_pad, s.pad);
  if (tls_lane_off.size() < size_t(w.nnz)) tls_lane_off.resize(size_t(w.nnz));
  if (w.narrow())
    lane_offsets(w, w.col16, s, Hp, Wp, tls_lane_off.data());
  else
    lane_offsets(w, w.col32, s, Hp, Wp, tls_lane_off.data());
  c.off = tls_lane_off.data();
  const int64_t cb = channel_block(w, s), nb = (s.C + cb - 1) / cb;
  c.nb = nb;
  if (nb > 1) {
    if (tls_blocks.size() < size_t(s.K * (nb + 1))) tls_blocks.resize(size_t(s.K * (nb + 1)));
    if (w.narrow())
      channel_blocks(w, w.col16, s, cb, tls_blocks.data());
    else
      channel_blocks(w, w.col32, s, cb, tls_blocks.data());
    c.blocks = tls_blocks.data();
  }
  const int64_t P = s.P();
  const int T = threads_for(double(w.nnz) * P * s.Q() * s.N);
  // Items are groups of 16 samples, each split into bands of output rows (an even number of
  // rows, for the 2-row tiles) when there are fewer groups than threads. Every output is summed
  // in the same order whatever the split.
  const int64_t groups = (s.N + kLanes - 1) / kLanes;
  const int64_t bands = std::min((P + 1) / 2, (T + groups - 1) / groups);
  const int64_t band_rows = ((P + 1) / 2 + bands - 1) / bands * 2;
  run_items(groups * bands, T, [&](int64_t item) {
    const int64_t g = item / bands, p0 = item % bands * band_rows;
    const int64_t p1 = std::min(P, p0 + band_rows);
    if (p0 >= p1) return;
#ifdef SPRIG_SPARSE_AVX512
    if (nb > 1) return lanes_rows<true>(c, g, p0, p1);
#endif
    lanes_rows<false>(c, g, p0, p1);
  });
  if (y_pad >= 0)  // the slack after the last group, which the next conv's last tiles read
    std::fill(y + c.ya.groups() * c.ya.group_floats(), y + c.ya.floats(), 0.0f);
}

void to_lanes(const LanesShape& a, const float* x, float* xl) {
  const int T = sparse_detail::threads_for(double(a.floats()));
  run_items(a.groups() * a.C, T, [&](int64_t item) {
    const int64_t g = item / a.C, c = item % a.C;
    fill_lanes(a, x, g * kLanes, std::min(kLanes, a.N - g * kLanes), c, c + 1, 0, a.H + 2 * a.pad,
               xl + g * a.group_floats());
  });
  std::fill(xl + a.groups() * a.group_floats(), xl + a.floats(), 0.0f);
}

void from_lanes(const LanesShape& a, const float* xl, float* x) {
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad, CHW = a.C * a.H * a.W;
  const int T = sparse_detail::threads_for(double(a.floats()));
  run_items(a.groups() * a.C, T, [&](int64_t item) {
    const int64_t g = item / a.C, c = item % a.C, nv = std::min(kLanes, a.N - g * kLanes);
    const float* xc = xl + g * a.group_floats() + c * Hp * Wp * kLanes;  // (Hp, Wp, 16)
    for (int64_t h = 0; h < a.H; h++)
      row_from_lanes(xc + ((h + a.pad) * Wp + a.pad) * kLanes, a.W, nv,
                     x + g * kLanes * CHW + (c * a.H + h) * a.W, CHW);
  });
}

void shortcut_lanes(const ShortcutShape& s, const float* xl, int64_t x_pad, float* yl,
                    int64_t y_pad) {
  const LanesShape xa{s.N, s.C, s.H, s.W, x_pad}, ya{s.N, s.K, s.P(), s.Q(), y_pad};
  const int64_t Wx = s.W + 2 * x_pad, Hy = s.P() + 2 * y_pad, Wy = s.Q() + 2 * y_pad;
  const int T = sparse_detail::threads_for(double(ya.floats()));
  run_items(ya.groups() * s.K, T, [&](int64_t item) {
    const int64_t g = item / s.K, k = item % s.K, c = k - s.pad_lo;
    float* yk = yl + g * ya.group_floats() + k * Hy * Wy * kLanes;  // (Hy, Wy, 16)
    if (c < 0 || c >= s.C) {
      std::fill(yk, yk + Hy * Wy * kLanes, 0.0f);
      return;
    }
    zero_border(ya, k, k + 1, 0, s.P(), yl + g * ya.group_floats());
    const float* xc = xl + g * xa.group_floats() + c * (s.H + 2 * x_pad) * Wx * kLanes;
    for (int64_t p = 0; p < s.P(); p++)
      for (int64_t q = 0; q < s.Q(); q++)
        std::copy_n(xc + ((p * s.stride + x_pad) * Wx + q * s.stride + x_pad) * kLanes, kLanes,
                    yk + ((p + y_pad) * Wy + q + y_pad) * kLanes);
  });
  std::fill(yl + ya.groups() * ya.group_floats(), yl + ya.floats(), 0.0f);
}

#else  // neither AVX-512 nor AVX2: csr_conv2d takes every sample on its own, nothing runs in lanes

bool lanes_built() {
  return false;
}
bool csr_conv2d_lanes_fit(const CsrRef&, const Conv2dShape&) {
  return false;
}
bool csr_conv2d_in_lanes(const CsrRef&, const Conv2dShape&) {
  return false;
}
namespace {
[[noreturn]] void no_lanes(const char* f) {
  throw Error(std::string(f) + ": sample lanes need an AVX-512 or AVX2 build");
}
}  // namespace
void csr_conv2d_lanes(const CsrRef&, const Conv2dShape&, const float*, int64_t, const float*,
                      float*, int64_t, bool, const float*) {
  no_lanes("csr_conv2d_lanes");
}
void to_lanes(const LanesShape&, const float*, float*) {
  no_lanes("to_lanes");
}
void from_lanes(const LanesShape&, const float*, float*) {
  no_lanes("from_lanes");
}
void shortcut_lanes(const ShortcutShape&, const float*, int64_t, float*, int64_t) {
  no_lanes("shortcut_lanes");
}

#endif

}  // namespace sprig::cpu
