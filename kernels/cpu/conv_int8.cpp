#include "kernels/cpu/conv_int8.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/error.h"
#include "kernels/cpu/parallel.h"

namespace sprig::cpu {

void conv2d_u8s8(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const PackedInt8Weights& w,
                 int32_t* acc) {
  const int64_t P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
  SPRIG_CHECK(w.N == s.K && w.K == CRS, "conv2d_u8s8: packed weight is (", w.N, ", ", w.K,
              ") but the convolution needs (", s.K, ", ", CRS, ")");
  SPRIG_CHECK(x_zero >= 0 && x_zero <= 255, "conv2d_u8s8: zero point ", x_zero, " is not a uint8");
  if (PQ <= 0 || s.N <= 0) return;
  // The whole batch in one product: its patches as rows (one im2col for every image, one gemm,
  // one AMX tile configuration and three parallel regions per call, not per image). Images are
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
