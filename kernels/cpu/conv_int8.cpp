#include "kernels/cpu/conv_int8.h"

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
  if (PQ <= 0) return;
  std::vector<uint8_t> col(size_t(PQ * CRS));  // (P*Q, C*R*S): one image's patches as rows
  std::vector<int32_t> out(size_t(PQ * s.K));  // (P*Q, K): gemm_u8s8 writes channels last
  const uint8_t pad = uint8_t(x_zero);
  for (int64_t n = 0; n < s.N; ++n) {
    const uint8_t* xn = x + n * s.C * s.H * s.W;  // (C, H, W)
    uint8_t* cd = col.data();
    parallel_range(PQ, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t pq = lo; pq < hi; ++pq) {
        const int64_t p = pq / Q, q = pq % Q;
        uint8_t* row = cd + pq * CRS;
        for (int64_t c = 0; c < s.C; ++c)
          for (int64_t r = 0; r < s.R; ++r) {
            const int64_t ih = p * s.stride - s.pad + r * s.dilation;
            uint8_t* dst = row + (c * s.R + r) * s.S;
            if (ih < 0 || ih >= s.H) {
              for (int64_t t = 0; t < s.S; ++t) dst[t] = pad;
              continue;
            }
            const uint8_t* src = xn + (c * s.H + ih) * s.W;
            for (int64_t t = 0; t < s.S; ++t) {
              const int64_t iw = q * s.stride - s.pad + t * s.dilation;
              dst[t] = iw >= 0 && iw < s.W ? src[iw] : pad;
            }
          }
      }
    });
    gemm_u8s8(PQ, col.data(), CRS, x_zero, w, out.data(), s.K);
    int32_t* an = acc + n * s.K * PQ;  // (K, P*Q)
    const int32_t* od = out.data();
    parallel_range(s.K, 16, [&](int64_t lo, int64_t hi) {
      for (int64_t k = lo; k < hi; ++k)
        for (int64_t pq = 0; pq < PQ; ++pq) an[k * PQ + pq] = od[pq * s.K + k];
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
