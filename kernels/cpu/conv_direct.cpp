// Direct float convolution: no im2col, no gemm.
//
// A band of output rows [p0, p1) of one sample is computed on a "wide" grid: the sample's
// input rows the band reads are copied once into zero-padded planes xp (C, Hb, Wp), Wp = W +
// 2 * pad, and output pixel (p, q) is given the flat position i = (p - p0) * Wp + q. Tap (c, r,
// s) of every position then reads xp at c * Hb * Wp + i + r * dilation * Wp + s * dilation: a
// contiguous run of positions reads a contiguous run of input, so 16 positions are one vector
// load, whatever the row width. Positions with q >= Q (the Wp - Q columns of every row that
// straddle the right and left borders) are computed and thrown away: the kernel wastes a
// fraction 1 - Q / Wp of its multiply-adds (e.g. 12% on a 28-wide image with a 5x5 kernel),
// where im2col + gemm copies every input value R x S times and runs a gemm whose M (the output
// channels: 6 or 16 in LeNet-5 and cnn2) is too small to fill its register tile.
// A stride st > 1 splits the padded input into st x st phase planes (phase (a, b) holds rows
// a::st and columns b::st), as csr_conv2d does (sparse_conv.cpp): each tap reads one phase,
// and on a grid ceil(Wp / st) wide it is again a contiguous run.
//
// The register tile is KB output channels x V vectors of 16 positions: per tap, V loads, KB
// broadcast weights and KB x V fused multiply-adds, so 24 accumulators keep both FMA ports
// busy. Accumulators start at the bias, and each vector is stored from its register straight
// into the output rows it covers, its border lanes masked off (with the ReLU, when asked): a
// wide scratch and a copy of it cost 15% of LeNet-5's forward in stores.
// With AVX2 (16 registers of 8 floats) a vector of 16 positions is two registers, and a tile
// is at most 6 channels x 1 vector (12 accumulators) or 1-2 channels x 2-3 vectors; everything
// else, the band's layout and its stores, is the same.
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/asan.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/short_rows.h"
#include "kernels/error.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define SPRIG_CONV_DIRECT 1
#include <immintrin.h>
#endif

namespace sprig::cpu {

#if defined(SPRIG_CONV_DIRECT)
namespace {
using short_rows::copy_row;
using short_rows::LaneMask;
using short_rows::zero_row;

#if defined(__AVX512F__)
constexpr int kMaxChannels = 8;  // KB: output channels of one register tile
constexpr int kMaxVectors = 4;   // V: vectors of 16 positions of one register tile
constexpr int kRegisters = 32;
constexpr int kRegistersPerVector = 1;
#else
constexpr int kMaxChannels = 6;
constexpr int kMaxVectors = 3;
constexpr int kRegisters = 16;
constexpr int kRegistersPerVector = 2;
#endif

// One band's geometry on the wide grid.
struct Band {
  int64_t C, K, CRS, RS;
  int64_t plane;       // floats of one input channel in xp (its st x st phases)
  const int64_t* tap;  // (R * S) offset of tap (r, s) from a position (r*d*Wp + s*d at stride 1)
  int64_t Wph;         // a row of the grid
  const float* w;      // (K, C*R*S) packed by conv2d_direct_pack: block k0's (C, R*S, kb)
  const float* b;      // (K) or null
  bool relu;
  // Where vector j's lanes (positions 16 j ..) go: for e in [first[j], first[j + 1]), lanes
  // mask[e] to y + k * PQ + delta[e] + 16 j (a vector straddles up to 16 / Wph + 2 rows).
  const int64_t* first;
  const int64_t* delta;
  const LaneMask* mask;
  float* y;  // (K, P, Q) one sample's output
  int64_t PQ;
};

#if defined(__AVX512F__)
// A vector of 16 grid positions: one register.
struct Vec16 {
  __m512 v;
  static Vec16 set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  // acc + w * x
  static Vec16 fma(Vec16 w, Vec16 x, Vec16 acc) { return {_mm512_fmadd_ps(w.v, x.v, acc.v)}; }
  // max(0, v): NaN (the second operand) passes through, as relu_forward.
  Vec16 relu() const { return {_mm512_maskz_max_ps(0xFFFF, _mm512_setzero_ps(), v)}; }
  void store(float* p, LaneMask m) const { _mm512_mask_storeu_ps(p, m, v); }
};
#else
// With AVX2, two registers of 8. A half that a row border splits is stored by maskstore.
struct Vec16 {
  __m256 lo, hi;
  static Vec16 set1(float x) {
    const __m256 b = _mm256_set1_ps(x);
    return {b, b};
  }
  static Vec16 load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static Vec16 fma(Vec16 w, Vec16 x, Vec16 acc) {
    return {_mm256_fmadd_ps(w.lo, x.lo, acc.lo), _mm256_fmadd_ps(w.hi, x.hi, acc.hi)};
  }
  Vec16 relu() const {
    return {_mm256_max_ps(_mm256_setzero_ps(), lo), _mm256_max_ps(_mm256_setzero_ps(), hi)};
  }
  void store(float* p, LaneMask m) const {
    store_half(p, m & 0xFFu, lo);
    store_half(p + 8, unsigned(m) >> 8, hi);
  }
  static void store_half(float* p, unsigned m8, __m256 v) {
    if (m8 == 0xFFu) {
      _mm256_storeu_ps(p, v);
    } else if (m8 != 0u) {  // the lanes of m8 as the sign bits maskstore reads
      const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
      const __m256i lanes = _mm256_and_si256(_mm256_set1_epi32(int(m8)), bit);
      _mm256_maskstore_ps(p, _mm256_cmpeq_epi32(lanes, bit), v);
    }
  }
};
#endif

// Outputs k0..k0+KB-1 at positions i0..i0+16V-1. The loops over the tile are unrolled so that
// GCC keeps acc in registers (with AVX2, rolled, it stored the array to the stack after every
// FMA, as it had in gemm's AVX2 micro-kernel). With FIXED = R (an R x R kernel at stride 1,
// dilation 1) the taps are unrolled too: each input load is a row pointer plus a constant, each
// weight a constant past the channel's (R*S, KB) block, and there is no tap table to read (on
// AVX2 the table's load and the loop took 6 of the 26 instructions a tap of cnn2's 3x3 cost).
template <int KB, int V, int FIXED>
void tile(const Band& g, const float* xp, int64_t k0, int64_t i0) {
  Vec16 acc[KB][V];
#pragma GCC unroll 8
  for (int kb = 0; kb < KB; ++kb) {
    const Vec16 init = Vec16::set1(g.b ? g.b[k0 + kb] : 0.0f);
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[kb][v] = init;
  }
  // One tap: V input vectors at xt, KB weights at wt.
  auto tap = [&acc](const float* xt, const float* wt) {
    Vec16 xv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) xv[v] = Vec16::load(xt + 16 * v);
#pragma GCC unroll 8
    for (int kb = 0; kb < KB; ++kb) {
      const Vec16 wv = Vec16::set1(wt[kb]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[kb][v] = Vec16::fma(wv, xv[v], acc[kb][v]);
    }
  };
  const float* w = g.w + k0 * g.CRS;  // (C, R*S, KB): this tile's block
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = xp + c * g.plane + i0;
    const float* wc = w + c * g.RS * KB;  // (R*S, KB)
    if constexpr (FIXED > 0) {
#pragma GCC unroll 8
      for (int r = 0; r < FIXED; ++r) {
        const float* xr = xc + r * g.Wph;
#pragma GCC unroll 8
        for (int t = 0; t < FIXED; ++t) tap(xr + t, wc + (r * FIXED + t) * KB);
      }
    } else {
      for (int64_t t = 0; t < g.RS; ++t) tap(xc + g.tap[t], wc + t * KB);
    }
  }
  // Straight from registers to the output rows, the border columns masked off.
  const int64_t j0 = i0 / 16;
#pragma GCC unroll 8
  for (int kb = 0; kb < KB; ++kb) {
    float* yk = g.y + (k0 + kb) * g.PQ + i0;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const Vec16 out = g.relu ? acc[kb][v].relu() : acc[kb][v];
      for (int64_t e = g.first[j0 + v]; e < g.first[j0 + v + 1]; ++e)
        out.store(yk + g.delta[e] + 16 * v, g.mask[e]);
    }
  }
}

using TileFn = void (*)(const Band&, const float*, int64_t, int64_t);

template <int FIXED, int KB, int... Vs>
constexpr std::array<TileFn, sizeof...(Vs)> tiles_of(std::integer_sequence<int, Vs...>) {
  return {&tile<KB, Vs + 1, FIXED>...};
}
template <int FIXED, int... KBs>
constexpr std::array<std::array<TileFn, kMaxVectors>, sizeof...(KBs)> tile_table(
    std::integer_sequence<int, KBs...>) {
  return {tiles_of<FIXED, KBs + 1>(std::make_integer_sequence<int, kMaxVectors>{})...};
}
// kTiles*[KB - 1][V - 1]: any kernel; 3x3 and 5x5 at stride 1, dilation 1 (ResNet's, cnn2's and
// LeNet-5's).
constexpr auto kTiles = tile_table<0>(std::make_integer_sequence<int, kMaxChannels>{});
// Under AddressSanitizer the unrolled tiles are left out: instrumented (and at -O3, see
// kernels/CMakeLists.txt) this file took 282 s to compile with gcc 12 and 241 s with clang 14,
// against 19 s with the table's tiles alone, which read the same taps and which the sanitized
// suites run. The Release suites test the unrolled tiles against the reference.
#define SPRIG_CONV_UNROLLED_TAPS (!SPRIG_ASAN)
#if SPRIG_CONV_UNROLLED_TAPS
constexpr auto kTiles3 = tile_table<3>(std::make_integer_sequence<int, kMaxChannels>{});
constexpr auto kTiles5 = tile_table<5>(std::make_integer_sequence<int, kMaxChannels>{});
#endif

// The widest V that keeps a tile's accumulators, its V input vectors and a broadcast within the
// vector registers (32 with AVX-512: 24 / kb; 16 with AVX2).
int vectors_for(int kb) {
  return std::min(kMaxVectors, (kRegisters - 1) / (kRegistersPerVector * (kb + 1)));
}

// Calls f(k0, kb) for each block of output channels a register tile takes, in order: as even
// as their number allows (16 = 6 + 5 + 5, not 6 + 6 + 4), since a narrow tile loads as many
// inputs for fewer FMAs (AVX2's 4-channel tile cost 26% more a channel).
template <class F>
void for_each_block(int64_t K, F f) {
  const int KB = int(std::min<int64_t>(kMaxChannels, K));
  const int64_t blocks = (K + KB - 1) / KB;
  for (int64_t bi = 0, k0 = 0; bi < blocks; bi++) {
    const int kb = int((K - k0 + blocks - bi - 1) / (blocks - bi));
    f(k0, kb);
    k0 += kb;
  }
}

thread_local std::vector<float> tls_padded;   // xp (C, st, st, Hb, Wph) + slack
thread_local std::vector<int64_t> tls_first;  // (nv + 1)
thread_local std::vector<int64_t> tls_delta;  // (stores)
thread_local std::vector<LaneMask> tls_mask;  // (stores)
thread_local std::vector<int64_t> tls_taps;   // (R * S)
thread_local std::array<int64_t, 4> tls_geometry{-1, -1, -1, -1};  // Wph, Q, p0, p1 of the stores

}  // namespace

// A 1x1 kernel has one tap per channel: the padded phase copies cost more than its
// multiply-adds (0.54x im2col + gemm on ResNet's strided 1x1 shortcut), and at stride 1 gemm
// reads x in place.
bool conv2d_direct_suits(const Conv2dShape& s) {
  return s.R * s.S > 1;
}

// With AVX2 each output's store costs more (two registers, and a maskstore for every half a row
// border splits), so on few taps per output im2col + gemm wins. Measured on one Zen 3 core, 64
// samples, 28x28, direct / im2col + gemm time: 3x3 with C = 1, 2, 4 -> 16 channels 1.85, 1.52,
// 1.20 (im2col wins); C = 8 0.84-0.99, 16 0.73-0.86, 32 at 14x14 0.55; 5x5 with C = 1 -> 6 or
// 32 channels 0.57 and 0.83.
bool conv2d_direct_pays(const Conv2dShape& s) {
#if defined(__AVX512F__)
  return conv2d_direct_suits(s);
#else
  return conv2d_direct_suits(s) && (s.C >= 8 || s.R * s.S >= 25);
#endif
}

void conv2d_direct_pack(const Conv2dShape& s, const float* w, float* wp) {
  const int64_t CRS = s.C * s.R * s.S;
  for_each_block(s.K, [&](int64_t k0, int kb) {
    float* dst = wp + k0 * CRS;  // (C*R*S, kb)
    for (int64_t i = 0; i < CRS; ++i)
      for (int j = 0; j < kb; ++j) dst[i * kb + j] = w[(k0 + j) * CRS + i];
  });
}

void detail::conv2d_direct_rows(const Conv2dShape& s, const float* xn, const float* wp,
                                const float* b, bool relu, float* yn, int64_t p0, int64_t p1) {
  const int64_t P = s.P(), Q = s.Q(), st = s.stride, d = s.dilation;
  const int64_t Wp = s.W + 2 * s.pad, Wph = (Wp + st - 1) / st;  // padded row, a phase's row
  if (p1 <= p0 || Q <= 0) return;
  // Phase (a, b) of channel c holds the padded input at rows (p0 + j) * st + a, j in [0, Hb),
  // and columns jc * st + b, jc in [0, Wph): output (p, q)'s tap (r, s) is phase ((r*d) % st,
  // (s*d) % st) at row p - p0 + (r*d) / st, column q + (s*d) / st, so on the grid Wph wide
  // every tap is again a contiguous run. With stride 1 there is one phase, the padded rows.
  const int64_t Hb = (p1 - p0) + (s.R - 1) * d / st, plane = Hb * Wph, chan = st * st * plane;
  // Positions [0, L) hold the band's outputs; the last vector may run 15 past L and its taps
  // up to 15 floats past the last plane, which the slack covers (zeros: no NaN or denormal).
  const int64_t L = (p1 - p0 - 1) * Wph + Q, nv = (L + 15) / 16;
  if (tls_padded.size() < size_t(s.C * chan + 16)) tls_padded.resize(size_t(s.C * chan + 16));
  float* xp = tls_padded.data();
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t a = 0; a < st; ++a)
      for (int64_t j = 0; j < Hb; ++j) {
        const int64_t h = (p0 + j) * st + a - s.pad;
        const bool inside = h >= 0 && h < s.H;
        const float* src = inside ? xn + (c * s.H + h) * s.W : nullptr;  // (W) input row h
        for (int64_t bp = 0; bp < st; ++bp) {
          float* dst = xp + c * chan + (a * st + bp) * plane + j * Wph;
          if (!inside) {
            zero_row(dst, Wph);
          } else if (st == 1) {
            zero_row(dst, s.pad);
            copy_row(dst + s.pad, src, s.W, false);
            zero_row(dst + s.pad + s.W, s.pad);
          } else {
            for (int64_t jc = 0; jc < Wph; ++jc) {
              const int64_t wi = jc * st + bp - s.pad;
              dst[jc] = wi >= 0 && wi < s.W ? src[wi] : 0.0f;
            }
          }
        }
      }
  zero_row(xp + s.C * chan, 16);

  // Vector j's lanes, row by row of the band: position i = prow * Wph + q (q < Q) is output
  // (p0 + prow) * Q + q = i + p0 * Q - prow * (Wph - Q). The same band geometry as the thread's
  // last call (every sample of a batch, every layer of one shape) reuses its stores: rebuilt
  // per sample they took 15-18% of a 1-channel 3x3 or 5x5 layer's time at batch 32.
  const std::array<int64_t, 4> geometry{Wph, Q, p0, p1};
  if (geometry != tls_geometry) {
    tls_geometry = geometry;
    tls_first.resize(size_t(nv + 1));
    tls_delta.clear();
    tls_mask.clear();
    for (int64_t j = 0; j < nv; ++j) {
      tls_first[size_t(j)] = int64_t(tls_delta.size());
      short_rows::grid_vector_stores(16 * j, Wph, Q, p1 - p0, [&](int64_t shift, LaneMask m) {
        tls_delta.push_back(p0 * Q + shift);
        tls_mask.push_back(m);
      });
    }
    tls_first[size_t(nv)] = int64_t(tls_delta.size());
  }
  if (tls_taps.size() < size_t(s.R * s.S)) tls_taps.resize(size_t(s.R * s.S));
  for (int64_t r = 0; r < s.R; ++r)
    for (int64_t t = 0; t < s.S; ++t)
      tls_taps[size_t(r * s.S + t)] =
          (((r * d) % st * st + (t * d) % st) * Hb + (r * d) / st) * Wph + (t * d) / st;
  const Band g{s.C,
               s.K,
               s.C * s.R * s.S,
               s.R * s.S,
               chan,
               tls_taps.data(),
               Wph,
               wp,
               b,
               relu,
               tls_first.data(),
               tls_delta.data(),
               tls_mask.data(),
               yn,
               P * Q};

  // Positions outer, channels inner: a tile's input rows stay in L1 across the channel blocks.
  const int V = vectors_for(int(std::min<int64_t>(kMaxChannels, s.K)));
#if SPRIG_CONV_UNROLLED_TAPS
  const bool unit = st == 1 && d == 1 && s.R == s.S;
  const auto& tiles = unit && s.R == 3 ? kTiles3 : unit && s.R == 5 ? kTiles5 : kTiles;
#else
  const auto& tiles = kTiles;
#endif
  for (int64_t v0 = 0; v0 < nv; v0 += V) {
    const int nvec = int(std::min<int64_t>(V, nv - v0));
    for_each_block(s.K, [&](int64_t k0, int kb) {
      tiles[size_t(kb - 1)][size_t(nvec - 1)](g, xp, k0, v0 * 16);
    });
  }
}

#else  // neither AVX-512 nor AVX2: im2col + gemm runs every convolution

bool conv2d_direct_suits(const Conv2dShape&) {
  return false;
}

bool conv2d_direct_pays(const Conv2dShape&) {
  return false;
}

void conv2d_direct_pack(const Conv2dShape&, const float*, float*) {
  SPRIG_CHECK(false, "conv2d_direct_pack: sprig was built without AVX-512 or AVX2");
}

void detail::conv2d_direct_rows(const Conv2dShape&, const float*, const float*, const float*, bool,
                                float*, int64_t, int64_t) {
  SPRIG_CHECK(false, "conv2d_direct_rows: sprig was built without AVX-512 or AVX2");
}

#endif

}  // namespace sprig::cpu
