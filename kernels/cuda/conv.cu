// 2-D convolution as im2col + gemm on the GPU, a chunk of samples at a time (mirrors
// kernels/cpu/conv.cpp; same semantics: cross-correlation, stride, pad, dilation, NCHW).
//
// The columns of a chunk of nb samples lie side by side, so each product is one plain gemm over
// the whole chunk instead of nb small ones:
//   col  (CRS, nb*PQ):  col[crs][n*PQ + pq] = x_n at tap crs of output pixel pq (0 outside)
//   dyT  (K, nb*PQ):    dy of the chunk with the sample and channel axes swapped
// Forward:   yT (K, nb*PQ) = W (K, CRS) x col, then yT is swapped back into y (nb, K, PQ) with
//            the bias added on the way.
// Backward:  dW (K, CRS) (+)= dyT x col^T  (beta = 0 on the first chunk, 1 after: the sum over
//            chunks runs in a fixed order on one stream, so it is deterministic)
//            dcol (CRS, nb*PQ) = W^T (CRS, K) x dyT, then col2im as a gather (one thread per dx
//            element summing its taps in a fixed order: no atomics, deterministic)
//            db (K) = sum of dy over N, P, Q in double, one block per channel.
// Scratch (col and yT / dyT) is bounded by kScratchBytes; a sample needing more runs alone.
#include <algorithm>
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/runtime.cuh"

namespace sprig::cuda {
namespace {

using detail::blocks_for;
using detail::kThreads;

constexpr int64_t kScratchBytes = int64_t(256) << 20;

// Geometry passed to the kernels by value.
struct Geom {
  int64_t C, H, W, K, R, S, P, Q;
  int64_t stride, pad, dilation;
};

// An input smaller than the dilated kernel has no output pixels: P and Q are clamped to 0.
Geom geom_of(const Conv2dShape& s) {
  const int64_t P = std::max<int64_t>(s.P(), 0), Q = std::max<int64_t>(s.Q(), 0);
  return Geom{s.C, s.H, s.W, s.K, s.R, s.S, P, Q, s.stride, s.pad, s.dilation};
}

#define GRID_STRIDE_LOOP(i, total)                                              \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (total); \
       i += (int64_t)gridDim.x * blockDim.x)

// col (CRS, nb*PQ) <- x (nb, C, H, W) of one chunk; taps outside the image are 0. One thread per
// col element, in col order, so the writes coalesce (and for stride 1 so do the reads).
__global__ void im2col_kernel(Geom g, int64_t nb, const float* x, float* col) {
  const int64_t PQ = g.P * g.Q, RS = g.R * g.S, row = nb * PQ;
  const int64_t total = g.C * RS * row;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t crs = i / row, j = i % row;
    const int64_t n = j / PQ, pq = j % PQ;
    const int64_t p = pq / g.Q, q = pq % g.Q;
    const int64_t c = crs / RS, r = crs % RS / g.S, ss = crs % g.S;
    const int64_t h = p * g.stride - g.pad + r * g.dilation;
    const int64_t w = q * g.stride - g.pad + ss * g.dilation;
    float v = 0.0f;
    if (h >= 0 && h < g.H && w >= 0 && w < g.W) v = x[((n * g.C + c) * g.H + h) * g.W + w];
    col[i] = v;
  }
}

// dx (nb, C, H, W) of one chunk = sum of dcol (CRS, nb*PQ) over the taps that read each input
// element. One thread per dx element, summing in (r, s) order: deterministic, no atomics, and
// every element is written (0 where no output pixel reads it).
__global__ void col2im_kernel(Geom g, int64_t nb, const float* dcol, float* dx) {
  const int64_t PQ = g.P * g.Q, HW = g.H * g.W, CHW = g.C * HW, row = nb * PQ;
  const int64_t total = nb * CHW;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t n = i / CHW, c = i % CHW / HW, h = i % HW / g.W, w = i % g.W;
    float acc = 0.0f;
    for (int64_t r = 0; r < g.R; r++) {
      // Output row p reads row h through kernel row r when p * stride - pad + r * dilation == h.
      const int64_t hp = h + g.pad - r * g.dilation;
      if (hp < 0 || hp % g.stride != 0) continue;
      const int64_t p = hp / g.stride;
      if (p >= g.P) continue;
      for (int64_t ss = 0; ss < g.S; ss++) {
        const int64_t wq = w + g.pad - ss * g.dilation;
        if (wq < 0 || wq % g.stride != 0) continue;
        const int64_t q = wq / g.stride;
        if (q >= g.Q) continue;
        acc += dcol[((c * g.R + r) * g.S + ss) * row + n * PQ + p * g.Q + q];
      }
    }
    dx[i] = acc;
  }
}

// y (nb, K, PQ) = yT (K, nb*PQ) with the axes swapped, plus b (K) when not null.
__global__ void unswap_bias_kernel(int64_t nb, int64_t K, int64_t PQ, const float* yT,
                                   const float* b, float* y) {
  const int64_t KPQ = K * PQ, total = nb * KPQ;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t n = i / KPQ, k = i % KPQ / PQ, pq = i % PQ;
    const float v = yT[(k * nb + n) * PQ + pq];
    y[i] = b ? v + b[k] : v;
  }
}

// dyT (K, nb*PQ) = dy (nb, K, PQ) with the axes swapped (written in dyT order).
__global__ void swap_kernel(int64_t nb, int64_t K, int64_t PQ, const float* dy, float* dyT) {
  const int64_t row = nb * PQ, total = K * row;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t k = i / row, n = i % row / PQ, pq = i % PQ;
    dyT[i] = dy[(n * K + k) * PQ + pq];
  }
}

// db (K): db[k] = sum of dy (N, K, PQ) over n and pq. One block per channel; each thread sums a
// fixed strided subset in double and the block adds the partials in a fixed tree, so the result
// does not change from run to run.
__global__ void bias_grad_kernel(int64_t N, int64_t K, int64_t PQ, const float* dy, float* db) {
  __shared__ double partial[kThreads];
  const int64_t k = blockIdx.x, count = N * PQ;
  double acc = 0.0;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x)
    acc += dy[((j / PQ) * K + k) * PQ + j % PQ];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[k] = (float)partial[0];
}

// Samples per chunk: as many as fit kScratchBytes at floats_per_sample each, at least one.
int64_t chunk_samples(int64_t N, int64_t floats_per_sample) {
  const int64_t fit =
      kScratchBytes / (int64_t)sizeof(float) / std::max<int64_t>(floats_per_sample, 1);
  return std::max<int64_t>(1, std::min(N, fit));
}

// Scratch from the caching allocator, returned when the call ends (stream-ordered, so freeing
// right after queuing the kernels that use it is safe).
struct Scratch {
  float* p = nullptr;
  size_t bytes = 0;
  explicit Scratch(int64_t floats) : bytes(size_t(std::max<int64_t>(floats, 1)) * sizeof(float)) {
    p = static_cast<float*>(device_alloc(bytes));
  }
  ~Scratch() { device_free(p, bytes); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

void check_shape(const Conv2dShape& s, const char* who) {
  SPRIG_CHECK(s.N >= 0 && s.C >= 0 && s.H >= 0 && s.W >= 0 && s.K >= 0 && s.R >= 0 && s.S >= 0, who,
              ": negative dimension");
  SPRIG_CHECK(s.stride >= 1 && s.dilation >= 1 && s.pad >= 0, who, ": stride ", s.stride,
              ", dilation ", s.dilation, " must be >= 1 and pad ", s.pad, " >= 0");
  SPRIG_CHECK(s.K <= INT_MAX, who, ": K = ", s.K, " channels do not fit a grid");
}

void zero_floats(float* p, int64_t n) {
  if (p && n > 0) zero(p, size_t(n) * sizeof(float));
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,
                    float* y) {
  check_shape(s, "cuda::conv2d_forward");
  const Geom g = geom_of(s);
  const int64_t CRS = s.C * s.R * s.S, PQ = g.P * g.Q, CHW = s.C * s.H * s.W, KPQ = s.K * PQ;
  if (s.N == 0 || KPQ == 0) return;  // y is empty
  cudaStream_t st = detail::stream();
  const int64_t nb_max = chunk_samples(s.N, (CRS + s.K) * PQ);
  Scratch col(nb_max * CRS * PQ);  // (CRS, nb*PQ)
  Scratch yT(nb_max * KPQ);        // (K, nb*PQ)
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0);
    im2col_kernel<<<blocks_for(CRS * nb * PQ), kThreads, 0, st>>>(g, nb, x + n0 * CHW, col.p);
    SPRIG_CUDA_LAUNCHED("im2col_kernel");
    // yT (K, nb*PQ) = W (K, CRS) x col (CRS, nb*PQ); CRS == 0 gives zeros.
    gemm(false, false, s.K, nb * PQ, CRS, 1.0f, w, CRS, col.p, nb * PQ, 0.0f, yT.p, nb * PQ);
    unswap_bias_kernel<<<blocks_for(nb * KPQ), kThreads, 0, st>>>(nb, s.K, PQ, yT.p, b,
                                                                  y + n0 * KPQ);
    SPRIG_CUDA_LAUNCHED("unswap_bias_kernel");
  }
}

void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db) {
  check_shape(s, "cuda::conv2d_backward");
  const Geom g = geom_of(s);
  const int64_t CRS = s.C * s.R * s.S, PQ = g.P * g.Q;
  const int64_t CHW = s.C * s.H * s.W, KPQ = s.K * PQ;
  cudaStream_t st = detail::stream();

  if (db && s.K > 0) {  // handles N * PQ == 0 (writes zeros)
    bias_grad_kernel<<<(unsigned)s.K, kThreads, 0, st>>>(s.N, s.K, PQ, dy, db);
    SPRIG_CUDA_LAUNCHED("bias_grad_kernel");
  }
  // With no samples, output pixels, channels or taps, the remaining gradients are all zero.
  const bool want_dw = dw && s.K * CRS > 0, want_dx = dx && s.N * CHW > 0;
  if (s.N == 0 || PQ == 0 || s.K == 0 || CRS == 0) {
    if (want_dw) zero_floats(dw, s.K * CRS);
    if (want_dx) zero_floats(dx, s.N * CHW);
    return;
  }
  if (!want_dw && !want_dx) return;

  const int64_t nb_max = chunk_samples(s.N, (CRS + s.K) * PQ);
  Scratch col(nb_max * CRS * PQ);  // (CRS, nb*PQ): im2col of x, then dcol
  Scratch dyT(nb_max * KPQ);       // (K, nb*PQ)
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0), row = nb * PQ;
    swap_kernel<<<blocks_for(s.K * row), kThreads, 0, st>>>(nb, s.K, PQ, dy + n0 * KPQ, dyT.p);
    SPRIG_CUDA_LAUNCHED("swap_kernel");
    if (want_dw) {
      im2col_kernel<<<blocks_for(CRS * row), kThreads, 0, st>>>(g, nb, x + n0 * CHW, col.p);
      SPRIG_CUDA_LAUNCHED("im2col_kernel");
      // dW (K, CRS) (+)= dyT (K, nb*PQ) x col^T (nb*PQ, CRS)
      gemm(false, true, s.K, CRS, row, 1.0f, dyT.p, row, col.p, row, n0 == 0 ? 0.0f : 1.0f, dw,
           CRS);
    }
    if (want_dx) {
      // dcol (CRS, nb*PQ) = W^T (CRS, K) x dyT (K, nb*PQ), over col (the dW product above is
      // queued before it on the same stream).
      gemm(true, false, CRS, row, s.K, 1.0f, w, CRS, dyT.p, row, 0.0f, col.p, row);
      col2im_kernel<<<blocks_for(nb * CHW), kThreads, 0, st>>>(g, nb, col.p, dx + n0 * CHW);
      SPRIG_CUDA_LAUNCHED("col2im_kernel");
    }
  }
}

}  // namespace sprig::cuda
