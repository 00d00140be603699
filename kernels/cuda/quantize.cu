// Fake quantisation for quantisation-aware training: the formulas of kernels/cpu/quantize.cpp.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/quantize.cuh"

namespace sprig::cuda {

using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

__global__ void fake_quantize_kernel(int64_t n, const float* x, float scale, float zero, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = rintf(x[i] / scale) + zero;  // IEEE division and round-half-even, as the CPU
    const float above = 0.0f < v ? v : 0.0f;     // NaN: 0
    const float q = above < 255.0f ? above : 255.0f;
    y[i] = scale * (q - zero);
  }
}

__global__ void fake_quantize_backward_kernel(int64_t n, const float* x, const float* dy,
                                              float scale, float zero, float* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = rintf(x[i] / scale) + zero;
    dx[i] = v >= 0.0f && v <= 255.0f ? dy[i] : 0.0f;
  }
}

// One block per row: the row's largest |w| (and whether all are finite), then its codes.
__global__ void fake_quantize_channels_kernel(int64_t cols, const float* w, float* y) {
  __shared__ float amax[kThreads];
  __shared__ int bad[kThreads];
  const float* row = w + int64_t(blockIdx.x) * cols;
  float m = 0.0f;
  int nonfinite = 0;
  for (int64_t k = threadIdx.x; k < cols; k += blockDim.x) {
    m = fmaxf(m, fabsf(row[k]));
    nonfinite |= !isfinite(row[k]);
  }
  amax[threadIdx.x] = m;
  bad[threadIdx.x] = nonfinite;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      amax[threadIdx.x] = fmaxf(amax[threadIdx.x], amax[threadIdx.x + s]);
      bad[threadIdx.x] |= bad[threadIdx.x + s];
    }
    __syncthreads();
  }
  const float scale = bad[0] ? NAN : amax[0] > 0.0f ? amax[0] / 127.0f : 1.0f;
  float* out = y + int64_t(blockIdx.x) * cols;
  for (int64_t k = threadIdx.x; k < cols; k += blockDim.x)
    out[k] = scale * fminf(fmaxf(rintf(row[k] / scale), -127.0f), 127.0f);
}

// ---- int8 inference -----------------------------------------------------------------------

// The epilogue of every int8 layer: as cpu::dequantize_bias_relu.
__device__ inline float dequantize(int32_t sum, float a_scale, float w_scale, const float* bias,
                                   int64_t n, bool relu) {
  float v = a_scale * w_scale * float(sum);
  if (bias) v += bias[n];
  return relu ? fmaxf(v, 0.0f) : v;
}

// Sum of the products of 4 signed bytes: dp4a where the GPU has it (sm_61+), else the loop
// (also what the CPU emulator runs).
__device__ inline int32_t dot4(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610
  return __dp4a(int(a), int(b), 0);
#else
  int32_t s = 0;
  for (int j = 0; j < 4; ++j)
    s += int32_t(int8_t(uint8_t(a >> (8 * j)))) * int32_t(int8_t(uint8_t(b >> (8 * j))));
  return s;
#endif
}

__global__ void quantize_kernel(int64_t n, const float* x, float scale, float zero, uint8_t* q) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = rintf(x[i] / scale) + zero;  // as fake_quantize_kernel
    const float above = 0.0f < v ? v : 0.0f;
    q[i] = uint8_t(above < 255.0f ? above : 255.0f);
  }
}

constexpr int kTile = 16;  // linear: 16 x 16 outputs per block, 16 words (64 k) per step

// Activations are made signed by flipping their top bit (a - 128, so dp4a multiplies signed
// bytes): sum (a - zero) w = sum (a - 128) w + (128 - zero) row_sum.
__global__ void linear_u8s8_kernel(int64_t M, int64_t N, int64_t K, const uint8_t* A,
                                   int32_t a_zero, const int32_t* w_words, const int32_t* row_sums,
                                   float a_scale, const float* w_scales, const float* bias,
                                   bool relu, float* y) {
  __shared__ uint32_t a_tile[kTile][kTile];  // (16 rows, 16 words)
  __shared__ uint32_t w_tile[kTile][kTile];  // (16 columns, 16 words)
  const int64_t words = (K + 3) / 4;
  const int64_t m = int64_t(blockIdx.y) * kTile + threadIdx.y;
  const int64_t n = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const int64_t w_row = int64_t(blockIdx.x) * kTile + threadIdx.y;  // the W row this thread loads
  int32_t sum = 0;
  for (int64_t w0 = 0; w0 < words; w0 += kTile) {
    const int64_t word = w0 + threadIdx.x;
    uint32_t a = 0x80808080u;  // bytes of 128: 0 once flipped (and W is 0 there)
    if (m < M && word < words) {
      a = 0;
      for (int j = 0; j < 4; ++j) {
        const int64_t k = 4 * word + j;
        a |= uint32_t(k < K ? A[m * K + k] : 128) << (8 * j);
      }
    }
    a_tile[threadIdx.y][threadIdx.x] = a ^ 0x80808080u;
    w_tile[threadIdx.y][threadIdx.x] =
        w_row < N && word < words ? uint32_t(w_words[w_row * words + word]) : 0u;
    __syncthreads();
    for (int t = 0; t < kTile; ++t) sum += dot4(a_tile[threadIdx.y][t], w_tile[threadIdx.x][t]);
    __syncthreads();
  }
  if (m < M && n < N)
    y[m * N + n] =
        dequantize(sum + (128 - a_zero) * row_sums[n], a_scale, w_scales[n], bias, n, relu);
}

// One thread per output: the direct loop (padding reads as x_zero, which adds 0).
// (Conv2dShape's P() and Q() are host functions: the host passes them.)
__global__ void conv2d_u8s8_kernel(Conv2dShape s, int64_t P, int64_t Q, const uint8_t* x,
                                   int32_t x_zero, const int8_t* w, float a_scale,
                                   const float* w_scales, const float* bias, bool relu, float* y) {
  const int64_t total = s.N * s.K * P * Q;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t q = i % Q, p = (i / Q) % P, k = (i / (Q * P)) % s.K, n = i / (Q * P * s.K);
    int32_t sum = 0;
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t ih = p * s.stride - s.pad + r * s.dilation;
        if (ih < 0 || ih >= s.H) continue;
        const uint8_t* xrow = x + ((n * s.C + c) * s.H + ih) * s.W;
        const int8_t* wrow = w + ((k * s.C + c) * s.R + r) * s.S;
        for (int64_t t = 0; t < s.S; ++t) {
          const int64_t iw = q * s.stride - s.pad + t * s.dilation;
          if (iw >= 0 && iw < s.W) sum += (int32_t(xrow[iw]) - x_zero) * int32_t(wrow[t]);
        }
      }
    y[i] = dequantize(sum, a_scale, w_scales[k], bias, k, relu);
  }
}

}  // namespace

void fake_quantize_activations(int64_t n, const float* x, float scale, int32_t zero, float* y) {
  if (n <= 0) return;
  fake_quantize_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, scale, float(zero), y);
  SPRIG_CUDA_LAUNCHED("fake_quantize_kernel");
}

void fake_quantize_activations_backward(int64_t n, const float* x, const float* dy, float scale,
                                        int32_t zero, float* dx) {
  if (n <= 0) return;
  fake_quantize_backward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, dy, scale,
                                                                          float(zero), dx);
  SPRIG_CUDA_LAUNCHED("fake_quantize_backward_kernel");
}

void fake_quantize_weights_per_channel(int64_t rows, int64_t cols, const float* w, float* y) {
  if (rows <= 0 || cols <= 0) return;
  fake_quantize_channels_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(cols, w, y);
  SPRIG_CUDA_LAUNCHED("fake_quantize_channels_kernel");
}

void quantize_activations(int64_t n, const float* x, float scale, int32_t zero, uint8_t* q) {
  if (n <= 0) return;
  quantize_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, x, scale, float(zero), q);
  SPRIG_CUDA_LAUNCHED("quantize_kernel");
}

std::vector<int32_t> int8_weight_words(const int8_t* W, int64_t N, int64_t K) {
  const int64_t words = (K + 3) / 4;
  std::vector<int32_t> out(size_t(N * words), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t byte = uint8_t(W[n * K + k]);
      uint32_t& word = reinterpret_cast<uint32_t&>(out[size_t(n * words + k / 4)]);
      word |= byte << (8 * (k % 4));
    }
  return out;
}

void linear_u8s8_dequantize(int64_t M, int64_t N, int64_t K, const uint8_t* A, int32_t a_zero,
                            const int32_t* w_words, const int32_t* row_sums, float a_scale,
                            const float* w_scales, const float* bias, bool relu, float* y) {
  SPRIG_CHECK(a_zero >= 0 && a_zero <= 255, "linear_u8s8_dequantize: zero point ", a_zero,
              " is not a uint8");
  if (M <= 0 || N <= 0) return;
  const dim3 block(kTile, kTile);
  const dim3 grid(unsigned((N + kTile - 1) / kTile), unsigned((M + kTile - 1) / kTile));
  linear_u8s8_kernel<<<grid, block, 0, stream()>>>(M, N, K, A, a_zero, w_words, row_sums, a_scale,
                                                   w_scales, bias, relu, y);
  SPRIG_CUDA_LAUNCHED("linear_u8s8_kernel");
}

void conv2d_u8s8_dequantize(const Conv2dShape& s, const uint8_t* x, int32_t x_zero, const int8_t* w,
                            float a_scale, const float* w_scales, const float* bias, bool relu,
                            float* y) {
  SPRIG_CHECK(x_zero >= 0 && x_zero <= 255, "conv2d_u8s8_dequantize: zero point ", x_zero,
              " is not a uint8");
  const int64_t total = s.N * s.K * s.P() * s.Q();
  if (total <= 0) return;
  conv2d_u8s8_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(
      s, s.P(), s.Q(), x, x_zero, w, a_scale, w_scales, bias, relu, y);
  SPRIG_CUDA_LAUNCHED("conv2d_u8s8_kernel");
}

}  // namespace sprig::cuda
