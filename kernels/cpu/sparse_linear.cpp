// Sparse kernels: y (B, rows) = x (B, cols) W^T + bias with W in CSR, BSR or N:M (csr_conv2d
// lives in sparse_conv.cpp). The reference they are tested against is csr_linear_ref (sparse.cpp)
// and the dense path on the same zeroed weights.
//
// Two shapes of work:
//  - B < 4, SpMV: memory bound on the weight arrays. Each thread streams the values and indices
//    of its rows and gathers x (which sits in L1/L2) with 16-lane gathers.
//  - B >= 4, SpMM: x is transposed panel by panel into xT (cols, w <= 64 samples), so each
//    stored weight w_ij does y[i, b:b+w] += w_ij * xT[j, b:b+w]: up to four 16-float FMAs on
//    contiguous memory per nonzero instead of one gathered multiply. A 4096-column panel is 1 MiB
//    and stays in L2 while every row of W goes past it.
//    CSR walks 64 rows at a time over the columns in blocks of 192 (csr_tile), so the xT rows of
//    a block stay in L1 while all 64 rows take their entries there. Measured on the 2-core
//    AVX-512 machine: about 6 cycles per nonzero at 64 samples, bound by the four xT loads and
//    FMAs per nonzero. BSR with br = 2 or 4 loads each xT row once for br rows, which is why it
//    beats CSR per stored value at batch.
//    Each thread transposes x into its own xT (16 x 16 blocks in registers), up to 1 MiB of
//    panels at once, so a thread never waits at a barrier nor reads xT from another core's cache.
// Rows are split over threads by stored entries, so a skewed mask still balances. Each output is
// summed in an order that does not depend on the thread count.
// The CSR tile, the transposes and the thread split live in sparse_impl.h, shared with
// csr_linear_ex (sparse_chain.cpp), which chains sparse layers without the transposes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cpu/short_rows.h"
#include "kernels/cpu/sparse.h"
#include "kernels/cpu/sparse_impl.h"

namespace sprig::cpu {
namespace {
using namespace sparse_detail;

constexpr int64_t kTileRows = 16;  // output rows computed before writing them transposed into y
constexpr int64_t kGroupBytes = int64_t(1) << 20;  // bytes of xT panels transposed at once

thread_local std::vector<float> tls_panel;  // xT panel or padded x of the calling thread

// Row i of a BSR matrix: each block contributes BC consecutive columns (BC = 0: a.bc at run
// time). The zeros inside stored blocks are multiplied like any other value.
template <int NV, int BC>
void bsr_row(const BsrRef& a, int64_t i, const float* rhs, int64_t ldr, int64_t w, float bias,
             float* out) {
  const int64_t bc = BC > 0 ? BC : a.bc, I = i / a.br, ri = i % a.br;
  RowAcc<NV> acc(w);
  for (int64_t k = a.block_row_ptr[I]; k < a.block_row_ptr[I + 1]; k++) {
    const float* v = a.values + (k * a.br + ri) * bc;            // (bc) this row of the block
    const float* xr = rhs + int64_t(a.block_col[k]) * bc * ldr;  // (bc, ldr)
    int64_t c = 0;
    for (; c + 1 < bc; c += 2) {
      acc.fma_a(v[c], xr + c * ldr);
      acc.fma_b(v[c + 1], xr + (c + 1) * ldr);
    }
    if (c < bc) acc.fma_a(v[c], xr + c * ldr);
  }
  acc.store(bias, out);
}

#ifdef SPRIG_SPARSE_AVX512
// The BR rows of block row I together (BR = 2 or 4): each xT row a block column reads is
// loaded once and feeds BR rows, where bsr_row loads it BR times. Writes rows [0, nrows) of
// out (BR, ldr); rows past the matrix (a short last block row) are computed and dropped.
template <int NV, int BR, int BC>
void bsr_block_rows(const BsrRef& a, int64_t I, const float* rhs, int64_t ldr, int64_t w,
                    const float* bias, int64_t nrows, float* out) {
  const int64_t bc = BC > 0 ? BC : a.bc;
  const int64_t rem = w - 16 * (NV - 1);
  const __mmask16 tail = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
  __m512 acc[BR][NV];  // BR x NV <= 16 registers
  for (int r = 0; r < BR; r++)
    for (int q = 0; q < NV; q++) acc[r][q] = _mm512_setzero_ps();
  for (int64_t k = a.block_row_ptr[I]; k < a.block_row_ptr[I + 1]; k++) {
    const float* v = a.values + k * BR * bc;                     // (BR, bc)
    const float* xr = rhs + int64_t(a.block_col[k]) * bc * ldr;  // (bc, ldr)
    for (int64_t c = 0; c < bc; c++) {
      __m512 xv[NV];
      for (int q = 0; q < NV - 1; q++) xv[q] = _mm512_loadu_ps(xr + c * ldr + 16 * q);
      xv[NV - 1] = _mm512_maskz_loadu_ps(tail, xr + c * ldr + 16 * (NV - 1));
      for (int r = 0; r < BR; r++) {
        const __m512 vv = _mm512_set1_ps(v[r * bc + c]);
        for (int q = 0; q < NV; q++) acc[r][q] = _mm512_fmadd_ps(vv, xv[q], acc[r][q]);
      }
    }
  }
  // Over BR, unrolled, not over nrows: acc indexed by a run-time row kept GCC from holding it
  // in registers, and every multiply-add was followed by a store of the whole array.
#pragma GCC unroll 4
  for (int r = 0; r < BR; r++) {
    if (r >= nrows) break;
    const __m512 bv = _mm512_set1_ps(bias ? bias[I * BR + r] : 0.0f);
    for (int q = 0; q < NV - 1; q++)
      _mm512_storeu_ps(out + r * ldr + 16 * q, _mm512_add_ps(acc[r][q], bv));
    _mm512_mask_storeu_ps(out + r * ldr + 16 * (NV - 1), tail, _mm512_add_ps(acc[r][NV - 1], bv));
  }
}
#endif

// Row i of an N:M matrix (N, M = 0: from a at run time). Entry k of group g is column
// g * m + index; padding entries hold 0 at a valid column.
template <int NV, int N, int M>
void nm_row(const NmRef& a, int64_t i, const float* rhs, int64_t ldr, int64_t w, float bias,
            float* out) {
  const int64_t n = N > 0 ? N : a.n, m = M > 0 ? M : a.m, G = (a.cols + m - 1) / m;
  const float* v = a.values + i * G * n;    // (G, n)
  const uint8_t* ix = a.index + i * G * n;  // (G, n)
  RowAcc<NV> acc(w);
  for (int64_t g = 0; g < G; g++) {
    const float* xg = rhs + g * m * ldr;
    int64_t k = 0;
    for (; k + 1 < n; k += 2) {
      acc.fma_a(v[g * n + k], xg + int64_t(ix[g * n + k]) * ldr);
      acc.fma_b(v[g * n + k + 1], xg + int64_t(ix[g * n + k + 1]) * ldr);
    }
    if (k < n) acc.fma_a(v[g * n + k], xg + int64_t(ix[g * n + k]) * ldr);
  }
  acc.store(bias, out);
}

// ---------------------------------------------------------------------------------------------
// The SpMM driver shared by the three formats.
//
// x (B, cols) goes through panels of w <= 64 samples. xT holds a group of panels, each
// (cols_pad, ldr) transposed, with zero rows from cols to cols_pad (edge blocks and N:M groups
// past the last column read zeros); every thread builds its own copy. Each thread computes its
// rows [bounds[t], bounds[t+1]) in tiles of TileRows rows, for each panel of the group, and
// writes each tile transposed into y (B, rows).
// tile_fn(i0, nr, xT, ldr, w, tile) writes output rows [i0, i0 + nr), bias included, over the
// panel to tile (nr, ldr).
template <int64_t TileRows = kTileRows, class TileFn>
void linear_panels(int64_t rows, int64_t cols, int64_t cols_pad, int64_t B, const float* x,
                   const float* bias, float* y, const std::vector<int64_t>& bounds,
                   TileFn tile_fn) {
  const int T = int(bounds.size()) - 1;
  const int64_t ldr = std::min(kPanel, (B + 15) / 16 * 16);
  const int64_t panel = cols_pad * ldr, npanels = (B + kPanel - 1) / kPanel;
  // Panels transposed together while they fit in kGroupBytes (the L2 of a core holds them).
  const int64_t group = std::max<int64_t>(
      1, std::min<int64_t>(npanels, kGroupBytes / int64_t(sizeof(float) * panel)));
  const int64_t nchunks = (cols_pad + 63) / 64;
  run_items(T, T, [&](int64_t t) {
    // Each thread transposes the panels into its own buffer: no barrier, and no thread reads
    // xT rows out of another core's cache.
    float* xT = aligned_scratch(tls_panel, size_t(group * panel));  // group x (cols_pad, ldr)
    alignas(64) float tile[TileRows * kPanel];                      // (TileRows, ldr)
    for (int64_t p0 = 0; p0 < npanels; p0 += group) {
      const int64_t np = std::min(group, npanels - p0);
      if (bounds[t] == bounds[t + 1]) break;
      // Transpose the panels, 64 columns of x at a time so reads and writes stay in L1.
      for (int64_t c = 0; c < np * nchunks; c++) {
        const int64_t p = c / nchunks, j0 = c % nchunks * 64, b0 = (p0 + p) * kPanel;
        const int64_t w = std::min(kPanel, B - b0);
        const int64_t j1 = std::min(j0 + 64, cols_pad), jx = std::min(j1, cols);
        float* xp = xT + p * panel;
        if (jx > j0) transpose(x + b0 * cols + j0, cols, w, jx - j0, xp + j0 * ldr, ldr);
        for (int64_t j = std::max(j0, jx); j < j1; j++)
          std::fill(xp + j * ldr, xp + j * ldr + w, 0.0f);
      }
      for (int64_t i0 = bounds[t]; i0 < bounds[t + 1]; i0 += TileRows) {
        const int64_t nr = std::min(TileRows, bounds[t + 1] - i0);
        for (int64_t p = 0; p < np; p++) {
          const int64_t b0 = (p0 + p) * kPanel, w = std::min(kPanel, B - b0);
          tile_fn(i0, nr, xT + p * panel, ldr, w, tile);
          transpose(tile, ldr, nr, w, y + b0 * rows + i0, rows);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// SpMV pieces (B < 4).

#ifdef SPRIG_SPARSE_AVX512
inline __m512i load_idx(const uint16_t* p) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512i load_idx(const int32_t* p) {
  return _mm512_loadu_si512(p);
}
inline __m512i load_idx(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512i load_idx(const int32_t* p, __mmask16 m) {
  return _mm512_maskz_loadu_epi32(m, p);
}
using short_rows::first_lanes;
#endif

// sum_k val[k] * x[col[k]] over one CSR row.
template <typename Idx>
float csr_dot(const Idx* col, const float* val, int64_t cnt, const float* x) {
#ifdef SPRIG_SPARSE_AVX512
  // 16-lane gathers from x, which is small enough to stay in L1/L2; two chains.
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= cnt; k += 32) {
    s0 =
        _mm512_fmadd_ps(_mm512_loadu_ps(val + k), _mm512_i32gather_ps(load_idx(col + k), x, 4), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(val + k + 16),
                         _mm512_i32gather_ps(load_idx(col + k + 16), x, 4), s1);
  }
  for (; k < cnt; k += 16) {
    const __mmask16 m = first_lanes(cnt - k);
    const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, load_idx(col + k, m), x, 4);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, val + k), xv, s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#else
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains
  int64_t k = 0;
  for (; k + 4 <= cnt; k += 4) {
    s0 += val[k] * x[col[k]];
    s1 += val[k + 1] * x[col[k + 1]];
    s2 += val[k + 2] * x[col[k + 2]];
    s3 += val[k + 3] * x[col[k + 3]];
  }
  for (; k < cnt; k++) s0 += val[k] * x[col[k]];
  return (s0 + s1) + (s2 + s3);
#endif
}

// Row i of a BSR matrix against one padded sample xp (cols_pad).
template <int BC>
float bsr_dot(const BsrRef& a, int64_t i, const float* xp) {
  const int64_t bc = BC > 0 ? BC : a.bc, bsize = a.br * bc, I = i / a.br, ri = i % a.br;
  const int64_t k0 = a.block_row_ptr[I], k1 = a.block_row_ptr[I + 1];
  const float* v = a.values + ri * bc;  // block k's part of this row: v + k * bsize
  const int32_t* bcol = a.block_col;
  if (BC == 0) {
    float s = 0;
    for (int64_t k = k0; k < k1; k++)
      for (int64_t c = 0; c < bc; c++) s += v[k * bsize + c] * xp[int64_t(bcol[k]) * bc + c];
    return s;
  }
  // A short vector FMA per block (BC lanes), four blocks in flight so that consecutive FMAs do
  // not wait on each other.
  constexpr int L = BC > 0 ? BC : 1;
  float s[4][L] = {};
  int64_t k = k0;
  for (; k + 4 <= k1; k += 4)
    for (int u = 0; u < 4; u++) {
      const float* vb = v + (k + u) * bsize;
      const float* xb = xp + int64_t(bcol[k + u]) * L;
      for (int c = 0; c < L; c++) s[u][c] += vb[c] * xb[c];
    }
  for (; k < k1; k++) {
    const float* vb = v + k * bsize;
    const float* xb = xp + int64_t(bcol[k]) * L;
    for (int c = 0; c < L; c++) s[0][c] += vb[c] * xb[c];
  }
  float sum = 0;
  for (int u = 0; u < 4; u++)
    for (int c = 0; c < L; c++) sum += s[u][c];
  return sum;
}

// Row i of an N:M matrix against one sample x (cols).
float nm_dot(const NmRef& a, int64_t i, const float* x) {
  const int64_t n = a.n, m = a.m, G = (a.cols + m - 1) / m, cnt = G * n;
  const float* v = a.values + i * cnt;    // (G, n)
  const uint8_t* ix = a.index + i * cnt;  // (G, n)
#ifdef SPRIG_SPARSE_AVX512
  if (16 % n == 0) {
    // 16 entries cover 16 / n whole groups: lane l reads column (k + l) / n * m + index.
    alignas(64) int32_t lane[16];
    for (int l = 0; l < 16; l++) lane[l] = int32_t(l / n * m);
    const __m512i lane_off = _mm512_load_si512(lane);
    __m512 s = _mm512_setzero_ps();
    for (int64_t k = 0; k < cnt; k += 16) {
      const __mmask16 msk = first_lanes(cnt - k);
      __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(msk, ix + k));
      idx =
          _mm512_add_epi32(idx, _mm512_add_epi32(lane_off, _mm512_set1_epi32(int32_t(k / n * m))));
      const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), msk, idx, x, 4);
      s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(msk, v + k), xv, s);
    }
    return _mm512_reduce_add_ps(s);
  }
#endif
  float s = 0;
  for (int64_t g = 0; g < G; g++)
    for (int64_t k = 0; k < n; k++) s += v[g * n + k] * x[g * m + ix[g * n + k]];
  return s;
}

template <typename Idx>
void csr_linear_impl(const CsrRef& w, const Idx* col, int64_t B, const float* x, const float* bias,
                     float* y) {
  const int T = threads_for(double(w.nnz) * B + double(w.rows) * B);
  // + i: a row costs something even when empty.
  auto bounds = split_rows(w.rows, T, [&](int64_t i) { return w.row_ptr[i] + i; });
  const float* val = w.values;
  const int32_t* rp = w.row_ptr;
  if (B < 4) {
    run_items(T, T, [&](int64_t t) {
      for (int64_t i = bounds[t]; i < bounds[t + 1]; i++)
        for (int64_t b = 0; b < B; b++)
          y[b * w.rows + i] = (bias ? bias[i] : 0.0f) +
                              csr_dot(col + rp[i], val + rp[i], rp[i + 1] - rp[i], x + b * w.cols);
    });
    return;
  }
  linear_panels<kCsrTileRows>(
      w.rows, w.cols, w.cols, B, x, bias, y, bounds,
      [&](int64_t i0, int64_t nr, const float* xT, int64_t ldr, int64_t wd, float* tile) {
        with_nv(wd, [&](auto nv) {
          csr_tile<decltype(nv)::value>(col, val, rp, i0, nr, w.cols, xT, ldr, wd, bias, tile, ldr,
                                        false);
        });
      });
}

template <int BC>
void bsr_linear_impl(const BsrRef& a, int64_t B, const float* x, const float* bias, float* y) {
  const int64_t nbc = (a.cols + a.bc - 1) / a.bc, cols_pad = nbc * a.bc;
  const int T = threads_for(double(a.nblocks * a.br * a.bc) * B + double(a.rows) * B);
  // Whole block rows per thread, by stored blocks, so that a tile of 16 rows starts on a block
  // row; the row bounds are the block-row bounds times br.
  const int64_t nbr = (a.rows + a.br - 1) / a.br;
  auto bounds = split_rows(nbr, T, [&](int64_t I) { return a.block_row_ptr[I] + I; });
  for (auto& r : bounds) r = std::min(a.rows, r * a.br);
  if (B < 4) {
    // Copy x into a zero-padded (B, cols_pad) so edge blocks read zeros past cols.
    float* xp = aligned_scratch(tls_panel, size_t(B * cols_pad));
    for (int64_t b = 0; b < B; b++) {
      std::copy(x + b * a.cols, x + (b + 1) * a.cols, xp + b * cols_pad);
      std::fill(xp + b * cols_pad + a.cols, xp + (b + 1) * cols_pad, 0.0f);
    }
    run_items(T, T, [&](int64_t t) {
      for (int64_t i = bounds[t]; i < bounds[t + 1]; i++)
        for (int64_t b = 0; b < B; b++)
          y[b * a.rows + i] = (bias ? bias[i] : 0.0f) + bsr_dot<BC>(a, i, xp + b * cols_pad);
    });
    return;
  }
  linear_panels(a.rows, a.cols, cols_pad, B, x, bias, y, bounds,
                [&](int64_t i0, int64_t nr, const float* xT, int64_t ldr, int64_t wd, float* tile) {
                  with_nv(wd, [&](auto nv) {
                    constexpr int NV = decltype(nv)::value;
#ifdef SPRIG_SPARSE_AVX512
                    // Tiles start on a block row (bounds are whole block rows, 16 % br == 0).
                    if (a.br == 2 || a.br == 4) {
                      for (int64_t i = i0; i < i0 + nr; i += a.br) {
                        const int64_t nv_rows = std::min(a.br, i0 + nr - i);
                        float* out = tile + (i - i0) * ldr;
                        if (a.br == 4)
                          bsr_block_rows<NV, 4, BC>(a, i / 4, xT, ldr, wd, bias, nv_rows, out);
                        else
                          bsr_block_rows<NV, 2, BC>(a, i / 2, xT, ldr, wd, bias, nv_rows, out);
                      }
                      return;
                    }
#endif
                    for (int64_t i = i0; i < i0 + nr; i++)
                      bsr_row<NV, BC>(a, i, xT, ldr, wd, bias ? bias[i] : 0.0f,
                                      tile + (i - i0) * ldr);
                  });
                });
}

template <int N, int M>
void nm_linear_impl(const NmRef& a, int64_t B, const float* x, const float* bias, float* y) {
  const int64_t G = (a.cols + a.m - 1) / a.m;
  const int T = threads_for(double(G * a.n) * a.rows * B);
  auto bounds = split_rows(a.rows, T, [](int64_t i) { return i; });  // every row costs the same
  if (B < 4) {
    run_items(T, T, [&](int64_t t) {
      for (int64_t i = bounds[t]; i < bounds[t + 1]; i++)
        for (int64_t b = 0; b < B; b++)
          y[b * a.rows + i] = (bias ? bias[i] : 0.0f) + nm_dot(a, i, x + b * a.cols);
    });
    return;
  }
  linear_panels(a.rows, a.cols, G * a.m, B, x, bias, y, bounds,
                [&](int64_t i0, int64_t nr, const float* xT, int64_t ldr, int64_t wd, float* tile) {
                  with_nv(wd, [&](auto nv) {
                    for (int64_t i = i0; i < i0 + nr; i++)
                      nm_row<decltype(nv)::value, N, M>(a, i, xT, ldr, wd, bias ? bias[i] : 0.0f,
                                                        tile + (i - i0) * ldr);
                  });
                });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points.

void csr_linear(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y) {
  if (B <= 0 || w.rows <= 0) return;
  if (w.narrow())
    csr_linear_impl(w, w.col16, B, x, bias, y);
  else
    csr_linear_impl(w, w.col32, B, x, bias, y);
}

void bsr_linear(const BsrRef& w, int64_t B, const float* x, const float* bias, float* y) {
  if (B <= 0 || w.rows <= 0) return;
  switch (w.bc) {
    case 1:
      bsr_linear_impl<1>(w, B, x, bias, y);
      break;
    case 2:
      bsr_linear_impl<2>(w, B, x, bias, y);
      break;
    case 4:
      bsr_linear_impl<4>(w, B, x, bias, y);
      break;
    case 8:
      bsr_linear_impl<8>(w, B, x, bias, y);
      break;
    case 16:
      bsr_linear_impl<16>(w, B, x, bias, y);
      break;
    default:
      bsr_linear_impl<0>(w, B, x, bias, y);
      break;
  }
}

void nm_linear(const NmRef& w, int64_t B, const float* x, const float* bias, float* y) {
  if (B <= 0 || w.rows <= 0) return;
  if (w.n == 2 && w.m == 4)
    nm_linear_impl<2, 4>(w, B, x, bias, y);
  else
    nm_linear_impl<0, 0>(w, B, x, bias, y);
}

}  // namespace sprig::cpu
