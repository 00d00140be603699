// The sparse int8 Linear: packing, the reference loops, and the AVX-512 VNNI kernels: samples in
// the vector lanes from a few samples up, each sample's inputs gathered below; the sums
// go to an Int8Sink (int32, dequantised or requantised), as gemm_u8s8's do.
#include "kernels/cpu/sparse_int8.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/int8_sink.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"

namespace sprig::cpu {

namespace {

void check_shape(const char* who, int64_t rows, int64_t cols) {
  SPRIG_CHECK(rows >= 0 && cols >= 0, who, ": shape (", rows, ", ", cols, ")");
  SPRIG_CHECK(cols <= (int64_t(1) << 15), who, ": ", cols,
              " columns, above 32768, could overflow the int32 sums");
}

std::vector<int32_t> row_sums_of(int64_t rows, int64_t cols, const int8_t* w) {
  std::vector<int32_t> sums(size_t(rows), 0);  // (rows)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) sums[size_t(r)] += w[r * cols + c];
  return sums;
}

}  // namespace

BsrInt8 bsr_int8_from_dense(int64_t rows, int64_t cols, int64_t br, const int8_t* w) {
  check_shape("bsr_int8_from_dense", rows, cols);
  SPRIG_CHECK(br == 1 || br == 4, "bsr_int8_from_dense: blocks of ", br, " rows, not 1 or 4");
  BsrInt8 a;
  a.rows = rows;
  a.cols = cols;
  a.br = br;
  a.block_row_ptr.push_back(0);
  for (int64_t r0 = 0; r0 < rows; r0 += br) {
    for (int64_t g = 0; g < (cols + 3) / 4; ++g) {
      int8_t block[4][4] = {};  // (br, 4), zero past rows and cols
      bool any = false;
      for (int64_t i = 0; i < br && r0 + i < rows; ++i)
        for (int64_t q = 0; q < 4 && 4 * g + q < cols; ++q) {
          block[i][q] = w[(r0 + i) * cols + 4 * g + q];
          any |= block[i][q] != 0;
        }
      if (!any) continue;
      a.block_col.push_back(int32_t(g));
      for (int64_t i = 0; i < br; ++i) {
        int32_t word = 0;
        std::memcpy(&word, block[i], 4);
        a.weights.push_back(word);
      }
    }
    a.block_row_ptr.push_back(a.blocks());
  }
  a.row_sums = row_sums_of(rows, cols, w);
  return a;
}

CsrInt8 csr_int8_from_dense(int64_t rows, int64_t cols, const int8_t* w) {
  check_shape("csr_int8_from_dense", rows, cols);
  CsrInt8 a;
  a.rows = rows;
  a.cols = cols;
  a.row_ptr.push_back(0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c)
      if (int8_t v = w[r * cols + c]) {
        a.col.push_back(uint16_t(c));
        a.values.push_back(v);
      }
    a.row_ptr.push_back(a.nnz());
  }
  a.row_sums = row_sums_of(rows, cols, w);
  return a;
}

void bsr_int8_linear_ref(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                         int32_t* acc) {
  const int64_t block_rows = int64_t(w.block_row_ptr.size()) - 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t R = 0; R < block_rows; ++R)
      for (int64_t i = 0; i < w.br && R * w.br + i < w.rows; ++i) {
        int64_t s = 0;
        for (int64_t j = w.block_row_ptr[size_t(R)]; j < w.block_row_ptr[size_t(R) + 1]; ++j) {
          int8_t block[4];
          std::memcpy(block, &w.weights[size_t(j * w.br + i)], 4);
          for (int64_t q = 0; q < 4; ++q) {
            const int64_t c = 4 * int64_t(w.block_col[size_t(j)]) + q;
            if (c < w.cols) s += (int64_t(x[b * w.cols + c]) - x_zero) * block[q];
          }
        }
        acc[b * w.rows + R * w.br + i] = int32_t(s);
      }
}

void csr_int8_linear_ref(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                         int32_t* acc) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < w.rows; ++r) {
      int64_t s = 0;
      for (int64_t j = w.row_ptr[size_t(r)]; j < w.row_ptr[size_t(r) + 1]; ++j)
        s += (int64_t(x[b * w.cols + w.col[size_t(j)]]) - x_zero) * w.values[size_t(j)];
      acc[b * w.rows + r] = int32_t(s);
    }
}

namespace {

using detail::Int8Sink;
using detail::store16;

// Below this many samples a vector of samples leaves most lanes idle, and the kernels gather one
// sample's inputs for 16 blocks (or entries) at a time instead; the cost of gathering grows with
// the samples, that of the lanes does not. Measured (bench/RESULTS.md) on 4096 x 4096 and 300 x
// 784 at 90%: the two cross at 4-6 samples for CSR and 1 x 4 blocks, at 2 for 4 x 4 blocks, which
// gather 4 blocks' words per vector where the lanes use each load 4 times.
int64_t gather_below(bool csr, int64_t block_rows) {
  return csr || block_rows == 1 ? 5 : 2;
}
constexpr int kMaxVectors = 4;  // 16-sample vectors per pass of the lane kernels: 64 samples

thread_local std::vector<uint8_t> tls_x;     // the calling thread's rearranged activations
thread_local std::vector<uint8_t> tls_last;  // its padded copy of the last sample

bool team_pays(int64_t items, int64_t multiply_adds) {
  return available_threads() > 1 && items > 1 && multiply_adds >= (int64_t(1) << 17);
}

// Lane k of the result: k x step.
SPRIG_TARGET_VNNI __m512i lane_times(int64_t step) {
  alignas(64) int32_t v[16];
  for (int k = 0; k < 16; ++k) v[k] = int32_t(k * step);
  return _mm512_load_si512(v);
}

// x (B, cols) -> x4 (groups, B, 4): each sample's 4 bytes of a column group side by side, so a
// 64-byte load holds one group for 16 samples; zeros past cols. Whole groups are gathered, 16
// samples' words at a time.
SPRIG_TARGET_VNNI void interleave(int64_t B, int64_t cols, const uint8_t* x, uint8_t* x4) {
  const int64_t groups = (cols + 3) / 4, full = cols / 4;
  const __m512i rows = lane_times(cols);  // byte offsets of 16 samples (cols <= 2^15)
  for (int64_t b0 = 0; b0 < B; b0 += 16) {
    const __mmask16 m = __mmask16((1u << std::min<int64_t>(16, B - b0)) - 1);
    const uint8_t* base = x + b0 * cols;
    for (int64_t g = 0; g < full; ++g)
      _mm512_mask_storeu_epi32(
          x4 + (g * B + b0) * 4, m,
          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, rows, base + 4 * g, 1));
  }
  if (full < groups)  // the last, partial group: zeros past cols
    for (int64_t b = 0; b < B; ++b) {
      uint8_t* dst = x4 + (full * B + b) * 4;
      std::memset(dst, 0, 4);
      std::memcpy(dst, x + b * cols + 4 * full, size_t(cols - 4 * full));
    }
}

// x (B, cols) -> xt (cols, B), in tiles that stay in L1 on both sides.
void transpose(int64_t B, int64_t cols, const uint8_t* x, uint8_t* xt) {
  constexpr int64_t kTile = 64;
  for (int64_t b0 = 0; b0 < B; b0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t b = b0; b < std::min(B, b0 + kTile); ++b)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) xt[c * B + b] = x[b * cols + c];
}

// The gather kernels read 4 bytes at each input they use, up to 3 past the sample's last
// column: inside the next sample for all but the last, which is copied with zeros after it.
const uint8_t* padded_last_sample(int64_t B, int64_t cols, const uint8_t* x) {
  std::vector<uint8_t>& last = tls_last;
  last.assign(size_t(cols + 4), 0);
  if (cols > 0) std::memcpy(last.data(), x + (B - 1) * cols, size_t(cols));
  return last.data();
}

// The sums of up to 16 rows (a work item) for up to 16 * kMaxVectors samples, handed to the sink
// per sample once all are done: a sample's outputs of the item's rows are adjacent, one row's
// outputs of the samples are `rows` apart.
struct RowTile {
  alignas(64) int32_t sums[16][16 * kMaxVectors];  // (rows of the item, samples of the pass)

  // Row i: the NV vectors s less the zero-point correction of row_sum.
  template <int NV>
  SPRIG_TARGET_VNNI void put(int i, const __m512i* s, int32_t x_zero, int32_t row_sum) {
    const __m512i correction = _mm512_set1_epi32(x_zero * row_sum);
    for (int v = 0; v < NV; ++v)
      _mm512_store_si512(sums[i] + 16 * v, _mm512_sub_epi32(s[v], correction));
  }
  // Rows [r0, r0 + nr) of samples [b0, b0 + nb) to out.
  SPRIG_TARGET_VNNI void write(int64_t r0, int64_t nr, int64_t b0, int64_t nb,
                               const Int8Sink& out) const {
    const __mmask16 rows = __mmask16((1u << nr) - 1);
    const __m512i column = lane_times(16 * kMaxVectors);
    for (int64_t b = 0; b < nb; ++b)
      store16(out, b0 + b, r0, rows,
              _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, column, &sums[0][b], 4));
  }
};

template <int NV>
void lane_masks(int64_t nb, __mmask16* mask) {
  for (int v = 0; v < NV; ++v)
    mask[v] = __mmask16((1u << std::clamp<int64_t>(nb - 16 * v, 0, 16)) - 1);
}

// Block rows [R0, R1) for samples [b0, b0 + nb), nb <= 16 NV: per stored block, one 64-byte
// load per 16 samples and one vpdpbusd per block row against the broadcast word of its 4
// weights.
template <int BR, int NV>
SPRIG_TARGET_VNNI void bsr_pass(const BsrInt8& w, int64_t R0, int64_t R1, int64_t B, int64_t b0,
                                int64_t nb, const uint8_t* x4, int32_t x_zero,
                                const Int8Sink& out) {
  __mmask16 mask[NV];
  lane_masks<NV>(nb, mask);
  RowTile tile;
  for (int64_t R = R0; R < R1; ++R) {
    __m512i s[BR][NV];
    for (int i = 0; i < BR; ++i)
      for (int v = 0; v < NV; ++v) s[i][v] = _mm512_setzero_si512();
    for (int64_t j = w.block_row_ptr[size_t(R)]; j < w.block_row_ptr[size_t(R) + 1]; ++j) {
      const uint8_t* xg = x4 + (int64_t(w.block_col[size_t(j)]) * B + b0) * 4;
      const int32_t* words = &w.weights[size_t(j * BR)];
      for (int v = 0; v < NV; ++v) {
        const __m512i xv = _mm512_maskz_loadu_epi32(mask[v], xg + 64 * v);
        for (int i = 0; i < BR; ++i)
          s[i][v] = _mm512_dpbusd_epi32(s[i][v], xv, _mm512_set1_epi32(words[i]));
      }
    }
    for (int i = 0; i < BR && R * BR + i < w.rows; ++i)
      tile.put<NV>(int((R - R0) * BR + i), s[i], x_zero, w.row_sums[size_t(R * BR + i)]);
  }
  tile.write(R0 * BR, std::min(w.rows, R1 * BR) - R0 * BR, b0, nb, out);
}

// Rows [r0, r1) for samples [b0, b0 + nb), from xt (cols, B): per stored weight, 16 samples'
// inputs widened to 32-bit lanes and one vpdpwssd against the weight (the product fits its 16
// bits). (Reading the interleaved layout instead, with the weight in byte c % 4 of a word, needs
// no widening but loads 4x the bytes, and measured 1.6x slower at batch 64.)
template <int NV>
SPRIG_TARGET_VNNI void csr_pass(const CsrInt8& w, int64_t r0, int64_t r1, int64_t B, int64_t b0,
                                int64_t nb, const uint8_t* xt, int32_t x_zero,
                                const Int8Sink& out) {
  __mmask16 mask[NV];
  lane_masks<NV>(nb, mask);
  RowTile tile;
  for (int64_t r = r0; r < r1; ++r) {
    __m512i s[NV];
    for (int v = 0; v < NV; ++v) s[v] = _mm512_setzero_si512();
    for (int64_t j = w.row_ptr[size_t(r)]; j < w.row_ptr[size_t(r) + 1]; ++j) {
      const __m512i wv = _mm512_set1_epi32(w.values[size_t(j)]);  // high half 0 or -1: x's is 0
      const uint8_t* xc = xt + int64_t(w.col[size_t(j)]) * B + b0;
      for (int v = 0; v < NV; ++v)
        s[v] = _mm512_dpwssd_epi32(
            s[v], _mm512_maskz_cvtepu8_epi32(0xffff, _mm_maskz_loadu_epi8(mask[v], xc + 16 * v)),
            wv);
    }
    tile.put<NV>(int(r - r0), s, x_zero, w.row_sums[size_t(r)]);
  }
  tile.write(r0, r1 - r0, b0, nb, out);
}

// Passes of up to 64 samples, each with as many vectors as its samples fill.
template <class Pass>
void for_passes(int64_t B, Pass pass) {
  for (int64_t b0 = 0; b0 < B; b0 += 16 * kMaxVectors) {
    const int64_t nb = std::min<int64_t>(16 * kMaxVectors, B - b0);
    if (nb <= 16)
      pass(b0, nb, std::integral_constant<int, 1>());
    else if (nb <= 32)
      pass(b0, nb, std::integral_constant<int, 2>());
    else
      pass(b0, nb, std::integral_constant<int, 4>());
  }
}

// Block rows [R0, R1), one sample at a time: the input words of 16 / BR blocks gathered into
// one vector (each repeated for the BR rows of its block), one vpdpbusd against their weights.
template <int BR>
SPRIG_TARGET_VNNI void bsr_rows_gather(const BsrInt8& w, int64_t R0, int64_t R1, int64_t B,
                                       const uint8_t* x, const uint8_t* last, int32_t x_zero,
                                       const Int8Sink& out) {
  constexpr int kPer = 16 / BR;  // blocks per vector
  // lane k * BR + i reads block k's word
  const __m512i spread =
      BR == 1 ? _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
              : _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const int64_t r0 = R0 * BR, nr = std::min(w.rows, R1 * BR) - r0;
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* xb = b == B - 1 ? last : x + b * w.cols;
    alignas(64) int32_t sums[16];  // (rows of the item)
    for (int64_t R = R0; R < R1; ++R) {
      __m512i s = _mm512_setzero_si512();
      const int64_t end = w.block_row_ptr[size_t(R) + 1];
      for (int64_t j = w.block_row_ptr[size_t(R)]; j < end; j += kPer) {
        const int64_t n = std::min<int64_t>(kPer, end - j);
        const __mmask16 blocks = __mmask16((1u << n) - 1);
        const __mmask16 lanes = __mmask16((1u << (n * BR)) - 1);
        const __m512i cols = _mm512_maskz_permutexvar_epi32(
            0xffff, spread, _mm512_maskz_loadu_epi32(blocks, &w.block_col[size_t(j)]));
        const __m512i xw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lanes, cols, xb, 4);
        s = _mm512_dpbusd_epi32(s, xw, _mm512_maskz_loadu_epi32(lanes, &w.weights[size_t(j * BR)]));
      }
      alignas(64) int32_t lane[16];
      _mm512_store_si512(lane, s);
      for (int i = 0; i < BR && R * BR + i < w.rows; ++i) {
        int32_t sum = 0;
        for (int k = 0; k < kPer; ++k) sum += lane[k * BR + i];
        sums[(R - R0) * BR + i] = sum - x_zero * w.row_sums[size_t(R * BR + i)];
      }
    }
    const __mmask16 rows = __mmask16((1u << nr) - 1);
    store16(out, b, r0, rows, _mm512_maskz_load_epi32(rows, sums));
  }
}

// Rows [r0, r1), one sample at a time: 16 stored weights' inputs gathered (4 bytes each, the
// first kept), one vpdpwssd against the weights (each product fits its 16 bits).
SPRIG_TARGET_VNNI void csr_rows_gather(const CsrInt8& w, int64_t r0, int64_t r1, int64_t B,
                                       const uint8_t* x, const uint8_t* last, int32_t x_zero,
                                       const Int8Sink& out) {
  const __m512i low_byte = _mm512_set1_epi32(0xff);
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* xb = b == B - 1 ? last : x + b * w.cols;
    alignas(64) int32_t sums[16];  // (rows of the item)
    for (int64_t r = r0; r < r1; ++r) {
      __m512i s = _mm512_setzero_si512();
      const int64_t end = w.row_ptr[size_t(r) + 1];
      for (int64_t j = w.row_ptr[size_t(r)]; j < end; j += 16) {
        const __mmask16 m = __mmask16((1u << std::min<int64_t>(16, end - j)) - 1);
        const __m512i cols =
            _mm512_maskz_cvtepu16_epi32(m, _mm256_maskz_loadu_epi16(m, &w.col[size_t(j)]));
        const __m512i xw = _mm512_and_si512(
            _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, cols, xb, 1), low_byte);
        const __m512i wv =
            _mm512_maskz_cvtepi8_epi32(m, _mm_maskz_loadu_epi8(m, &w.values[size_t(j)]));
        s = _mm512_dpwssd_epi32(s, xw, wv);
      }
      alignas(64) int32_t lane[16];
      _mm512_store_si512(lane, s);
      int32_t sum = 0;
      for (int k = 0; k < 16; ++k) sum += lane[k];
      sums[r - r0] = sum - x_zero * w.row_sums[size_t(r)];
    }
    const __mmask16 rows = __mmask16((1u << (r1 - r0)) - 1);
    store16(out, b, r0, rows, _mm512_maskz_load_epi32(rows, sums));
  }
}

// What a work item reads: B samples' activations x, and where their sums go. For the lane
// kernels x is interleaved into (groups, B, 4) (bsr) or transposed into (cols, B) (csr); for the
// gather kernels it is the samples as they are, with a padded copy of the last one.
struct Samples {
  bool gather = false;
  int64_t B = 0;
  const uint8_t* x = nullptr;
  const uint8_t* last = nullptr;
  Int8Sink out;
};

// Samples [0, B) of x for the kernels, rearranged in the calling thread's scratch.
Samples prepare(bool csr, bool gather, int64_t B, int64_t cols, const uint8_t* x,
                const Int8Sink& out) {
  Samples s;
  s.gather = gather;
  s.B = B;
  s.x = x;
  s.out = out;
  if (gather) {
    s.last = padded_last_sample(B, cols, x);
    return s;
  }
  std::vector<uint8_t>& scratch = tls_x;
  scratch.resize(size_t((cols + 3) / 4 * B * 4));
  if (csr)
    transpose(B, cols, x, scratch.data());
  else
    interleave(B, cols, x, scratch.data());
  s.x = scratch.data();
  return s;
}

// Runs item(i, samples) for the work items (row ranges) [0, items) of a (rows, cols) weight
// of weight_bytes and every sample, on the team when it pays. A split copies one side to every
// core: splitting the rows, the activations (read by all) and the output lines (written by
// all); splitting the samples, the weights. The team splits whichever copies fewer bytes, when
// each thread gets a vector of samples or more: each thread then rearranges its own samples and
// runs every item on them, so its activations and outputs stay in its core's cache, as the
// dense GEMM's do (on this VM a line another core wrote costs ~5x a local one to read;
// bench/RESULTS.md). Else the calling thread rearranges all samples and the team splits the
// items.
template <class Item>
void for_items(bool csr, int64_t block_rows, int64_t items, int64_t multiply_adds,
               int64_t weight_bytes, int64_t B, int64_t rows, int64_t cols, const uint8_t* x,
               const Int8Sink& out, Item item) {
  const bool gather = B < gather_below(csr, block_rows);
  const bool team = team_pays(std::max(items, B / 16), multiply_adds);
  const int64_t T = team ? available_threads() : 1;
  if (team && !gather && B >= 16 * T && weight_bytes <= B * (cols + 4 * rows)) {
    run_items(T, int(T), [&](int64_t t) {
      const int64_t vectors = (B + 15) / 16;  // whole vectors to each thread but the last
      const int64_t b0 = std::min(B, vectors * t / T * 16),
                    b1 = std::min(B, vectors * (t + 1) / T * 16);
      if (b0 < b1) {
        const Samples s = prepare(csr, false, b1 - b0, cols, x + b0 * cols, out.shifted(b0));
        for (int64_t i = 0; i < items; ++i) item(i, s);
      }
    });
    return;
  }
  const Samples s = prepare(csr, gather, B, cols, x, out);
  // Items in groups of 4, claimed as threads come free.
  run_items((items + 3) / 4, int(T), [&](int64_t g) {
    for (int64_t i = 4 * g; i < std::min(items, 4 * g + 4); ++i) item(i, s);
  });
}

// Without VNNI: the reference's sums, each handed to out.
template <class Ref>
void through_reference(int64_t B, int64_t rows, const Int8Sink& out, Ref ref) {
  if (!out.y && !out.q && out.ldc == rows) {
    ref(out.C);
    return;
  }
  std::vector<int32_t> acc(size_t(B * rows));  // (B, rows)
  ref(acc.data());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < rows; ++r) out.store(b, r, acc[size_t(b * rows + r)]);
}

void bsr_product(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                 const Int8Sink& out) {
  SPRIG_CHECK(B >= 0, "bsr_int8_linear: batch ", B);
  if (B == 0 || w.rows == 0) return;
  if (!int8_isa_supported(Int8Isa::Vnni512)) {
    through_reference(B, w.rows, out,
                      [&](int32_t* acc) { bsr_int8_linear_ref(w, B, x, x_zero, acc); });
    return;
  }
  const int64_t block_rows = int64_t(w.block_row_ptr.size()) - 1;
  const int64_t per_item = 16 / w.br;  // block rows per work item: 16 rows
  const int64_t items = (block_rows + per_item - 1) / per_item;
  for_items(false, w.br, items, w.blocks() * w.br * 4 * B, w.blocks() * (4 * w.br + 4), B, w.rows,
            w.cols, x, out, [&](int64_t item, const Samples& s) {
              const int64_t R0 = item * per_item, R1 = std::min(block_rows, R0 + per_item);
              if (s.gather) {
                (w.br == 4 ? bsr_rows_gather<4> : bsr_rows_gather<1>)(w, R0, R1, s.B, s.x, s.last,
                                                                      x_zero, s.out);
                return;
              }
              for_passes(s.B, [&](int64_t b0, int64_t nb, auto vectors) {
                constexpr int NV = decltype(vectors)::value;
                (w.br == 4 ? bsr_pass<4, NV> : bsr_pass<1, NV>)(w, R0, R1, s.B, b0, nb, s.x, x_zero,
                                                                s.out);
              });
            });
}

void csr_product(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                 const Int8Sink& out) {
  SPRIG_CHECK(B >= 0, "csr_int8_linear: batch ", B);
  if (B == 0 || w.rows == 0) return;
  if (!int8_isa_supported(Int8Isa::Vnni512)) {
    through_reference(B, w.rows, out,
                      [&](int32_t* acc) { csr_int8_linear_ref(w, B, x, x_zero, acc); });
    return;
  }
  constexpr int64_t kRows = 16;  // rows per work item
  for_items(true, 1, (w.rows + kRows - 1) / kRows, w.nnz() * B, w.nnz() * 3, B, w.rows, w.cols, x,
            out, [&](int64_t item, const Samples& s) {
              const int64_t r0 = item * kRows, r1 = std::min(w.rows, r0 + kRows);
              if (s.gather) {
                csr_rows_gather(w, r0, r1, s.B, s.x, s.last, x_zero, s.out);
                return;
              }
              for_passes(s.B, [&](int64_t b0, int64_t nb, auto vectors) {
                csr_pass<decltype(vectors)::value>(w, r0, r1, s.B, b0, nb, s.x, x_zero, s.out);
              });
            });
}

}  // namespace

void bsr_int8_linear(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero, int32_t* acc) {
  bsr_product(w, B, x, x_zero, Int8Sink::sums(acc, w.rows));
}

void bsr_int8_linear_dequantize(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, float* y) {
  bsr_product(w, B, x, x_zero, Int8Sink::dequantizing("bsr_int8_linear_dequantize", dq, y, w.rows));
}

void bsr_int8_linear_requantize(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, ActivationQuant out, uint8_t* q) {
  bsr_product(w, B, x, x_zero,
              Int8Sink::requantizing("bsr_int8_linear_requantize", dq, out, q, w.rows));
}

void csr_int8_linear(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero, int32_t* acc) {
  csr_product(w, B, x, x_zero, Int8Sink::sums(acc, w.rows));
}

void csr_int8_linear_dequantize(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, float* y) {
  csr_product(w, B, x, x_zero, Int8Sink::dequantizing("csr_int8_linear_dequantize", dq, y, w.rows));
}

void csr_int8_linear_requantize(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, ActivationQuant out, uint8_t* q) {
  csr_product(w, B, x, x_zero,
              Int8Sink::requantizing("csr_int8_linear_requantize", dq, out, q, w.rows));
}

}  // namespace sprig::cpu
