#pragma once
// Pieces shared by the sparse kernel files (sparse_linear.cpp, sparse_chain.cpp,
// sparse_conv.cpp): the thread split, the panel helpers, the CSR row tile and the register
// transposes. Internal: include only from kernels/cpu.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/sparse.h"
#include "kernels/cpu/threads.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include "kernels/cpu/intrinsics.h"
#define SPRIG_SPARSE_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPRIG_SPARSE_AVX2 1
#endif

namespace sprig::cpu::sparse_detail {

constexpr int64_t kPanel = 64;  // samples per SpMM panel: four 16-float vectors

// Threads for a kernel doing about `work` multiply-adds: one inside another kernel's item (the
// caller already splits the work) or when the job is too small to pay for waking the threads.
inline int threads_for(double work) {
  return work < 32768.0 ? 1 : available_threads();
}

// Row boundaries (T + 1) giving each thread about the same work; prefix(i) is the work of rows
// [0, i), non-decreasing.
template <class Prefix>
std::vector<int64_t> split_rows(int64_t rows, int T, Prefix prefix) {
  std::vector<int64_t> bounds(T + 1, rows);
  bounds[0] = 0;
  const double total = double(prefix(rows));
  for (int t = 1; t < T; t++) {
    const double target = total * t / T;
    int64_t lo = bounds[t - 1], hi = rows;  // first row i with prefix(i) >= target
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (double(prefix(mid)) < target)
        lo = mid + 1;
      else
        hi = mid;
    }
    bounds[t] = lo;
  }
  return bounds;
}

// A 64-byte aligned scratch area of n floats from a caller-owned buffer that is reused across
// calls (so a steady stream of same-shaped calls does not reach malloc).
inline float* aligned_scratch(std::vector<float>& buf, size_t n) {
  if (buf.size() < n + 16) buf.resize(n + 16);
  auto p = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - p % 64) % 64) / sizeof(float);
}

// Calls f(std::integral_constant<int, NV>{}) with NV = ceil(w / 16), for 1 <= w <= 64.
template <class F>
void with_nv(int64_t w, F&& f) {
  switch ((w + 15) / 16) {
    case 1:
      f(std::integral_constant<int, 1>{});
      break;
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    case 3:
      f(std::integral_constant<int, 3>{});
      break;
    default:
      f(std::integral_constant<int, 4>{});
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// One output row over a panel of w <= 16 * NV samples.

#ifdef SPRIG_SPARSE_AVX512
// Two sets of NV accumulators, used by alternate nonzeros: an FMA takes 4 cycles and two issue
// per cycle, so one set of four would leave the FMA units half idle.
template <int NV>
struct RowAcc {
  __m512 a[NV], b[NV];
  __mmask16 tail;  // lanes of the last vector that are inside the panel
  explicit RowAcc(int64_t w) {
    for (int q = 0; q < NV; q++) a[q] = b[q] = _mm512_setzero_ps();
    const int64_t rem = w - 16 * (NV - 1);  // 1..16
    tail = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
  }
  void fma_a(float v, const float* x) {
    const __m512 vv = _mm512_set1_ps(v);
    for (int q = 0; q < NV - 1; q++) a[q] = _mm512_fmadd_ps(vv, _mm512_loadu_ps(x + 16 * q), a[q]);
    a[NV - 1] = _mm512_fmadd_ps(vv, _mm512_maskz_loadu_ps(tail, x + 16 * (NV - 1)), a[NV - 1]);
  }
  void fma_b(float v, const float* x) {
    const __m512 vv = _mm512_set1_ps(v);
    for (int q = 0; q < NV - 1; q++) b[q] = _mm512_fmadd_ps(vv, _mm512_loadu_ps(x + 16 * q), b[q]);
    b[NV - 1] = _mm512_fmadd_ps(vv, _mm512_maskz_loadu_ps(tail, x + 16 * (NV - 1)), b[NV - 1]);
  }
  // a = out (partial sums of an earlier column block), b = 0.
  void load(const float* out) {
    for (int q = 0; q < NV - 1; q++) a[q] = _mm512_loadu_ps(out + 16 * q);
    a[NV - 1] = _mm512_maskz_loadu_ps(tail, out + 16 * (NV - 1));
  }
  void store_sum(float* out) {
    for (int q = 0; q < NV - 1; q++) _mm512_storeu_ps(out + 16 * q, _mm512_add_ps(a[q], b[q]));
    _mm512_mask_storeu_ps(out + 16 * (NV - 1), tail, _mm512_add_ps(a[NV - 1], b[NV - 1]));
  }
  void store(float bias, float* out) {
    const __m512 bv = _mm512_set1_ps(bias);
    for (int q = 0; q < NV - 1; q++)
      _mm512_storeu_ps(out + 16 * q, _mm512_add_ps(_mm512_add_ps(a[q], b[q]), bv));
    _mm512_mask_storeu_ps(out + 16 * (NV - 1), tail,
                          _mm512_add_ps(_mm512_add_ps(a[NV - 1], b[NV - 1]), bv));
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
// Lanes [0, n) of an 8-float vector (none for n <= 0, all for n >= 8), for maskload / maskstore.
inline __m256i first8(int64_t n) {
  const int64_t c = std::min<int64_t>(std::max<int64_t>(n, 0), 8);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(c)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// AVX2: each vector of 16 samples is two registers, and there is one chain (a), not two: 2 * NV
// independent accumulators already cover the FMA latency, and a second set would not fit the 16
// registers. The last vector's lanes beyond the panel are masked off on every load (maskload
// never touches them). The loops are unrolled so that GCC keeps the array in registers.
template <int NV>
struct RowAcc {
  static constexpr int U = 2 * NV;
  __m256 a[U];
  __m256i tail_lo, tail_hi;  // lanes of the last vector's two halves inside the panel
  explicit RowAcc(int64_t w) {
#pragma GCC unroll 8
    for (int u = 0; u < U; u++) a[u] = _mm256_setzero_ps();
    const int64_t rem = w - 16 * (NV - 1);  // 1..16
    tail_lo = first8(rem);
    tail_hi = first8(rem - 8);
  }
  void fma_a(float v, const float* x) {
    const __m256 vv = _mm256_set1_ps(v);
#pragma GCC unroll 8
    for (int u = 0; u < U - 2; u++) a[u] = _mm256_fmadd_ps(vv, _mm256_loadu_ps(x + 8 * u), a[u]);
    a[U - 2] = _mm256_fmadd_ps(vv, _mm256_maskload_ps(x + 8 * (U - 2), tail_lo), a[U - 2]);
    a[U - 1] = _mm256_fmadd_ps(vv, _mm256_maskload_ps(x + 8 * (U - 1), tail_hi), a[U - 1]);
  }
  void fma_b(float v, const float* x) {
    fma_a(v, x);
  }
  // a = out (partial sums of an earlier column block).
  void load(const float* out) {
#pragma GCC unroll 8
    for (int u = 0; u < U - 2; u++) a[u] = _mm256_loadu_ps(out + 8 * u);
    a[U - 2] = _mm256_maskload_ps(out + 8 * (U - 2), tail_lo);
    a[U - 1] = _mm256_maskload_ps(out + 8 * (U - 1), tail_hi);
  }
  void store_sum(float* out) {
    store(0.0f, out);
  }
  void store(float bias, float* out) {
    const __m256 bv = _mm256_set1_ps(bias);
#pragma GCC unroll 8
    for (int u = 0; u < U - 2; u++) _mm256_storeu_ps(out + 8 * u, _mm256_add_ps(a[u], bv));
    _mm256_maskstore_ps(out + 8 * (U - 2), tail_lo, _mm256_add_ps(a[U - 2], bv));
    _mm256_maskstore_ps(out + 8 * (U - 1), tail_hi, _mm256_add_ps(a[U - 1], bv));
  }
};
#else
// Portable version: plain loops the compiler vectorizes.
template <int NV>
struct RowAcc {
  float a[16 * NV];
  int64_t w;
  explicit RowAcc(int64_t w_) : w(w_) {
    for (int64_t j = 0; j < 16 * NV; j++) a[j] = 0.0f;
  }
  void fma_a(float v, const float* x) {
    for (int64_t j = 0; j < w; j++) a[j] += v * x[j];
  }
  void fma_b(float v, const float* x) { fma_a(v, x); }
  void load(const float* out) {
    for (int64_t j = 0; j < w; j++) a[j] = out[j];
  }
  void store_sum(float* out) {
    for (int64_t j = 0; j < w; j++) out[j] = a[j];
  }
  void store(float bias, float* out) {
    for (int64_t j = 0; j < w; j++) out[j] = a[j] + bias;
  }
};
#endif

// out (w) = bias + sum_k val[k] * rhs[col[k], 0:w]; rhs (cols, ldr).
template <int NV, typename Idx>
void csr_row(const Idx* col, const float* val, int64_t cnt, const float* rhs, int64_t ldr,
             int64_t w, float bias, float* out) {
  RowAcc<NV> acc(w);
  int64_t k = 0;
  for (; k + 1 < cnt; k += 2) {
    acc.fma_a(val[k], rhs + int64_t(col[k]) * ldr);
    acc.fma_b(val[k + 1], rhs + int64_t(col[k + 1]) * ldr);
  }
  if (k < cnt) acc.fma_a(val[k], rhs + int64_t(col[k]) * ldr);
  acc.store(bias, out);
}

// Output rows [i0, i0 + nr) (nr <= kCsrTileRows) over a panel of w samples, bias (and ReLU when
// relu) included, into tile (nr, ldt).
// The columns are walked in blocks of kColBlock: the xT rows of one block (kColBlock x 256 bytes
// at 64 samples) and the tile stay in L1 while every row of the tile takes its entries in that
// block, so each xT row fetched from L2 feeds several rows instead of one. A row's partial sums
// wait in the tile between blocks. The blocks are the same for every tile, so the order each
// output is summed in does not depend on where the tiles (threads) start. Entries are taken in
// stored order; unsorted columns stay correct (a block then just stops early).
constexpr int64_t kCsrTileRows = 64;
constexpr int64_t kColBlock = 192;

template <int NV, typename Idx>
void csr_tile(const Idx* col, const float* val, const int32_t* rp, int64_t i0, int64_t nr,
              int64_t cols, const float* rhs, int64_t ldr, int64_t w, const float* bias,
              float* tile, int64_t ldt, bool relu) {
  int64_t cur[kCsrTileRows];
  for (int64_t r = 0; r < nr; r++) {
    cur[r] = rp[i0 + r];
    std::fill(tile + r * ldt, tile + r * ldt + w, 0.0f);
  }
  for (int64_t c0 = 0; c0 < cols; c0 += kColBlock) {
    const int64_t c1 = c0 + kColBlock >= cols ? INT64_MAX : c0 + kColBlock;
    for (int64_t r = 0; r < nr; r++) {
      int64_t k = cur[r];
      const int64_t end = rp[i0 + r + 1];
      if (k == end || int64_t(col[k]) >= c1) continue;
      RowAcc<NV> acc(w);
      acc.load(tile + r * ldt);
      for (;;) {
        acc.fma_a(val[k], rhs + int64_t(col[k]) * ldr);
        if (++k == end || int64_t(col[k]) >= c1) break;
        acc.fma_b(val[k], rhs + int64_t(col[k]) * ldr);
        if (++k == end || int64_t(col[k]) >= c1) break;
      }
      acc.store_sum(tile + r * ldt);
      cur[r] = k;
    }
  }
  if (bias)
    for (int64_t r = 0; r < nr; r++) {
      const float bv = bias[i0 + r];
      for (int64_t b = 0; b < w; b++) tile[r * ldt + b] += bv;
    }
  if (relu)  // as relu_forward: NaN passes through
    for (int64_t r = 0; r < nr; r++)
      for (int64_t b = 0; b < w; b++)
        tile[r * ldt + b] = tile[r * ldt + b] <= 0.0f ? 0.0f : tile[r * ldt + b];
}

#ifdef SPRIG_SPARSE_AVX512
// Register q of the 16 x 16 transpose below holds column kTransposedCol[q] of its input.
inline constexpr int kTransposedCol[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};

// r (16 vectors) transposed in registers, 64 shuffles: afterwards r[q] holds lane
// kTransposedCol[q] of every input vector (lane i from r[i]).
inline void transpose16_regs(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[4 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
    r[8 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
  }
}

// out (16, ldo) = in (16, ldi) transposed, in registers: 16 loads, 64 shuffles, 16 stores.
inline void transpose16(const float* in, int64_t ldi, float* out, int64_t ldo) {
  __m512 r[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(in + i * ldi);
  transpose16_regs(r);
  for (int q = 0; q < 16; q++) _mm512_storeu_ps(out + kTransposedCol[q] * ldo, r[q]);
}
#endif

#ifdef SPRIG_SPARSE_AVX2
// r (8 vectors) transposed in registers, 24 shuffles: afterwards r[q] holds lane q of every
// input vector (lane i from r[i]).
inline void transpose8_regs(__m256 (&r)[8]) {
  __m256 t[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {
    r[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm256_permute2f128_ps(r[i], r[4 + i], 0x20);
    t[4 + i] = _mm256_permute2f128_ps(r[i], r[4 + i], 0x31);
  }
  for (int i = 0; i < 8; i++) r[i] = t[i];
}
#endif

// out (n, ldo) = in (m, ldi) transposed (out[j, i] = in[i, j]), 16 x 16 blocks in registers
// where the AVX-512 path is built, 8 x 8 with AVX2.
inline void transpose(const float* in, int64_t ldi, int64_t m, int64_t n, float* out, int64_t ldo) {
  int64_t i0 = 0;
#ifdef SPRIG_SPARSE_AVX512
  for (; i0 + 16 <= m; i0 += 16) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) transpose16(in + i0 * ldi + j, ldi, out + j * ldo + i0, ldo);
    for (int64_t i = i0; i < i0 + 16; i++)
      for (int64_t jj = j; jj < n; jj++) out[jj * ldo + i] = in[i * ldi + jj];
  }
#elif defined(SPRIG_SPARSE_AVX2)
  for (; i0 + 8 <= m; i0 += 8) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(in + (i0 + i) * ldi + j);
      transpose8_regs(r);
      for (int q = 0; q < 8; q++) _mm256_storeu_ps(out + (j + q) * ldo + i0, r[q]);
    }
    for (int64_t i = i0; i < i0 + 8; i++)
      for (int64_t jj = j; jj < n; jj++) out[jj * ldo + i] = in[i * ldi + jj];
  }
#endif
  for (int64_t i = i0; i < m; i++)
    for (int64_t j = 0; j < n; j++) out[j * ldo + i] = in[i * ldi + j];
}

}  // namespace sprig::cpu::sparse_detail
