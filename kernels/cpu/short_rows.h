#pragma once
// Copies of short rows (image rows of 7-64 floats: padding a convolution's input, taking its
// outputs out of a wider grid, storing a vector of a grid into the rows it covers), where a libc
// memcpy / memset call costs as much as the copy itself. With AVX-512 a row is a few masked loads
// and stores. Internal: include only from kernels/cpu.
#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include "kernels/cpu/intrinsics.h"
#endif

namespace sprig::cpu::short_rows {

// A set of the 16 lanes of a vector of 16 positions, lane l as bit l (__mmask16 with AVX-512;
// with AVX2 a vector of 16 positions is two registers of 8).
using LaneMask = uint16_t;

// Lanes [0, n) of a vector, n clipped to [0, 16].
inline LaneMask first_lanes(int64_t n) {
  return n >= 16 ? LaneMask(0xFFFF) : n <= 0 ? LaneMask(0) : LaneMask((1u << n) - 1u);
}

// Lanes [lo, hi) of a vector.
inline LaneMask lanes_between(int64_t lo, int64_t hi) {
  return LaneMask(first_lanes(hi) & ~first_lanes(lo));
}

// A wide grid holds output rows Q long at a pitch of Wph >= Q: grid position i = row * Wph + q
// is output i - row * (Wph - Q) when q < Q, and no output otherwise. Convolutions computed on
// such a grid (every tap then reads one contiguous run) store each vector of 16 positions
// [v, v + 16) from its register into the output rows it covers, one masked store per row:
// store(shift, lanes) is called for each grid row in [0, rows) the vector meets (at most
// 16 / Wph + 2), and lane l goes to output v + l + shift.
template <typename Store>
inline void grid_vector_stores(int64_t v, int64_t Wph, int64_t Q, int64_t rows,
                               const Store& store) {
  for (int64_t row = v / Wph; row < rows && row * Wph < v + 16; ++row) {
    const int64_t lo = std::max(row * Wph, v) - v, hi = std::min(row * Wph + Q, v + 16) - v;
    if (lo < hi) store(-row * (Wph - Q), lanes_between(lo, hi));
  }
}

// dst[0, n) = src[0, n), or max(0, src) when relu (NaN stays NaN, as relu_forward).
inline void copy_row(float* dst, const float* src, int64_t n, bool relu) {
#if defined(__AVX512F__)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_lanes(n - i);
    __m512 v = _mm512_maskz_loadu_ps(m, src + i);
    // max(v, 0) with v first gives 0 for v <= 0 and v otherwise, NaN included.
    if (relu) v = _mm512_maskz_max_ps(0xFFFF, _mm512_setzero_ps(), v);
    _mm512_mask_storeu_ps(dst + i, m, v);
  }
#else
  if (!relu) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i] <= 0.0f ? 0.0f : src[i];
#endif
}

// dst[0, n) = 0.
inline void zero_row(float* dst, int64_t n) {
#if defined(__AVX512F__)
  for (int64_t i = 0; i < n; i += 16)
    _mm512_mask_storeu_ps(dst + i, first_lanes(n - i), _mm512_setzero_ps());
#else
  std::fill(dst, dst + n, 0.0f);
#endif
}

}  // namespace sprig::cpu::short_rows
