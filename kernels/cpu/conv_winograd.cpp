// Winograd F(2x2, 3x3) convolution (Lavin and Gray 2016): 3x3 kernel, stride 1, dilation 1.
//
// Each 2x2 block of outputs ("tile") of channel k is A^T [sum_c U_kc . V_c] A, where
//   V_c = B^T d_c B   the 4x4 input patch d_c of channel c under the tile, transformed
//   U_kc = G g_kc G^T the 3x3 weight, transformed once (conv2d_winograd_pack)
// and . is element-wise. Per tile that is 16 C K multiply-adds against 36 C K directly (2.25x
// fewer), bought with transforms whose cost is per channel (input: 32 adds per C, output: 24 per
// K), not per channel pair. The 16 element-wise products over the channels are 16 small
// matrix products M_xi (K, tiles) = U_xi (K, C) V_xi (C, tiles), xi = 4 i + j the position in
// the 4x4 patch, computed as the direct kernel computes taps: KB broadcast weights times two
// vectors of tiles.
//
// Tiles are numbered along the rows of a band of output rows; a block of tile rows is
// transformed (V, all 16 xi), multiplied (M) and transformed back before the next, so that V and
// M stay in L2. The input transform takes a vector of tiles of a row (16 with AVX-512, 8 with
// AVX2) straight from a zero-padded copy of the block's input rows, split into even and odd
// columns. With AVX-512 a two-source permute does that split in order. With AVX2 one shuffle
// leaves the tiles in the order 0 1 4 5 2 3 6 7; the output transform's interleave (one unpack)
// undoes it, so full vectors skip the lane permutes. The last vector of a row, partly past its
// end, is put in natural order, so that its spare lanes are its last ones and the next row's
// first vector, stored just after it, overwrites them. With AVX-512, rows of at most 8 or 4
// tiles (14x14 and 7x7 outputs) share a vector two or four to one, at a pitch of 8 or 4 tiles.
//
// The rounding differs from the direct sum by a few ulps of the terms' magnitudes (G and B hold
// 0, +-1 and +-1/2).
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/error.h"

#if defined(__AVX2__) && defined(__FMA__)
#define SPRIG_CONV_WINOGRAD 1
#include "kernels/cpu/intrinsics.h"
#endif

namespace sprig::cpu {

bool conv2d_winograd_suits(const Conv2dShape& s) {
#if defined(SPRIG_CONV_WINOGRAD)
  return s.R == 3 && s.S == 3 && s.stride == 1 && s.dilation == 1;
#else
  (void)s;
  return false;
#endif
}

// Measured on an AMD Zen 5 (bench conv --direct), Winograd / direct kernel time. One core, batch
// 64: AVX2 (-march=znver3) 0.71 for 8 -> 16 at 28x28, 0.66 for 16 at 28x28, 0.60 for 32 at
// 14x14, 0.55 for 64 at 7x7; AVX-512 0.72 for 64 at 7x7, 0.63 at 8x8, 0.84 for 32 at 14x14,
// 0.65 at 16x16, but 0.96 for 16 at 28x28 and 1.15 for 8 -> 16. Two threads, batch 1 (see
// conv2d_forward's split): AVX2 0.77 for 8 -> 16, 0.67 for 16 at 28x28, 0.74 for 32 at 14x14;
// AVX-512 0.67 for 64 at 7x7, 1.02-1.07 for 32 at 14x14, and 1.35-1.45 for 16 at 28x28 and
// 32x32, whose transforms cost more than the 16-lane direct kernel's multiply-adds.
bool conv2d_winograd_pays(const Conv2dShape& s) {
#if defined(__AVX512F__)
  return conv2d_winograd_suits(s) && s.C >= 32;
#else
  return conv2d_winograd_suits(s) && s.C >= 8;
#endif
}

void conv2d_winograd_pack(const Conv2dShape& s, const float* w, float* wt) {
  // U = G g G^T, G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]; wt (16, C, K).
  const float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t c = 0; c < s.C; ++c) {
      const float* g = w + (k * s.C + c) * 9;  // (3, 3)
      float gg[4][3];                          // G g
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j)
          gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          wt[((i * 4 + j) * s.C + c) * s.K + k] =
              gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
    }
}

#if defined(SPRIG_CONV_WINOGRAD)
namespace {

#if defined(__AVX512F__)
// A vector of 16 tiles (16 output channels a register tile: 24 accumulators of 32 registers).
struct Vec {
  static constexpr int kLanes = 16, kMaxChannels = 12;
  __m512 v;
  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_first(float* p, int64_t n) const {  // the first n floats, n <= 16
    if (n > 0) _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1u), v);
  }
  friend Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  static Vec fma(Vec a, Vec b, Vec acc) { return {_mm512_fmadd_ps(a.v, b.v, acc.v)}; }
  // max(0, v): NaN (the second operand) passes through, as relu_forward.
  Vec relu() const { return {_mm512_max_ps(_mm512_setzero_ps(), v)}; }
  // The even and odd columns of RPV tile rows' patch rows, in order (one two-source permute
  // each): 32 floats at p (RPV 1); 16 at p and at p + rs (2); 8 at each of p + j rs (4).
  template <bool NATURAL, int RPV>
  static void deinterleave(const float* p, int64_t rs, Vec& even, Vec& odd) {
    __m512 a, b;
    if (RPV == 1) {
      a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
    } else if (RPV == 2) {
      a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + rs);
    } else {
      a = halves(p, p + rs), b = halves(p + 2 * rs, p + 3 * rs);
    }
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even.v = _mm512_permutex2var_ps(a, ie, b);
    odd.v = _mm512_permutex2var_ps(a, io, b);
  }
  static __m512 halves(const float* lo, const float* hi) {  // 8 floats at lo, then 8 at hi
    return _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd((const double*)lo)),
                           _mm256_loadu_pd((const double*)hi), 1));
  }
  // Row j of the RPV output rows (RPV 2: first and second; RPV 4: the halves of each), n floats
  // of it (at most 16 / RPV), to y[j] where y[j] is not null.
  template <int RPV>
  static void store_rows(Vec first, Vec second, float* const* y, int64_t n) {
    if (RPV == 2) {
      if (y[0]) first.store_first(y[0], n);
      if (y[1]) second.store_first(y[1], n);
      return;
    }
    const __m512 v[2] = {first.v, second.v};
    for (int j = 0; j < 4; ++j) {
      if (!y[j]) continue;
      const __m512 shifted =
          j % 2 ? _mm512_shuffle_f32x4(v[j / 2], v[j / 2], _MM_SHUFFLE(3, 2, 3, 2)) : v[j / 2];
      _mm512_mask_storeu_ps(y[j], __mmask16((1u << n) - 1u), shifted);
    }
  }
  // e0 o0 e1 o1 ... as two vectors.
  template <bool NATURAL>
  static void interleave(Vec e, Vec o, Vec& first, Vec& second) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    first.v = _mm512_permutex2var_ps(e.v, lo, o.v);
    second.v = _mm512_permutex2var_ps(e.v, hi, o.v);
  }
};
#else
// A vector of 8 tiles (6 output channels a register tile: 12 accumulators of 16 registers).
struct Vec {
  static constexpr int kLanes = 8, kMaxChannels = 6;
  __m256 v;
  static Vec zero() { return {_mm256_setzero_ps()}; }
  static Vec set1(float x) { return {_mm256_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store_first(float* p, int64_t n) const {  // the first n floats, n < 8
    if (n <= 0) return;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), lane), v);
  }
  friend Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
  static Vec fma(Vec a, Vec b, Vec acc) { return {_mm256_fmadd_ps(a.v, b.v, acc.v)}; }
  Vec relu() const { return {_mm256_max_ps(_mm256_setzero_ps(), v)}; }
  // The even and odd floats of p[0, 16). One shuffle each leaves them in the order 0 1 4 5 2 3
  // 6 7, which interleave<false> undoes; NATURAL puts them in order (a lane permute more).
  // Only one tile row a vector (RPV 1): 8 tiles of 8 lanes are never more than a row's tiles
  // worth sharing.
  template <bool NATURAL, int RPV>
  static void deinterleave(const float* p, int64_t, Vec& even, Vec& odd) {
    static_assert(RPV == 1, "AVX2 vectors hold one tile row");
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    even.v = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    odd.v = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    if (NATURAL) {
      even.v = natural(even.v);
      odd.v = natural(odd.v);
    }
  }
  // e0 o0 e1 o1 ... as two vectors, from lanes in deinterleave<NATURAL>'s order: unpacking
  // shuffled lanes gives columns 0-7 and 8-15 as they are; natural ones hold half of each.
  template <bool NATURAL>
  static void interleave(Vec e, Vec o, Vec& first, Vec& second) {
    const __m256 lo = _mm256_unpacklo_ps(e.v, o.v), hi = _mm256_unpackhi_ps(e.v, o.v);
    first.v = NATURAL ? _mm256_permute2f128_ps(lo, hi, 0x20) : lo;
    second.v = NATURAL ? _mm256_permute2f128_ps(lo, hi, 0x31) : hi;
  }
  template <int RPV>
  static void store_rows(Vec, Vec, float* const*, int64_t) {
    static_assert(RPV == 1, "AVX2 vectors hold one tile row");
  }
  static __m256 natural(__m256 v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
};
#endif
constexpr int kLanes = Vec::kLanes;

thread_local std::vector<float> tls_xp;  // (C, 2 * rows + 2, Wx) a block's input rows, padded
thread_local std::vector<float> tls_v;   // (16, C, ld) transformed input, xi rows vs apart
thread_local std::vector<float> tls_m;   // (16, K, ld) products, xi rows ms apart

// V (xi, c, t .. t + kLanes) for a vector of tiles: kLanes of one tile row (RPV 1), or the first
// kLanes / RPV of RPV tile rows. xr is the padded input row above the first tile at its left
// column (4 rows of xp, Wx apart; the next tile row's, 2 Wx further); v points at V (0, c, t),
// xi rows vs floats apart.
template <bool NATURAL, int RPV>
inline void input_transform(const float* xr, int64_t Wx, float* v, int64_t vs) {
  Vec u[4][4];  // (row, column) of d B: B^T applied along each row
  for (int r = 0; r < 4; ++r) {
    Vec d0, d1, d2, d3;  // columns 2t, 2t + 1, 2t + 2, 2t + 3 of tile t
    Vec::template deinterleave<NATURAL, RPV>(xr + r * Wx, 2 * Wx, d0, d1);
    Vec::template deinterleave<NATURAL, RPV>(xr + r * Wx + 2, 2 * Wx, d2, d3);
    u[r][0] = d0 - d2;
    u[r][1] = d1 + d2;
    u[r][2] = d2 - d1;
    u[r][3] = d1 - d3;
  }
  for (int j = 0; j < 4; ++j) {  // B^T down the columns
    (u[0][j] - u[2][j]).store(v + (0 + j) * vs);
    (u[1][j] + u[2][j]).store(v + (4 + j) * vs);
    (u[2][j] - u[1][j]).store(v + (8 + j) * vs);
    (u[1][j] - u[3][j]).store(v + (12 + j) * vs);
  }
}

// The output rows of a vector of tiles of channel k from M (xi, k, t ..) at m, xi rows ms
// floats apart: y[2 j + i] is row i of tile row j (null where it is past the band); n output
// columns of each are stored (of 2 kLanes / RPV).
template <bool NATURAL, int RPV>
inline void output_transform(const float* m, int64_t ms, float bias, bool relu, float* const* y,
                             int64_t n) {
  Vec s[2][4];  // A^T m: A^T applied down each column
  for (int j = 0; j < 4; ++j) {
    const Vec m0 = Vec::load(m + (0 + j) * ms), m1 = Vec::load(m + (4 + j) * ms);
    const Vec m2 = Vec::load(m + (8 + j) * ms), m3 = Vec::load(m + (12 + j) * ms);
    s[0][j] = m0 + m1 + m2;
    s[1][j] = m1 - m2 - m3;
  }
  const Vec b = Vec::set1(bias);
  for (int i = 0; i < 2; ++i) {
    Vec e = s[i][0] + s[i][1] + s[i][2] + b;  // columns 2t
    Vec o = s[i][1] - s[i][2] - s[i][3] + b;  // columns 2t + 1
    if (relu) {
      e = e.relu();
      o = o.relu();
    }
    Vec first, second;
    Vec::template interleave<NATURAL>(e, o, first, second);
    if (RPV > 1) {
      float* rows[RPV];
      for (int j = 0; j < RPV; ++j) rows[j] = y[2 * j + i];
      Vec::template store_rows<RPV>(first, second, rows, n);
      continue;
    }
    float* yi = y[i];
    if (!yi) continue;
    if (n >= 2 * kLanes) {
      first.store(yi);
      second.store(yi + kLanes);
    } else if (n >= kLanes) {
      first.store(yi);
      second.store_first(yi + kLanes, n - kLanes);
    } else {
      first.store_first(yi, n);
    }
  }
}

// M (xi, k0 .. k0 + KB, t0 .. t0 + NV kLanes) = U (xi, :, k0 .. k0 + KB)^T V (xi, :, t0 ..): v at
// V (xi, 0, t0) with channels ld apart, u at U (xi, 0, k0) with channels K apart, m at
// M (xi, k0, t0). NV = 1 for a block's last kLanes tiles when a pair would be half empty (a 7x7
// output is 16 tiles a sample).
template <int KB, int NV>
void product_tile(int64_t C, int64_t K, int64_t ld, const float* v, const float* u, float* m) {
  Vec acc[KB][NV];
#pragma GCC unroll 16
  for (int kb = 0; kb < KB; ++kb)
    for (int j = 0; j < NV; ++j) acc[kb][j] = Vec::zero();
  for (int64_t c = 0; c < C; ++c) {
    Vec x[NV];
    for (int j = 0; j < NV; ++j) x[j] = Vec::load(v + c * ld + j * kLanes);
    const float* uc = u + c * K;
#pragma GCC unroll 16
    for (int kb = 0; kb < KB; ++kb) {
      const Vec w = Vec::set1(uc[kb]);
      for (int j = 0; j < NV; ++j) acc[kb][j] = Vec::fma(w, x[j], acc[kb][j]);
    }
  }
#pragma GCC unroll 16
  for (int kb = 0; kb < KB; ++kb)
    for (int j = 0; j < NV; ++j) acc[kb][j].store(m + kb * ld + j * kLanes);
}

using ProductFn = void (*)(int64_t, int64_t, int64_t, const float*, const float*, float*);
template <int NV, int... KBs>
constexpr std::array<ProductFn, sizeof...(KBs)> product_table(std::integer_sequence<int, KBs...>) {
  return {&product_tile<KBs + 1, NV>...};
}
// kProducts[NV - 1][KB - 1]
constexpr std::array<ProductFn, Vec::kMaxChannels> kProducts[2] = {
    product_table<1>(std::make_integer_sequence<int, Vec::kMaxChannels>{}),
    product_table<2>(std::make_integer_sequence<int, Vec::kMaxChannels>{})};

// Output channels [k0, k1) of the band's rows, RPV tile rows to a vector.
template <int RPV>
void winograd_rows(const Conv2dShape& s, const float* xn, const float* wt, const float* b,
                   bool relu, float* yn, int64_t p0, int64_t p1, int64_t k0, int64_t k1) {
  const int64_t C = s.C, K = s.K, Kt = k1 - k0, P = s.P(), Q = s.Q(), PQ = P * Q;
  const int64_t TI = (p1 - p0 + 1) / 2, TJ = (Q + 1) / 2;  // tile rows of the band, tiles a row
  // Tiles of a row in V: TJ one after the other (RPV 1), or a vector's share, kLanes / RPV >= TJ.
  const int64_t pitch = RPV == 1 ? TJ : kLanes / RPV;
  const int64_t groups = (TJ + kLanes - 1) / kLanes;  // vectors of tiles a row (RPV 1)
  // A vector's loads reach 2 kLanes / RPV + 2 columns past its first tile's; the copy's rows are
  // that wide.
  const int64_t Wx = 2 * (kLanes / RPV) * groups + 2;
  const int64_t target = std::max<int64_t>(2 * kLanes, 4096 / (C + Kt));
  // Tile rows a block (a multiple of 2 RPV where RPV > 1 and the band has that many, so that its
  // tiles fill the products' pairs of vectors): V and M of one block, 16 (C + Kt) ld floats,
  // within about 256 KB of L2.
  const int64_t whole = RPV == 1 ? 1 : TI > RPV ? 2 * RPV : RPV;
  const int64_t rows_per_block = std::max<int64_t>(
      whole, std::clamp<int64_t>((target - kLanes) / pitch, 1, TI) / whole * whole);
  // A row of V / M: the block's tiles, a vector's spare lanes past the last, and the products'
  // pairs of vectors. The 16 xi rows are a cache line further apart than 16 such blocks: V (.,
  // c, t) for the 16 xi, which the transforms load or store together, would otherwise fall in
  // one L1 set whenever C ld were a multiple of 1024 (16-16 channels on 28x28 ran 30% slower).
  const int64_t ld =
      (rows_per_block * pitch + kLanes + 2 * kLanes - 1) / (2 * kLanes) * (2 * kLanes);
  const int64_t vs = C * ld + 16, ms = Kt * ld + 16;
  const int64_t Hx = 2 * rows_per_block + 2;
  if (tls_xp.size() < size_t(C * Hx * Wx)) tls_xp.resize(size_t(C * Hx * Wx));
  if (tls_v.size() < size_t(16 * vs)) tls_v.resize(size_t(16 * vs));
  if (tls_m.size() < size_t(16 * ms)) tls_m.resize(size_t(16 * ms));
  float* xp = tls_xp.data();
  float* V = tls_v.data();
  float* M = tls_m.data();

  for (int64_t ti0 = 0; ti0 < TI; ti0 += rows_per_block) {
    const int64_t ti1 = std::min(TI, ti0 + rows_per_block);
    // Tile rows of the block's vectors (past ti1 with RPV > 1: computed from zeros, not stored)
    const int64_t vrows = (ti1 - ti0 + RPV - 1) / RPV * RPV, nt = vrows * pitch;
    const int64_t rows = 2 * vrows + 2;
    // xp (C, rows, Wx): input rows from p0 + 2 ti0 - pad, columns from -pad, zero outside.
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < rows; ++r) {
        float* dst = xp + (c * Hx + r) * Wx;
        const int64_t h = p0 + 2 * ti0 + r - s.pad;
        if (h < 0 || h >= s.H) {
          std::memset(dst, 0, size_t(Wx) * sizeof(float));
          continue;
        }
        // Wx >= 2 TJ + 2 >= Q + 2 = W + 2 pad: the row and both borders fit.
        std::memset(dst, 0, size_t(s.pad) * sizeof(float));
        std::memcpy(dst + s.pad, xn + (c * s.H + h) * s.W, size_t(s.W) * sizeof(float));
        std::memset(dst + s.pad + s.W, 0, size_t(Wx - s.pad - s.W) * sizeof(float));
      }
    // V (16, C, ld); with RPV 1 each row's last group is stored in natural order (see the top).
    for (int64_t c = 0; c < C; ++c)
      for (int64_t ti = 0; ti < vrows; ti += RPV) {
        const float* xr = xp + (c * Hx + 2 * ti) * Wx;
        float* v = V + c * ld + ti * pitch;
        for (int64_t tj = 0; tj < TJ; tj += kLanes) {
          if (RPV == 1 && tj + kLanes <= TJ)
            input_transform<false, RPV>(xr + 2 * tj, Wx, v + tj, vs);
          else
            input_transform<true, RPV>(xr + 2 * tj, Wx, v + tj, vs);
        }
      }
    // M (16, Kt, ld): per xi, the tiles in pairs of vectors, the output channels in register
    // tiles (as even as their number allows, as the direct kernel splits them).
    const int KB = int(std::min<int64_t>(Vec::kMaxChannels, Kt));
    const int64_t kblocks = (Kt + KB - 1) / KB;
    for (int xi = 0; xi < 16; ++xi) {
      const float* vx = V + xi * vs;
      const float* ux = wt + xi * C * K;
      float* mx = M + xi * ms;
      for (int64_t t0 = 0; t0 < nt; t0 += 2 * kLanes) {
        const auto& products = kProducts[nt - t0 > kLanes ? 1 : 0];
        for (int64_t bi = 0, kk = 0; bi < kblocks; ++bi) {
          const int kb = int((Kt - kk + kblocks - bi - 1) / (kblocks - bi));
          products[size_t(kb - 1)](C, K, ld, vx + t0, ux + k0 + kk, mx + kk * ld + t0);
          kk += kb;
        }
      }
    }
    // y rows p0 + 2 ti and the next (when inside the band), columns 2 tj ...
    for (int64_t k = k0; k < k1; ++k) {
      const float bias = b ? b[k] : 0.0f;
      for (int64_t ti = ti0; ti < ti1; ti += RPV) {
        float* y[2 * RPV];  // rows i of tile rows ti + j at y[2 j + i], null past the band
        for (int j = 0; j < RPV; ++j) {
          const int64_t p = p0 + 2 * (ti + j);
          y[2 * j] = ti + j < ti1 ? yn + k * PQ + p * Q : nullptr;
          y[2 * j + 1] = ti + j < ti1 && p + 1 < p1 ? y[2 * j] + Q : nullptr;
        }
        const float* m = M + (k - k0) * ld + (ti - ti0) * pitch;
        for (int64_t tj = 0; tj < TJ; tj += kLanes) {
          const int64_t n = std::min<int64_t>(2 * kLanes / RPV, Q - 2 * tj);
          float* yj[2 * RPV];
          for (int e = 0; e < 2 * RPV; ++e) yj[e] = y[e] ? y[e] + 2 * tj : nullptr;
          if (RPV == 1 && tj + kLanes <= TJ)
            output_transform<false, RPV>(m + tj, ms, bias, relu, yj, n);
          else
            output_transform<true, RPV>(m + tj, ms, bias, relu, yj, n);
        }
      }
    }
  }
}

}  // namespace

void detail::conv2d_winograd_rows(const Conv2dShape& s, const float* xn, const float* wt,
                                  const float* b, bool relu, float* yn, int64_t p0, int64_t p1,
                                  int64_t k0, int64_t k1) {
  if (p1 <= p0 || k1 <= k0 || s.Q() <= 0) return;
  // With AVX-512, rows of at most 8 or 4 tiles share a vector two or four to one: alone, 7 tiles
  // (14x14 outputs) or 4 (7x7) left most of a vector of 16 empty.
  const int64_t TJ = (s.Q() + 1) / 2;
#if defined(__AVX512F__)
  if (TJ <= 4) return winograd_rows<4>(s, xn, wt, b, relu, yn, p0, p1, k0, k1);
  if (TJ <= 8) return winograd_rows<2>(s, xn, wt, b, relu, yn, p0, p1, k0, k1);
#endif
  (void)TJ;
  winograd_rows<1>(s, xn, wt, b, relu, yn, p0, p1, k0, k1);
}

#else  // no AVX2: the other kernels run every convolution

void detail::conv2d_winograd_rows(const Conv2dShape&, const float*, const float*, const float*,
                                  bool, float*, int64_t, int64_t, int64_t, int64_t) {
  SPRIG_CHECK(false, "conv2d_winograd_rows: sprig was built without AVX2");
}

#endif

}  // namespace sprig::cpu
