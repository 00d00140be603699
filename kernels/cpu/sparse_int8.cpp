// The sparse int8 Linear: packing, the reference loops, and the AVX-512 VNNI kernels: samples in
// the vector lanes from kGatherBelow samples up, each sample's inputs gathered below.
#include "kernels/cpu/sparse_int8.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "engine/error.h"
#include "kernels/cpu/gemm_int8.h"

#define SPRIG_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

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

// Below this many samples a vector of samples would leave most lanes idle: the kernels gather
// one sample's inputs for 16 blocks (or entries) instead.
constexpr int64_t kGatherBelow = 4;
constexpr int kVectors = 4;  // 16-sample vectors per pass of the lane kernels: 64 samples

thread_local std::vector<uint8_t> tls_x;     // the calling thread's rearranged activations
thread_local std::vector<uint8_t> tls_last;  // its padded copy of the last sample

bool team_pays(int64_t items, int64_t multiply_adds) {
  return !omp_in_parallel() && omp_get_max_threads() > 1 && items > 1 &&
         multiply_adds >= (int64_t(1) << 17);
}

// The masks of the kVectors vectors of samples [b0, b0 + nb).
void lane_masks(int64_t nb, __mmask16* mask) {
  for (int v = 0; v < kVectors; ++v) {
    const int64_t lanes = std::clamp<int64_t>(nb - 16 * v, 0, 16);
    mask[v] = __mmask16((1u << lanes) - 1);
  }
}

// x (B, cols) -> x4 (groups, B, 4): each sample's 4 bytes of a column group side by side, so a
// 64-byte load holds one group for 16 samples; zeros past cols.
void interleave(int64_t B, int64_t cols, const uint8_t* x, uint8_t* x4) {
  const int64_t groups = (cols + 3) / 4, full = cols / 4;
  // Whole groups: a transpose of (B, full) 32-bit words into (full, B), in tiles that stay in
  // L1 on both sides.
  constexpr int64_t kTile = 32;
  for (int64_t b0 = 0; b0 < B; b0 += kTile)
    for (int64_t g0 = 0; g0 < full; g0 += kTile)
      for (int64_t b = b0; b < std::min(B, b0 + kTile); ++b)
        for (int64_t g = g0; g < std::min(full, g0 + kTile); ++g)
          std::memcpy(x4 + (g * B + b) * 4, x + b * cols + 4 * g, 4);
  if (full < groups)  // the last, partial group: zeros past cols
    for (int64_t b = 0; b < B; ++b) {
      uint8_t* dst = x4 + (full * B + b) * 4;
      std::memset(dst, 0, 4);
      std::memcpy(dst, x + b * cols + 4 * full, size_t(cols - 4 * full));
    }
}

// x (B, cols) -> xt (cols, B).
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

// The sums of up to 16 rows (a work item) for 16 * kVectors samples, written to acc (B, rows)
// once all are done: a row's samples are `rows` apart in acc, so storing them row by row would
// touch a cache line (and often a page) per sum; per sample, the item's rows are one line.
struct RowTile {
  alignas(64) int32_t sums[16][16 * kVectors];  // (rows of the item, samples of the pass)

  // Row i of the tile: the vectors s less the zero-point correction of row_sum.
  SPRIG_TARGET_VNNI void put(int i, const __m512i* s, int32_t x_zero, int32_t row_sum) {
    const __m512i correction = _mm512_set1_epi32(x_zero * row_sum);
    for (int v = 0; v < kVectors; ++v)
      _mm512_store_si512(sums[i] + 16 * v, _mm512_sub_epi32(s[v], correction));
  }
  // Rows [r0, r0 + nr) of samples [b0, b0 + nb) into acc.
  void write(int64_t r0, int64_t nr, int64_t b0, int64_t nb, int64_t rows, int32_t* acc) const {
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t i = 0; i < nr; ++i) acc[(b0 + b) * rows + r0 + i] = sums[i][b];
  }
};

// Block rows [R0, R1) for every sample: per stored block, one 64-byte load per 16 samples and
// one vpdpbusd per block row against the broadcast word of its 4 weights.
template <int BR>
SPRIG_TARGET_VNNI void bsr_rows_lanes(const BsrInt8& w, int64_t R0, int64_t R1, int64_t B,
                                      const uint8_t* x4, int32_t x_zero, int32_t* acc) {
  for (int64_t b0 = 0; b0 < B; b0 += 16 * kVectors) {
    const int64_t nb = std::min<int64_t>(16 * kVectors, B - b0);
    __mmask16 mask[kVectors];
    lane_masks(nb, mask);
    RowTile tile;
    for (int64_t R = R0; R < R1; ++R) {
      __m512i s[BR][kVectors];
      for (int i = 0; i < BR; ++i)
        for (int v = 0; v < kVectors; ++v) s[i][v] = _mm512_setzero_si512();
      for (int64_t j = w.block_row_ptr[size_t(R)]; j < w.block_row_ptr[size_t(R) + 1]; ++j) {
        const uint8_t* xg = x4 + (int64_t(w.block_col[size_t(j)]) * B + b0) * 4;
        const int32_t* words = &w.weights[size_t(j * BR)];
        for (int v = 0; v < kVectors; ++v) {
          const __m512i xv = _mm512_maskz_loadu_epi32(mask[v], xg + 64 * v);
          for (int i = 0; i < BR; ++i)
            s[i][v] = _mm512_dpbusd_epi32(s[i][v], xv, _mm512_set1_epi32(words[i]));
        }
      }
      for (int i = 0; i < BR && R * BR + i < w.rows; ++i)
        tile.put(int((R - R0) * BR + i), s[i], x_zero, w.row_sums[size_t(R * BR + i)]);
    }
    tile.write(R0 * BR, std::min(w.rows, R1 * BR) - R0 * BR, b0, nb, w.rows, acc);
  }
}

// Block rows [R0, R1), one sample at a time: the input words of 16 / BR blocks gathered into
// one vector (each repeated for the BR rows of its block), one vpdpbusd against their weights.
template <int BR>
SPRIG_TARGET_VNNI void bsr_rows_gather(const BsrInt8& w, int64_t R0, int64_t R1, int64_t B,
                                       const uint8_t* x, const uint8_t* last, int32_t x_zero,
                                       int32_t* acc) {
  constexpr int kPer = 16 / BR;  // blocks per vector
  // lane k * BR + i reads block k's word
  const __m512i spread =
      BR == 1 ? _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
              : _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* xb = b == B - 1 ? last : x + b * w.cols;
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
        acc[b * w.rows + R * BR + i] = sum - x_zero * w.row_sums[size_t(R * BR + i)];
      }
    }
  }
}

// Rows [r0, r1) for every sample, from xt (cols, B): per stored weight, 16 samples' inputs
// widened to 32-bit lanes and one vpdpwssd against the weight (the product fits its 16 bits).
SPRIG_TARGET_VNNI void csr_rows_lanes(const CsrInt8& w, int64_t r0, int64_t r1, int64_t B,
                                      const uint8_t* xt, int32_t x_zero, int32_t* acc) {
  for (int64_t b0 = 0; b0 < B; b0 += 16 * kVectors) {
    const int64_t nb = std::min<int64_t>(16 * kVectors, B - b0);
    __mmask16 mask[kVectors];
    lane_masks(nb, mask);
    RowTile tile;
    for (int64_t r = r0; r < r1; ++r) {
      __m512i s[kVectors];
      for (int v = 0; v < kVectors; ++v) s[v] = _mm512_setzero_si512();
      for (int64_t j = w.row_ptr[size_t(r)]; j < w.row_ptr[size_t(r) + 1]; ++j) {
        const __m512i wv = _mm512_set1_epi32(w.values[size_t(j)]);  // high half 0 or -1: x's is 0
        const uint8_t* xc = xt + int64_t(w.col[size_t(j)]) * B + b0;
        for (int v = 0; v < kVectors; ++v)
          s[v] = _mm512_dpwssd_epi32(
              s[v], _mm512_maskz_cvtepu8_epi32(0xffff, _mm_maskz_loadu_epi8(mask[v], xc + 16 * v)),
              wv);
      }
      tile.put(int(r - r0), s, x_zero, w.row_sums[size_t(r)]);
    }
    tile.write(r0, r1 - r0, b0, nb, w.rows, acc);
  }
}

// Rows [r0, r1), one sample at a time: 16 stored weights' inputs gathered (4 bytes each, the
// first kept), one vpdpwssd against the weights.
SPRIG_TARGET_VNNI void csr_rows_gather(const CsrInt8& w, int64_t r0, int64_t r1, int64_t B,
                                       const uint8_t* x, const uint8_t* last, int32_t x_zero,
                                       int32_t* acc) {
  const __m512i low_byte = _mm512_set1_epi32(0xff);
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* xb = b == B - 1 ? last : x + b * w.cols;
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
      acc[b * w.rows + r] = sum - x_zero * w.row_sums[size_t(r)];
    }
  }
}

}  // namespace

void bsr_int8_linear(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero, int32_t* acc) {
  SPRIG_CHECK(B >= 0, "bsr_int8_linear: batch ", B);
  if (B == 0 || w.rows == 0) return;
  if (!int8_isa_supported(Int8Isa::Vnni512)) {
    bsr_int8_linear_ref(w, B, x, x_zero, acc);
    return;
  }
  const int64_t block_rows = int64_t(w.block_row_ptr.size()) - 1;
  const int64_t per_item = 16 / w.br;  // block rows per work item: 16 rows
  const int64_t items = (block_rows + per_item - 1) / per_item;
  const bool parallel = team_pays(items, w.blocks() * w.br * 4 * B);
  const bool gather = B < kGatherBelow;
  const uint8_t* xp = x;
  const uint8_t* last = nullptr;
  if (gather) {
    last = padded_last_sample(B, w.cols, x);
  } else {
    std::vector<uint8_t>& x4 = tls_x;  // (groups, B, 4)
    x4.resize(size_t((w.cols + 3) / 4 * B * 4));
    interleave(B, w.cols, x, x4.data());
    xp = x4.data();
  }
#pragma omp parallel for schedule(dynamic, 4) if (parallel)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t R0 = item * per_item, R1 = std::min(block_rows, R0 + per_item);
    if (gather)
      (w.br == 4 ? bsr_rows_gather<4> : bsr_rows_gather<1>)(w, R0, R1, B, xp, last, x_zero, acc);
    else
      (w.br == 4 ? bsr_rows_lanes<4> : bsr_rows_lanes<1>)(w, R0, R1, B, xp, x_zero, acc);
  }
}

void csr_int8_linear(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero, int32_t* acc) {
  SPRIG_CHECK(B >= 0, "csr_int8_linear: batch ", B);
  if (B == 0 || w.rows == 0) return;
  if (!int8_isa_supported(Int8Isa::Vnni512)) {
    csr_int8_linear_ref(w, B, x, x_zero, acc);
    return;
  }
  constexpr int64_t kRows = 16;  // rows per work item
  const int64_t items = (w.rows + kRows - 1) / kRows;
  const bool parallel = team_pays(items, w.nnz() * B);
  const bool gather = B < kGatherBelow;
  const uint8_t* xp = x;
  const uint8_t* last = nullptr;
  if (gather) {
    last = padded_last_sample(B, w.cols, x);
  } else {
    std::vector<uint8_t>& xt = tls_x;  // (cols, B)
    xt.resize(size_t(w.cols * B));
    transpose(B, w.cols, x, xt.data());
    xp = xt.data();
  }
#pragma omp parallel for schedule(dynamic, 4) if (parallel)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t r0 = item * kRows, r1 = std::min(w.rows, r0 + kRows);
    if (gather)
      csr_rows_gather(w, r0, r1, B, xp, last, x_zero, acc);
    else
      csr_rows_lanes(w, r0, r1, B, xp, x_zero, acc);
  }
}

}  // namespace sprig::cpu
