#include "kernels/cpu/conv_int8.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/quantize_simd.h"
#include "kernels/error.h"

namespace sprig::cpu {

void conv2d_u8s8(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const PackedInt8Weights& w,
                 int32_t* acc) {
  const int64_t P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
  SPRIG_CHECK(w.N == s.K && w.K == CRS, "conv2d_u8s8: packed weight is (", w.N, ", ", w.K,
              ") but the convolution needs (", s.K, ", ", CRS, ")");
  SPRIG_CHECK(x_zero >= 0 && x_zero <= 255, "conv2d_u8s8: zero point ", x_zero, " is not a uint8");
  if (PQ <= 0 || s.N <= 0) return;
  // The whole batch in one product: its patches as rows (one im2col for every image, one gemm,
  // one AMX tile configuration and three thread splits per call, not per image). Images are
  // taken in chunks so the patch matrix stays near 16 MB.
  const int64_t per_image = PQ * CRS;
  const int64_t chunk =
      std::max<int64_t>(1, std::min<int64_t>(s.N, (int64_t(1) << 24) / per_image));
  // Reused from call to call (grow-only, per thread): fresh pages cost more than the work.
  thread_local std::vector<uint8_t> col;  // (chunk * P*Q, C*R*S)
  thread_local std::vector<int32_t> out;  // (chunk * P*Q, K): channels last
  if (col.size() < size_t(chunk * per_image)) col.resize(size_t(chunk * per_image));
  if (out.size() < size_t(chunk * PQ * s.K)) out.resize(size_t(chunk * PQ * s.K));
  const uint8_t pad = uint8_t(x_zero);
  for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
    const int64_t nb = std::min(chunk, s.N - n0), rows = nb * PQ;
    uint8_t* cd = col.data();
    // One output row (n, p) at a time: its Q patches, each C*R*S bytes; the S bytes of a patch
    // row are copied unchecked where the whole window lies inside the image.
    const Conv2dShape sh = s;
    const int64_t x_at = n0;
    // Threads only for work worth a parallel region (~64 KB of patches per thread and up).
    parallel_range(nb * P, std::max<int64_t>(2, (int64_t(1) << 17) / std::max<int64_t>(1, Q * CRS)),
                   [&, sh, x_at, P, Q, CRS, pad, cd](int64_t lo, int64_t hi) {
                     // Everything the loop reads is a local copy: a uint8_t store may alias
                     // anything, and references into the caller would be reloaded after every byte
                     // written.
                     const int64_t C = sh.C, H = sh.H, W = sh.W, R = sh.R, S = sh.S,
                                   stride = sh.stride, padding = sh.pad, dil = sh.dilation;
                     const uint8_t* xs = x;
                     for (int64_t np = lo; np < hi; ++np) {
                       const int64_t n = np / P, p = np % P;
                       const uint8_t* xn = xs + (x_at + n) * C * H * W;  // (C, H, W)
                       uint8_t* rows_p = cd + np * Q * CRS;              // (Q, C*R*S)
                       for (int64_t c = 0; c < C; ++c)
                         for (int64_t r = 0; r < R; ++r) {
                           const int64_t ih = p * stride - padding + r * dil;
                           const int64_t at = (c * R + r) * S;
                           if (ih < 0 || ih >= H) {
                             for (int64_t q = 0; q < Q; ++q)
                               std::memset(rows_p + q * CRS + at, pad, size_t(S));
                             continue;
                           }
                           const uint8_t* src = xn + (c * H + ih) * W;
                           for (int64_t q = 0; q < Q; ++q) {
                             uint8_t* dst = rows_p + q * CRS + at;
                             const int64_t iw0 = q * stride - padding;
                             if (iw0 >= 0 && iw0 + (S - 1) * dil < W) {
                               for (int64_t t = 0; t < S; ++t) dst[t] = src[iw0 + t * dil];
                             } else {
                               for (int64_t t = 0; t < S; ++t) {
                                 const int64_t iw = iw0 + t * dil;
                                 dst[t] = iw >= 0 && iw < W ? src[iw] : pad;
                               }
                             }
                           }
                         }
                     }
                   });
    gemm_u8s8(rows, col.data(), CRS, x_zero, w, out.data(), s.K);
    const int32_t* od = out.data();
    int32_t* an = acc + n0 * s.K * PQ;  // (nb, K, P*Q)
    parallel_range(nb * s.K, std::max<int64_t>(2, (int64_t(1) << 16) / PQ),
                   [&](int64_t lo, int64_t hi) {
                     for (int64_t nk = lo; nk < hi; ++nk) {
                       const int64_t n = nk / s.K, k = nk % s.K;
                       const int32_t* src = od + n * PQ * s.K + k;
                       int32_t* dst = an + nk * PQ;
                       for (int64_t pq = 0; pq < PQ; ++pq) dst[pq] = src[pq * s.K];
                     }
                   });
  }
}

// ---- Direct int8 convolution (AVX-512 VNNI + VBMI) -----------------------------------------

DirectConvInt8Weights pack_conv_int8_direct(const int8_t* w, int64_t K, int64_t C, int64_t R,
                                            int64_t S) {
  SPRIG_CHECK(K > 0 && C > 0 && R > 0 && S > 0, "pack_conv_int8_direct: need K, C, R, S > 0, got ",
              K, ", ", C, ", ", R, ", ", S);
  // As pack_int8_weights: every int32 sum stays exact while C*R*S <= 2^15.
  SPRIG_CHECK(C * R * S <= (int64_t(1) << 15), "pack_conv_int8_direct: C*R*S ", C * R * S,
              " above 32768 could overflow the int32 sums");
  DirectConvInt8Weights p;
  p.K = K;
  p.C = C;
  p.R = R;
  p.S = S;
  p.chunks = (S + 3) / 4;
  p.Kp = (K + 3) / 4 * 4;
  p.words.assign(size_t(C * R * p.chunks * p.Kp), 0);
  p.row_sums.assign(size_t(K), 0);
  auto* bytes = reinterpret_cast<uint8_t*>(p.words.data());  // little-endian words
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t t = 0; t < S; ++t) {
          const int8_t v = w[((k * C + c) * R + r) * S + t];
          const int64_t word = ((c * R + r) * p.chunks + t / 4) * p.Kp + k;
          bytes[word * 4 + t % 4] = uint8_t(v);
          p.row_sums[size_t(k)] += v;
        }
  return p;
}

namespace {

#define SPRIG_TARGET_DIRECT __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vbmi")))

bool direct_isa_supported() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vnni") &&
                         __builtin_cpu_supports("avx512vbmi");
  return ok;
}

// The stores the direct kernel ends with, one output channel's 16 pixels at a time (the lanes
// of `mask` only): the exact sums, or those sums dequantised with bias and ReLU.
struct StoreSums {
  int32_t* acc;  // (N, K, P, Q)
  const int32_t* row_sums;
  int32_t zero;
  int64_t K, P, Q;
  SPRIG_TARGET_DIRECT void operator()(int64_t n, int64_t k, int64_t p, int64_t q0, __mmask16 mask,
                                      __m512i sum) const {
    const __m512i v = _mm512_sub_epi32(sum, _mm512_set1_epi32(zero * row_sums[k]));
    _mm512_mask_storeu_epi32(acc + ((n * K + k) * P + p) * Q + q0, mask, v);
  }
};

// The float a channel's exact sums stand for, as dequantize_channels_bias_relu computes it:
// (a_scale x w_scale) x (sum - zero x row_sum) + bias, then ReLU when relu.
struct Dequantize {
  const int32_t* row_sums;
  int32_t zero;
  float a_scale;
  const float* w_scales;
  const float* bias;
  bool relu;
  SPRIG_TARGET_DIRECT __m512 operator()(int64_t k, __m512i sum) const {
    const __m512i exact = _mm512_sub_epi32(sum, _mm512_set1_epi32(zero * row_sums[k]));
    const __m512 v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, exact),
                                     _mm512_set1_ps(a_scale * w_scales[k]),
                                     _mm512_set1_ps(bias ? bias[k] : 0.0f));
    return relu ? _mm512_maskz_max_ps(0xFFFF, v, _mm512_setzero_ps()) : v;
  }
};

struct StoreDequantized {
  float* y;  // (N, K, P, Q)
  int64_t K, P, Q;
  Dequantize dequantize;
  SPRIG_TARGET_DIRECT void operator()(int64_t n, int64_t k, int64_t p, int64_t q0, __mmask16 mask,
                                      __m512i sum) const {
    _mm512_mask_storeu_ps(y + ((n * K + k) * P + p) * Q + q0, mask, dequantize(k, sum));
  }
};

// That float quantised again with `out` (the next layer's input parameters): the codes
// quantize_activations gives the dequantised output, bit for bit.
struct StoreRequantized {
  uint8_t* y;  // (N, K, P, Q)
  int64_t K, P, Q;
  Dequantize dequantize;
  detail::QuantizeConsts out;
  SPRIG_TARGET_DIRECT void operator()(int64_t n, int64_t k, int64_t p, int64_t q0, __mmask16 mask,
                                      __m512i sum) const {
    _mm512_mask_cvtusepi32_storeu_epi8(y + ((n * K + k) * P + p) * Q + q0, mask,
                                       detail::quantize16(dequantize(k, sum), out));
  }
};

struct DirectGeometry {
  int64_t C, Hp, Wp, P, Q, R, chunks, Kp, K, stride, dilation;
  int64_t plane_bytes;  // one image's padded (C, Hp, Wp), rounded up to 64
  // Output rows one vector holds: 1 for rows of 16+ pixels; for narrower rows (a ResNet's 7x7
  // stage) as many whole rows as fit 16 lanes and one 64-byte load (output rows are contiguous
  // in y, so the lanes store as one run).
  int64_t rows_per_vector;
  int64_t groups;  // ceil(P / rows_per_vector)
};

// Output row p of image n, pixels q0..q0+15 (the lanes of mask), channels k0..k0+NK-1: NK
// accumulators of 16 pixels. Each (c, r, chunk) is one 64-byte load, one vpermb that makes
// lane l's 4 bytes the window it multiplies (bytes stride x l + dilation x j), and NK vpdpbusd
// against one broadcast word per channel.
template <int NK, class Store>
SPRIG_TARGET_DIRECT void direct_tile(const DirectGeometry& g, const uint8_t* plane,
                                     const int32_t* words, __m512i windows, int64_t n, int64_t p,
                                     int64_t q0, __mmask16 mask, int64_t k0, const Store& store) {
  __m512i acc[NK];
  for (int i = 0; i < NK; ++i) acc[i] = _mm512_setzero_si512();
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r) {
      const uint8_t* row =
          plane + (c * g.Hp + p * g.stride + r * g.dilation) * g.Wp + q0 * g.stride;
      const int32_t* wr = words + (c * g.R + r) * g.chunks * g.Kp + k0;
      for (int64_t ch = 0; ch < g.chunks; ++ch) {
        // The maskz forms (all lanes kept) spare GCC 12 its false "uninitialized" warning on
        // the unmasked intrinsics' undefined pass-through operand.
        const __m512i a = _mm512_maskz_permutexvar_epi8(
            ~__mmask64(0), windows, _mm512_loadu_si512(row + ch * 4 * g.dilation));
        const int32_t* wk = wr + ch * g.Kp;
        for (int i = 0; i < NK; ++i)
          acc[i] = _mm512_dpbusd_epi32(acc[i], a, _mm512_set1_epi32(wk[i]));
      }
    }
  for (int i = 0; i < NK && k0 + i < g.K; ++i) store(n, k0 + i, p, q0, mask, acc[i]);
}

// Output rows [lo, hi) of the flattened (N, P).
template <class Store>
SPRIG_TARGET_DIRECT void direct_rows(const DirectGeometry& g, const uint8_t* planes,
                                     const int32_t* words, int64_t lo, int64_t hi,
                                     const Store& store) {
  // Lane l's window: pixel l of the row, or with G rows a vector, pixel l % Q of row l / Q.
  const int64_t G = g.rows_per_vector;
  alignas(64) uint8_t idx[64] = {};
  for (int64_t l = 0; l < (G > 1 ? G * g.Q : 16); ++l)
    for (int64_t j = 0; j < 4; ++j)
      idx[4 * l + j] =
          uint8_t(G > 1 ? (l / g.Q) * g.stride * g.Wp + (l % g.Q) * g.stride + g.dilation * j
                        : g.stride * l + g.dilation * j);
  const __m512i windows = _mm512_load_si512(idx);
  for (int64_t item = lo; item < hi; ++item) {
    const int64_t n = item / g.groups, p = (item % g.groups) * G;
    const uint8_t* plane = planes + n * g.plane_bytes;
    for (int64_t q0 = 0; q0 < g.Q; q0 += 16) {
      const int64_t nq = G > 1 ? std::min(G, g.P - p) * g.Q : std::min<int64_t>(16, g.Q - q0);
      const __mmask16 mask = __mmask16((1u << nq) - 1u);
      int64_t k0 = 0;
      for (; k0 + 16 <= g.Kp; k0 += 16)
        direct_tile<16>(g, plane, words, windows, n, p, q0, mask, k0, store);
      switch (g.Kp - k0) {  // Kp is a multiple of 4
        case 4:
          direct_tile<4>(g, plane, words, windows, n, p, q0, mask, k0, store);
          break;
        case 8:
          direct_tile<8>(g, plane, words, windows, n, p, q0, mask, k0, store);
          break;
        case 12:
          direct_tile<12>(g, plane, words, windows, n, p, q0, mask, k0, store);
          break;
      }
    }
  }
}

template <class Store>
void run_direct(const Conv2dShape& s, const uint8_t* x, int32_t x_zero,
                const DirectConvInt8Weights& w, const Store& store) {
  SPRIG_CHECK(w.K == s.K && w.C == s.C && w.R == s.R && w.S == s.S,
              "conv2d_u8s8_direct: weight packed for (", w.K, ", ", w.C, ", ", w.R, ", ", w.S,
              ") but the convolution needs (", s.K, ", ", s.C, ", ", s.R, ", ", s.S, ")");
  SPRIG_CHECK(x_zero >= 0 && x_zero <= 255, "conv2d_u8s8_direct: zero point ", x_zero,
              " is not a uint8");
  SPRIG_CHECK(conv2d_u8s8_direct_suits(s),
              "conv2d_u8s8_direct: this CPU or convolution does not suit it (needs AVX-512 VNNI "
              "and VBMI, 15 x stride + 3 x dilation < 64 and a kernel wider than 1)");
  DirectGeometry g{};
  g.C = s.C;
  g.Hp = s.H + 2 * s.pad;
  g.Wp = s.W + 2 * s.pad;
  g.P = s.P();
  g.Q = s.Q();
  g.R = s.R;
  g.chunks = w.chunks;
  g.Kp = w.Kp;
  g.K = s.K;
  g.stride = s.stride;
  g.dilation = s.dilation;
  g.plane_bytes = (s.C * g.Hp * g.Wp + 63) / 64 * 64;
  if (s.N <= 0 || g.P <= 0 || g.Q <= 0) return;
  g.rows_per_vector = g.Q >= 16 ? 1 : 16 / g.Q;
  while (g.rows_per_vector > 1 &&
         (g.rows_per_vector - 1) * g.stride * g.Wp + (g.Q - 1) * g.stride + 3 * g.dilation >= 64)
    --g.rows_per_vector;
  g.groups = (g.P + g.rows_per_vector - 1) / g.rows_per_vector;
  // Every image padded with the zero point once (the vector loads then need no bounds), plus
  // one load's worth of slack past the last plane. Grow-only, per calling thread.
  thread_local std::vector<uint8_t> planes;  // (N, C, Hp, Wp) + 64
  const size_t bytes = size_t(s.N * g.plane_bytes + 64);
  if (planes.size() < bytes) planes.resize(bytes);
  uint8_t* pd = planes.data();
  const Conv2dShape sh = s;
  parallel_range(s.N * s.C, std::max<int64_t>(2, (int64_t(1) << 16) / (g.Hp * g.Wp)),
                 [sh, pd, g, x, x_zero](int64_t lo, int64_t hi) {
                   const uint8_t z = uint8_t(x_zero);
                   const int64_t H = sh.H, W = sh.W, pad = sh.pad, C = sh.C, Hp = g.Hp, Wp = g.Wp;
                   for (int64_t nc = lo; nc < hi; ++nc) {
                     uint8_t* dst = pd + (nc / C) * g.plane_bytes + (nc % C) * Hp * Wp;
                     const uint8_t* src = x + nc * H * W;  // (H, W)
                     std::memset(dst, z, size_t(pad * Wp));
                     for (int64_t h = 0; h < H; ++h) {
                       uint8_t* row = dst + (h + pad) * Wp;
                       std::memset(row, z, size_t(pad));
                       std::memcpy(row + pad, src + h * W, size_t(W));
                       std::memset(row + pad + W, z, size_t(pad));
                     }
                     std::memset(dst + (H + pad) * Wp, z, size_t(pad * Wp));
                   }
                 });
  std::memset(pd + s.N * g.plane_bytes, 0, 64);
  // Threads from ~16K vpdpbusd (a few microseconds) up: below that the region costs more.
  const int64_t per_item = (g.Q + 15) / 16 * s.C * s.R * g.chunks * g.Kp;
  const int32_t* words = w.words.data();
  parallel_range(s.N * g.groups,
                 std::max<int64_t>(2, (int64_t(1) << 14) / std::max<int64_t>(1, per_item)),
                 [&g, pd, words, &store](int64_t lo, int64_t hi) {
                   direct_rows(g, pd, words, lo, hi, store);
                 });
}

}  // namespace

void conv2d_u8s8_direct_requantize(const Conv2dShape& s, const uint8_t* x, int32_t x_zero,
                                   const DirectConvInt8Weights& w, float a_scale,
                                   const float* w_scales, const float* bias, bool relu,
                                   ActivationQuant out, uint8_t* y) {
  const Dequantize dq{w.row_sums.data(), x_zero, a_scale, w_scales, bias, relu};
  run_direct(s, x, x_zero, w,
             StoreRequantized{y, s.K, s.P(), s.Q(), dq, detail::quantize_consts(out)});
}

bool conv2d_u8s8_direct_suits(const Conv2dShape& s) {
  return direct_isa_supported() && s.S > 1 && s.stride >= 1 && s.dilation >= 1 &&
         15 * s.stride + 3 * s.dilation < 64;
}

void conv2d_u8s8_direct(const Conv2dShape& s, const uint8_t* x, int32_t x_zero,
                        const DirectConvInt8Weights& w, int32_t* acc) {
  run_direct(s, x, x_zero, w, StoreSums{acc, w.row_sums.data(), x_zero, s.K, s.P(), s.Q()});
}

void conv2d_u8s8_direct_dequantize(const Conv2dShape& s, const uint8_t* x, int32_t x_zero,
                                   const DirectConvInt8Weights& w, float a_scale,
                                   const float* w_scales, const float* bias, bool relu, float* y) {
  const Dequantize dq{w.row_sums.data(), x_zero, a_scale, w_scales, bias, relu};
  run_direct(s, x, x_zero, w, StoreDequantized{y, s.K, s.P(), s.Q(), dq});
}

void conv2d_u8s8_ref(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const int8_t* w,
                     int32_t* acc) {
  const int64_t P = s.P(), Q = s.Q();
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          int32_t sum = 0;
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t r = 0; r < s.R; ++r)
              for (int64_t t = 0; t < s.S; ++t) {
                const int64_t ih = p * s.stride - s.pad + r * s.dilation;
                const int64_t iw = q * s.stride - s.pad + t * s.dilation;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;  // x - x_zero = 0
                const int32_t a = int32_t(x[((n * s.C + c) * s.H + ih) * s.W + iw]) - x_zero;
                sum += a * int32_t(w[((k * s.C + c) * s.R + r) * s.S + t]);
              }
          acc[((n * s.K + k) * P + p) * Q + q] = sum;
        }
}

}  // namespace sprig::cpu
