// The 1 x 4 block int8 Linear: packing, the reference loop and the AVX-512 VNNI kernel.
#include "kernels/cpu/sparse_int8.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "engine/error.h"
#include "kernels/cpu/gemm_int8.h"

namespace sprig::cpu {

Bsr14Int8 bsr14_int8_from_dense(int64_t rows, int64_t cols, const int8_t* w) {
  SPRIG_CHECK(rows >= 0 && cols >= 0, "bsr14_int8_from_dense: shape (", rows, ", ", cols, ")");
  // As gemm_int8's K: the sums and the zero-point correction stay inside int32 up to 2^15.
  SPRIG_CHECK(cols <= (int64_t(1) << 15), "bsr14_int8_from_dense: ", cols,
              " columns, above 32768, could overflow the int32 sums");
  Bsr14Int8 a;
  a.rows = rows;
  a.cols = cols;
  a.row_ptr.push_back(0);
  for (int64_t r = 0; r < rows; ++r) {
    int32_t sum = 0;
    for (int64_t g = 0; g < (cols + 3) / 4; ++g) {
      int8_t block[4] = {0, 0, 0, 0};
      bool any = false;
      for (int64_t q = 0; q < 4 && 4 * g + q < cols; ++q) {
        block[q] = w[r * cols + 4 * g + q];
        any |= block[q] != 0;
        sum += block[q];
      }
      if (!any) continue;
      int32_t word = 0;
      std::memcpy(&word, block, 4);
      a.block_col.push_back(int32_t(g));
      a.weights.push_back(word);
    }
    a.row_sums.push_back(sum);
    a.row_ptr.push_back(a.blocks());
  }
  return a;
}

void bsr14_int8_linear_ref(const Bsr14Int8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                           int32_t* acc) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < w.rows; ++r) {
      int64_t s = 0;
      for (int64_t j = w.row_ptr[size_t(r)]; j < w.row_ptr[size_t(r) + 1]; ++j) {
        int8_t block[4];
        std::memcpy(block, &w.weights[size_t(j)], 4);
        for (int64_t q = 0; q < 4; ++q) {
          const int64_t c = 4 * int64_t(w.block_col[size_t(j)]) + q;
          if (c < w.cols) s += (int64_t(x[b * w.cols + c]) - x_zero) * block[q];
        }
      }
      acc[b * w.rows + r] = int32_t(s);
    }
}

namespace {

thread_local std::vector<uint8_t> tls_x4;  // the calling thread's interleaved activations

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

// Output rows [r0, r1) for every sample: per stored block, one broadcast of its 4 weights and
// one vpdpbusd per 16 samples.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void rows_vnni(
    const Bsr14Int8& w, int64_t r0, int64_t r1, int64_t B, const uint8_t* x4, int32_t x_zero,
    int32_t* acc) {
  constexpr int kVectors = 4;  // 64 samples per pass
  alignas(64) int32_t out[16 * kVectors];
  for (int64_t b0 = 0; b0 < B; b0 += 16 * kVectors) {
    const int64_t nb = std::min<int64_t>(16 * kVectors, B - b0);
    __mmask16 mask[kVectors];
    for (int v = 0; v < kVectors; ++v) {
      const int64_t lanes = std::clamp<int64_t>(nb - 16 * v, 0, 16);
      mask[v] = __mmask16((1u << lanes) - 1);
    }
    for (int64_t r = r0; r < r1; ++r) {
      __m512i s[kVectors];
      for (int v = 0; v < kVectors; ++v) s[v] = _mm512_setzero_si512();
      for (int64_t j = w.row_ptr[size_t(r)]; j < w.row_ptr[size_t(r) + 1]; ++j) {
        const __m512i wv = _mm512_set1_epi32(w.weights[size_t(j)]);
        const uint8_t* xg = x4 + (int64_t(w.block_col[size_t(j)]) * B + b0) * 4;
        for (int v = 0; v < kVectors; ++v)
          s[v] = _mm512_dpbusd_epi32(s[v], _mm512_maskz_loadu_epi32(mask[v], xg + 64 * v), wv);
      }
      const __m512i correction = _mm512_set1_epi32(x_zero * w.row_sums[size_t(r)]);
      for (int v = 0; v < kVectors; ++v)
        _mm512_store_si512(out + 16 * v, _mm512_sub_epi32(s[v], correction));
      for (int64_t i = 0; i < nb; ++i) acc[(b0 + i) * w.rows + r] = out[i];
    }
  }
}

}  // namespace

void bsr14_int8_linear(const Bsr14Int8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                       int32_t* acc) {
  SPRIG_CHECK(B >= 0, "bsr14_int8_linear: batch ", B);
  if (B == 0 || w.rows == 0) return;
  if (!int8_isa_supported(Int8Isa::Vnni512)) {
    bsr14_int8_linear_ref(w, B, x, x_zero, acc);
    return;
  }
  std::vector<uint8_t>& x4 = tls_x4;
  x4.resize(size_t((w.cols + 3) / 4 * B * 4));
  interleave(B, w.cols, x, x4.data());
  const uint8_t* xp = x4.data();
  constexpr int64_t kChunk = 16;  // rows per work item
  const int64_t chunks = (w.rows + kChunk - 1) / kChunk;
  const bool parallel = !omp_in_parallel() && omp_get_max_threads() > 1 && chunks > 1 &&
                        w.blocks() * B >= (int64_t(1) << 15);
#pragma omp parallel for schedule(dynamic, 4) if (parallel)
  for (int64_t c = 0; c < chunks; ++c)
    rows_vnni(w, c * kChunk, std::min(w.rows, (c + 1) * kChunk), B, xp, x_zero, acc);
}

}  // namespace sprig::cpu
