// CSR Linear and Conv2d layers on the GPU: cuSPARSE's SpMM, two SpMMs of our own (row-split,
// column-tiled), im2col for convolutions, and a naive reference (see sparse.cuh).
//
// Why our kernels work on transposed activations: y[b][r] = sum_k W[r][k] x[b][k]. A thread
// block that owns row r reads, for every stored (value, column k), the batch entries x[.][k].
// In x's own layout (B, cols) those are `cols` floats apart, one 32-byte sector per thread; in
// xt (cols, B) they are contiguous, so the threads of a row read a whole row of xt with float4
// loads, and write yt (rows, B) the same way. The transposes in and out cost
// 2 * (B * cols + B * rows) floats of traffic, small next to the product, and nothing at all
// inside a chain of CSR layers (csr_linear_ex with x_t / y_t) or after im2col, whose output
// (C*R*S, N*P*Q) already is xt.
#include <algorithm>
#include <numeric>
#include <utility>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/runtime.cuh"
#include "kernels/cuda/sparse.cuh"

namespace sprig::cuda {

using namespace detail;

namespace {

constexpr int kRowSplitThreads = 128;  // 4 warps per block
constexpr int kTile = 32;              // transpose tile (kTile x kTile), kTile x 8 threads

// ---- row-split SpMM ----------------------------------------------------------------------------
// A "sub-warp" of L lanes owns one output row and L * VEC consecutive batch entries; a block has
// kRowSplitThreads / L rows. The rows come in row_order (decreasing nnz), so the sub-warps of a
// warp, which stage their rows in lockstep, hold rows of about the same length (Sputnik's row
// swizzle). Each round, every lane stages one (column, value) of its row into shared memory;
// then each lane walks the sub-warp's L staged entries, loading VEC batch entries of xt's row
// `column` per entry. grid.x tiles the batch, grid.y (grid-stride) tiles the rows.
template <int L, int VEC>
__global__ void __launch_bounds__(kRowSplitThreads)
    csr_rowsplit_kernel(int64_t rows, int64_t B, const int32_t* __restrict__ row_ptr,
                        const int32_t* __restrict__ col, const float* __restrict__ val,
                        const int32_t* __restrict__ row_order,
                        const float* __restrict__ xt,  // (cols, B)
                        const float* __restrict__ bias, bool relu,
                        float* __restrict__ yt) {  // (rows, B)
  static_assert(L >= 1 && L <= 32 && (32 % L) == 0, "sub-warp of 1..32 lanes, power of two");
  static_assert(VEC == 1 || VEC == 4, "scalar or float4 loads");
  __shared__ int2 stage[kRowSplitThreads];  // (column, value bits), L per sub-warp
  constexpr int kRowsPerBlock = kRowSplitThreads / L;
  const int lane_in_sub = int(threadIdx.x) % L;
  const int2* sub_stage = stage + (int(threadIdx.x) - lane_in_sub);
  const int64_t b0 = (int64_t(blockIdx.x) * L + lane_in_sub) * VEC;
  const bool active = b0 < B;  // VEC == 4 only when B % 4 == 0, so b0 + 3 < B too

  for (int64_t tile = blockIdx.y; tile * kRowsPerBlock < rows; tile += gridDim.y) {
    const int64_t slot = tile * kRowsPerBlock + threadIdx.x / L;
    int64_t row = -1;
    int begin = 0, len = 0;
    if (slot < rows) {
      row = row_order[slot];
      begin = row_ptr[row];
      len = row_ptr[row + 1] - begin;
    }
    // Every lane of the warp runs the same number of staging rounds (the longest row's), so
    // the warp-wide __syncwarp()s below are reached by all 32 lanes.
    int rounds_len = len;
    for (int o = 16; o > 0; o >>= 1)
      rounds_len = max(rounds_len, __shfl_xor_sync(0xffffffffu, rounds_len, o));

    float acc[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] = 0.0f;
    for (int k0 = 0; k0 < rounds_len; k0 += L) {
      const int k = k0 + lane_in_sub;
      int2 e = make_int2(0, 0);
      if (k < len) e = make_int2(col[begin + k], __float_as_int(val[begin + k]));
      __syncwarp();  // the previous round's reads are done
      stage[threadIdx.x] = e;
      __syncwarp();
      const int n = min(L, len - k0);  // this row's entries in the round (may be <= 0)
      if (active) {
#pragma unroll 4
        for (int j = 0; j < n; ++j) {
          const int2 p = sub_stage[j];
          const float v = __int_as_float(p.y);
          const float* xr = xt + int64_t(p.x) * B + b0;
          if constexpr (VEC == 4) {
            const float4 q = __ldg(reinterpret_cast<const float4*>(xr));
            acc[0] = fmaf(v, q.x, acc[0]);
            acc[1] = fmaf(v, q.y, acc[1]);
            acc[2] = fmaf(v, q.z, acc[2]);
            acc[3] = fmaf(v, q.w, acc[3]);
          } else {
            acc[0] = fmaf(v, __ldg(xr), acc[0]);
          }
        }
      }
    }
    if (row >= 0 && active) {
      const float bb = bias ? bias[row] : 0.0f;
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        acc[i] += bb;
        if (relu) acc[i] = acc[i] <= 0.0f ? 0.0f : acc[i];  // NaN stays
      }
      float* yr = yt + row * B + b0;
      if constexpr (VEC == 4)
        *reinterpret_cast<float4*>(yr) = make_float4(acc[0], acc[1], acc[2], acc[3]);
      else
        yr[0] = acc[0];
    }
  }
}

template <int L, int VEC>
void launch_rowsplit(const CsrRef& w, int64_t B, const float* xt, const float* bias, bool relu,
                     float* yt) {
  constexpr int kRowsPerBlock = kRowSplitThreads / L;
  const int64_t batch_tiles = (B + int64_t(L) * VEC - 1) / (int64_t(L) * VEC);
  const int64_t row_tiles = (w.rows + kRowsPerBlock - 1) / kRowsPerBlock;
  dim3 grid(unsigned(batch_tiles), unsigned(std::min<int64_t>(row_tiles, 65535)));
  csr_rowsplit_kernel<L, VEC><<<grid, kRowSplitThreads, 0, stream()>>>(
      w.rows, B, w.row_ptr, w.col32, w.values, w.row_order, xt, bias, relu, yt);
  SPRIG_CUDA_LAUNCHED("csr_rowsplit_kernel");
}

// ---- row-split for B <= 4: the lanes split the row's entries -----------------------------------
// With 4 or fewer batch entries the kernel above gives a row one lane, which walks the whole
// row alone. Here a sub-warp of L lanes shares a row the other way (CSR-vector): lane i takes
// entries i, i + L, ... and keeps all NB batch outputs, and the sub-warp sums its partials with
// shuffles. L follows the average row length, so short rows do not leave lanes idle.
template <int L, int NB>
__global__ void __launch_bounds__(kRowSplitThreads)
    csr_vector_kernel(int64_t rows, const int32_t* __restrict__ row_ptr,
                      const int32_t* __restrict__ col, const float* __restrict__ val,
                      const int32_t* __restrict__ row_order,
                      const float* __restrict__ xt,  // (cols, NB)
                      const float* __restrict__ bias, bool relu,
                      float* __restrict__ yt) {  // (rows, NB)
  static_assert(L >= 1 && L <= 32 && (32 % L) == 0, "sub-warp of 1..32 lanes, power of two");
  constexpr int kRowsPerBlock = kRowSplitThreads / L;
  const int lane_in_sub = int(threadIdx.x) % L;
  for (int64_t tile = blockIdx.x; tile * kRowsPerBlock < rows; tile += gridDim.x) {
    const int64_t slot = tile * kRowsPerBlock + threadIdx.x / L;
    int64_t row = -1;
    float acc[NB];
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[b] = 0.0f;
    if (slot < rows) {
      row = row_order[slot];
      const int end = row_ptr[row + 1];
      for (int k = row_ptr[row] + lane_in_sub; k < end; k += L) {
        const float v = val[k];
        const float* xr = xt + int64_t(col[k]) * NB;
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[b] = fmaf(v, __ldg(xr + b), acc[b]);
      }
    }
    // Every lane of the warp reaches the shuffles (the xor offsets stay inside the sub-warp).
#pragma unroll
    for (int o = L / 2; o > 0; o /= 2)
#pragma unroll
      for (int b = 0; b < NB; ++b) acc[b] += __shfl_xor_sync(0xffffffffu, acc[b], o);
    if (row >= 0 && lane_in_sub == 0) {
      const float bb = bias ? bias[row] : 0.0f;
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        float out = acc[b] + bb;
        if (relu) out = out <= 0.0f ? 0.0f : out;  // NaN stays
        yt[row * NB + b] = out;
      }
    }
  }
}

template <int L, int NB>
void launch_vector(const CsrRef& w, const float* xt, const float* bias, bool relu, float* yt) {
  constexpr int kRowsPerBlock = kRowSplitThreads / L;
  const int64_t row_tiles = (w.rows + kRowsPerBlock - 1) / kRowsPerBlock;
  csr_vector_kernel<L, NB>
      <<<unsigned(std::min<int64_t>(row_tiles, int64_t(1) << 30)), kRowSplitThreads, 0, stream()>>>(
          w.rows, w.row_ptr, w.col32, w.values, w.row_order, xt, bias, relu, yt);
  SPRIG_CUDA_LAUNCHED("csr_vector_kernel");
}

template <int NB>
void dispatch_vector(const CsrRef& w, const float* xt, const float* bias, bool relu, float* yt) {
  const int64_t avg = w.rows > 0 ? w.nnz / w.rows : 0;  // entries per row
  if (avg <= 2)
    launch_vector<2, NB>(w, xt, bias, relu, yt);
  else if (avg <= 4)
    launch_vector<4, NB>(w, xt, bias, relu, yt);
  else if (avg <= 8)
    launch_vector<8, NB>(w, xt, bias, relu, yt);
  else if (avg <= 16)
    launch_vector<16, NB>(w, xt, bias, relu, yt);
  else
    launch_vector<32, NB>(w, xt, bias, relu, yt);
}

// B <= 4: CSR-vector. Else lanes per row: enough for B at VEC per lane, a power of two up to a
// warp.
template <int VEC>
void dispatch_rowsplit(const CsrRef& w, int64_t B, const float* xt, const float* bias, bool relu,
                       float* yt) {
  switch (B) {
    case 1:
      return dispatch_vector<1>(w, xt, bias, relu, yt);
    case 2:
      return dispatch_vector<2>(w, xt, bias, relu, yt);
    case 3:
      return dispatch_vector<3>(w, xt, bias, relu, yt);
    case 4:
      return dispatch_vector<4>(w, xt, bias, relu, yt);
    default:
      break;
  }
  const int64_t lanes_needed = (B + VEC - 1) / VEC;
  if (lanes_needed <= 2)  // B >= 5 here: at least 2 lanes
    launch_rowsplit<2, VEC>(w, B, xt, bias, relu, yt);
  else if (lanes_needed <= 4)
    launch_rowsplit<4, VEC>(w, B, xt, bias, relu, yt);
  else if (lanes_needed <= 8)
    launch_rowsplit<8, VEC>(w, B, xt, bias, relu, yt);
  else if (lanes_needed <= 16)
    launch_rowsplit<16, VEC>(w, B, xt, bias, relu, yt);
  else
    launch_rowsplit<32, VEC>(w, B, xt, bias, relu, yt);
}

// ---- column-tiled SpMM -------------------------------------------------------------------------
// The row-split kernel reads x[k][b0 .. b0 + 128) from L2 once per stored entry: nnz * B floats,
// which at 50-90% sparsity and a large batch is more traffic than the dense product's. Here a
// block owns kColTileRows rows x (32 * VEC) batch entries and walks the columns in tiles of
// kColTileK: the block stages xt's tile (kColTileK, 32 * VEC) in shared memory once, then every
// row reads the entries it needs from there. Each warp owns kColTileRows / 8 rows and keeps a
// cursor into each (the columns of a row are increasing, so a row's entries for the next tile
// start where the last tile's ended). L2 traffic drops to rows * cols * B / kColTileRows floats
// whatever the sparsity; the price is a pass over every column tile for every block, so the
// row-split kernel stays the better one at high sparsity or small batches (the plan measures).
constexpr int kColTileThreads = 256;  // 8 warps
constexpr int kColTileRows = 64;      // rows per block, 8 per warp
constexpr int kColTileK = 64;         // columns of x per shared tile

template <int VEC>
__global__ void __launch_bounds__(kColTileThreads)
    csr_coltile_kernel(int64_t rows, int64_t cols, int64_t B, const int32_t* __restrict__ row_ptr,
                       const int32_t* __restrict__ col, const float* __restrict__ val,
                       const int32_t* __restrict__ row_order,
                       const float* __restrict__ xt,  // (cols, B)
                       const float* __restrict__ bias, bool relu,
                       float* __restrict__ yt) {  // (rows, B)
  constexpr int kBT = 32 * VEC;                   // batch entries per block
  constexpr int kRowsPerWarp = kColTileRows / (kColTileThreads / 32);
  __shared__ __align__(16) float xs[kColTileK * kBT];  // (kColTileK, kBT) tile of xt
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  const int64_t bt0 = int64_t(blockIdx.x) * kBT;
  const int64_t b0 = bt0 + int64_t(lane) * VEC;
  const bool active = b0 < B;  // VEC == 4 only when B % 4 == 0

  for (int64_t tile = blockIdx.y; tile * kColTileRows < rows; tile += gridDim.y) {
    int64_t row[kRowsPerWarp];
    int cur[kRowsPerWarp], end[kRowsPerWarp];
    float acc[kRowsPerWarp][VEC];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      // Interleaved, so the 8 warps get rows of about the same length (rows come sorted).
      const int64_t slot = tile * kColTileRows + int64_t(i) * (kColTileThreads / 32) + warp;
      row[i] = -1;
      cur[i] = end[i] = 0;
      if (slot < rows) {
        row[i] = row_order[slot];
        cur[i] = row_ptr[row[i]];
        end[i] = row_ptr[row[i] + 1];
      }
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[i][v] = 0.0f;
    }
    for (int64_t k0 = 0; k0 < cols; k0 += kColTileK) {
      __syncthreads();  // everyone is done with the previous tile
      for (int e = threadIdx.x; e < kColTileK * (kBT / VEC); e += kColTileThreads) {
        const int kk = e / (kBT / VEC), q = e % (kBT / VEC);
        const int64_t k = k0 + kk, b = bt0 + int64_t(q) * VEC;
        float* dst = xs + kk * kBT + q * VEC;
        if constexpr (VEC == 4) {
          float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          if (k < cols && b < B) v = __ldg(reinterpret_cast<const float4*>(xt + k * B + b));
          *reinterpret_cast<float4*>(dst) = v;
        } else {
          dst[0] = (k < cols && b < B) ? __ldg(xt + k * B + b) : 0.0f;
        }
      }
      __syncthreads();
      const int64_t k_end = min(k0 + kColTileK, cols);
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        // Warp-uniform: all lanes share row i, its cursor and its end.
        while (cur[i] < end[i]) {
          const int k = cur[i] + lane;
          int c = 0;
          float v = 0.0f;
          bool in = false;
          if (k < end[i]) {
            c = col[k];
            v = val[k];
            in = c < k_end;
          }
          // The columns increase, so the lanes with an entry in this tile are a prefix.
          const int n = __popc(__ballot_sync(0xffffffffu, in));
          for (int j = 0; j < n; ++j) {
            const int cj = __shfl_sync(0xffffffffu, c, j);
            const float vj = __shfl_sync(0xffffffffu, v, j);
            if (active) {
              const float* xr = xs + (cj - k0) * kBT + lane * VEC;
              if constexpr (VEC == 4) {
                const float4 q = *reinterpret_cast<const float4*>(xr);
                acc[i][0] = fmaf(vj, q.x, acc[i][0]);
                acc[i][1] = fmaf(vj, q.y, acc[i][1]);
                acc[i][2] = fmaf(vj, q.z, acc[i][2]);
                acc[i][3] = fmaf(vj, q.w, acc[i][3]);
              } else {
                acc[i][0] = fmaf(vj, xr[0], acc[i][0]);
              }
            }
          }
          cur[i] += n;
          if (n < 32) break;  // the rest of the row is in later tiles
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      if (row[i] < 0 || !active) continue;
      const float bb = bias ? bias[row[i]] : 0.0f;
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        acc[i][v] += bb;
        if (relu) acc[i][v] = acc[i][v] <= 0.0f ? 0.0f : acc[i][v];  // NaN stays
      }
      float* yr = yt + row[i] * B + b0;
      if constexpr (VEC == 4)
        *reinterpret_cast<float4*>(yr) = make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
      else
        yr[0] = acc[i][0];
    }
  }
}

template <int VEC>
void launch_coltile(const CsrRef& w, int64_t B, const float* xt, const float* bias, bool relu,
                    float* yt) {
  const int64_t batch_tiles = (B + 32 * VEC - 1) / (32 * VEC);
  const int64_t row_tiles = (w.rows + kColTileRows - 1) / kColTileRows;
  dim3 grid(unsigned(batch_tiles), unsigned(std::min<int64_t>(row_tiles, 65535)));
  csr_coltile_kernel<VEC><<<grid, kColTileThreads, 0, stream()>>>(
      w.rows, w.cols, B, w.row_ptr, w.col32, w.values, w.row_order, xt, bias, relu, yt);
  SPRIG_CUDA_LAUNCHED("csr_coltile_kernel");
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// ---- transpose, bias, naive ------------------------------------------------------------------
// out (cols, rows) = in (rows, cols)^T through a padded shared tile (no bank conflicts), so
// both the reads and the writes are coalesced. Grid-stride over tiles in both directions.
__global__ void transpose_kernel(int64_t rows, int64_t cols, const float* __restrict__ in,
                                 float* __restrict__ out) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t tiles_r = (rows + kTile - 1) / kTile, tiles_c = (cols + kTile - 1) / kTile;
  for (int64_t tr = blockIdx.y; tr < tiles_r; tr += gridDim.y)
    for (int64_t tc = blockIdx.x; tc < tiles_c; tc += gridDim.x) {
      const int64_t c = tc * kTile + threadIdx.x;
      for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
        const int64_t r = tr * kTile + i;
        if (r < rows && c < cols) tile[i][threadIdx.x] = in[r * cols + c];
      }
      __syncthreads();
      const int64_t r_out = tr * kTile + threadIdx.x;  // a row of in = a column of out
      for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
        const int64_t c_out = tc * kTile + i;
        if (r_out < rows && c_out < cols) out[c_out * rows + r_out] = tile[threadIdx.x][i];
      }
      __syncthreads();  // the tile is reused by the next iteration
    }
}

// y (B, rows) += bias (may be null), then max(y, 0) when relu.
__global__ void bias_relu_kernel(int64_t n, int64_t rows, const float* __restrict__ bias, bool relu,
                                 float* __restrict__ y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v = y[i] + (bias ? bias[i % rows] : 0.0f);
    if (relu) v = v <= 0.0f ? 0.0f : v;
    y[i] = v;
  }
}

__global__ void csr_naive_kernel(int64_t rows, int64_t cols, int64_t B,
                                 const int32_t* __restrict__ row_ptr,
                                 const int32_t* __restrict__ col, const float* __restrict__ val,
                                 const float* __restrict__ x,  // (B, cols)
                                 const float* __restrict__ bias,
                                 float* __restrict__ y) {  // (B, rows)
  const int64_t n = B * rows;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / rows, r = i % rows;
    float acc = bias ? bias[r] : 0.0f;
    for (int32_t k = row_ptr[r]; k < row_ptr[r + 1]; ++k) acc += val[k] * x[b * cols + col[k]];
    y[i] = acc;
  }
}

// ---- convolution as SpMM
// ------------------------------------------------------------------------- cols (C*R*S, N*P*Q):
// row (c*R + r)*S + s, the weight's column order; column n*P*Q + p*Q + q. Consecutive threads write
// consecutive output positions of one (c, r, s) row. s is passed by value; P and Q (host functions
// of the shape) come separately.
__global__ void im2col_batch_kernel(Conv2dShape s, int64_t P, int64_t Q,
                                    const float* __restrict__ x,  // (N, C, H, W)
                                    float* __restrict__ cols) {
  const int64_t PQ = P * Q, NPQ = s.N * PQ, RS = s.R * s.S;
  const int64_t n_total = s.C * RS * NPQ;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / NPQ, j = i % NPQ;
    const int64_t c = row / RS, r = (row % RS) / s.S, sx = row % s.S;
    const int64_t n = j / PQ, p = (j % PQ) / Q, q = j % Q;
    const int64_t h = p * s.stride - s.pad + r * s.dilation;
    const int64_t w = q * s.stride - s.pad + sx * s.dilation;
    cols[i] =
        (h >= 0 && h < s.H && w >= 0 && w < s.W) ? x[((n * s.C + c) * s.H + h) * s.W + w] : 0.0f;
  }
}

// y (N, K, PQ) = yk (K, N, PQ) with its first two axes swapped.
__global__ void swap_nk_kernel(int64_t N, int64_t K, int64_t PQ,
                               const float* __restrict__ yk,  // (K, N, PQ)
                               float* __restrict__ y) {       // (N, K, PQ)
  const int64_t n_total = N * K * PQ;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / (K * PQ), k = (i / PQ) % K, pq = i % PQ;
    y[i] = yk[(k * N + n) * PQ + pq];
  }
}

void bias_relu(int64_t B, int64_t rows, const float* bias, bool relu, float* y) {
  if (!bias && !relu) return;
  const int64_t n = B * rows;
  bias_relu_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, rows, bias, relu, y);
  SPRIG_CUDA_LAUNCHED("bias_relu_kernel");
}

// n floats of device scratch, freed (stream-ordered) when it goes out of scope.
struct Scratch {
  float* p = nullptr;
  size_t bytes = 0;
  float* alloc(size_t n) {
    bytes = n * sizeof(float);
    p = static_cast<float*>(device_alloc(bytes));
    return p;
  }
  ~Scratch() {
    try {
      device_free(p, bytes);
    } catch (...) {
    }
  }
};

// ---- cuSPARSE ----------------------------------------------------------------------------------
// The weight's checks that every entry point makes: the kernels read col32 and row_order.
void check_device_csr(const CsrRef& w, const char* what) {
  SPRIG_CHECK(w.nnz == 0 || (w.col32 && w.values), what,
              ": the GPU kernels take 32-bit column indices (CsrRef::col32)");
  SPRIG_CHECK(w.rows == 0 || (w.row_ptr && w.row_order), what,
              ": the weight has no row pointers or row order (SparseWeight::to makes them)");
}

// y (B, rows) = x (B, cols) W^T by cusparseSpMM, no bias. x (B, cols) row-major is
// X' (cols, B) column-major; y (B, rows) row-major is Y' (rows, B) column-major, and Y' = W X'.
// The descriptors are made per call (host work only, no allocation on the GPU), the workspace
// from the stream-ordered pool.
void cusparse_spmm(const CsrRef& w, int64_t B, const float* x, float* y) {
  if (w.nnz == 0 || w.cols == 0) {  // cuSPARSE wants arrays; the product is 0
    zero(y, size_t(B * w.rows) * sizeof(float));
    return;
  }
  cusparseHandle_t h = cusparse();
  cusparseSpMatDescr_t mat = nullptr;
  cusparseDnMatDescr_t xd = nullptr, yd = nullptr;
  struct Destroy {
    cusparseSpMatDescr_t* mat;
    cusparseDnMatDescr_t *xd, *yd;
    ~Destroy() {
      if (*mat) cusparseDestroySpMat(*mat);
      if (*xd) cusparseDestroyDnMat(*xd);
      if (*yd) cusparseDestroyDnMat(*yd);
    }
  } destroy{&mat, &xd, &yd};
  SPRIG_CUSPARSE_CHECK(cusparseCreateCsr(
      &mat, w.rows, w.cols, w.nnz, const_cast<int32_t*>(w.row_ptr), const_cast<int32_t*>(w.col32),
      const_cast<float*>(w.values), CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I,
      CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
  SPRIG_CUSPARSE_CHECK(cusparseCreateDnMat(&xd, w.cols, B, w.cols, const_cast<float*>(x),
                                           CUDA_R_32F, CUSPARSE_ORDER_COL));
  SPRIG_CUSPARSE_CHECK(
      cusparseCreateDnMat(&yd, w.rows, B, w.rows, y, CUDA_R_32F, CUSPARSE_ORDER_COL));
  const float alpha = 1.0f, beta = 0.0f;
  const auto op = CUSPARSE_OPERATION_NON_TRANSPOSE;
  size_t need = 0;
  SPRIG_CUSPARSE_CHECK(cusparseSpMM_bufferSize(h, op, op, &alpha, mat, xd, &beta, yd, CUDA_R_32F,
                                               CUSPARSE_SPMM_ALG_DEFAULT, &need));
  Scratch buffer;  // freed stream-ordered, after the SpMM
  buffer.alloc(std::max<size_t>(need, 256) / sizeof(float) + 1);
  SPRIG_CUSPARSE_CHECK(cusparseSpMM(h, op, op, &alpha, mat, xd, &beta, yd, CUDA_R_32F,
                                    CUSPARSE_SPMM_ALG_DEFAULT, buffer.p));
}

}  // namespace

// ---- entry points ------------------------------------------------------------------------------
const char* csr_algo_name(CsrAlgo a) {
  switch (a) {
    case CsrAlgo::RowSplit:
      return "rowsplit";
    case CsrAlgo::ColTile:
      return "coltile";
    case CsrAlgo::Cusparse:
      return "cusparse";
  }
  return "?";
}

void csr_linear_ex(const CsrRef& w, int64_t B, const float* x, bool x_t, const float* bias,
                   bool relu, float* y, bool y_t, CsrAlgo algo) {
  if (B <= 0 || w.rows == 0) return;
  check_device_csr(w, "cuda::csr_linear");
  if (B == 1) x_t = y_t = true;  // (1, n) and (n, 1) are the same memory
  // Freed on return, also when a launch throws: stream-ordered, so after the queued kernels.
  Scratch x_scratch, y_scratch;
  if (algo == CsrAlgo::Cusparse) {  // cuSPARSE takes x (B, cols) and gives y (B, rows)
    const float* xb = x;            // (B, cols)
    if (x_t && B > 1 && w.cols > 0) {
      xb = x_scratch.alloc(size_t(B * w.cols));
      transpose(w.cols, B, x, x_scratch.p);
    }
    float* yb = y_t && B > 1 ? y_scratch.alloc(size_t(B * w.rows)) : y;  // (B, rows)
    cusparse_spmm(w, B, xb, yb);
    bias_relu(B, w.rows, bias, relu, yb);
    if (yb != y) transpose(B, w.rows, yb, y);
    return;
  }
  const float* xt = x;  // (cols, B)
  if (!x_t && w.cols > 0) {
    xt = x_scratch.alloc(size_t(B * w.cols));
    transpose(B, w.cols, x, x_scratch.p);
  }
  float* yt = y_t ? y : y_scratch.alloc(size_t(B * w.rows));  // (rows, B)
  const bool vec4 = B % 4 == 0 && aligned16(xt) && aligned16(yt);
  if (algo == CsrAlgo::ColTile) {
    if (vec4)
      launch_coltile<4>(w, B, xt, bias, relu, yt);
    else
      launch_coltile<1>(w, B, xt, bias, relu, yt);
  } else if (vec4) {
    dispatch_rowsplit<4>(w, B, xt, bias, relu, yt);
  } else {
    dispatch_rowsplit<1>(w, B, xt, bias, relu, yt);
  }
  if (!y_t) transpose(w.rows, B, yt, y);
}

void csr_linear(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y,
                CsrAlgo algo) {
  csr_linear_ex(w, B, x, false, bias, false, y, false, algo);
}

void csr_linear_naive(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y) {
  const int64_t n = B * w.rows;
  if (n <= 0) return;
  csr_naive_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(w.rows, w.cols, B, w.row_ptr, w.col32,
                                                             w.values, x, bias, y);
  SPRIG_CUDA_LAUNCHED("csr_naive_kernel");
}

void csr_conv2d(const CsrRef& w, const Conv2dShape& s, const float* x, const float* bias, float* y,
                bool relu, CsrAlgo algo) {
  SPRIG_CHECK(w.rows == s.K && w.cols == s.C * s.R * s.S, "csr_conv2d: weight is ", w.rows, "x",
              w.cols, ", conv needs ", s.K, "x", s.C * s.R * s.S, " (K x C*R*S)");
  const int64_t PQ = s.P() * s.Q(), NPQ = s.N * PQ;
  if (s.N <= 0 || s.K <= 0 || s.P() <= 0 || s.Q() <= 0) return;
  Scratch cols, yk;  // (C*R*S, N*P*Q), (K, N*P*Q); freed stream-ordered on return
  const int64_t n_cols = w.cols * NPQ;
  if (n_cols > 0) {
    cols.alloc(size_t(n_cols));
    im2col_batch_kernel<<<blocks_for(n_cols), kThreads, 0, stream()>>>(s, s.P(), s.Q(), x, cols.p);
    SPRIG_CUDA_LAUNCHED("im2col_batch_kernel");
  }
  // With one sample, (K, 1 * PQ) is already y's layout.
  float* out = s.N == 1 ? y : yk.alloc(size_t(s.K * NPQ));
  csr_linear_ex(w, NPQ, cols.p, true, bias, relu, out, true, algo);
  if (s.N > 1) {
    const int64_t n = s.N * s.K * PQ;
    swap_nk_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(s.N, s.K, PQ, yk.p, y);
    SPRIG_CUDA_LAUNCHED("swap_nk_kernel");
  }
}

void transpose(int64_t rows, int64_t cols, const float* in, float* out) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t tiles_r = (rows + kTile - 1) / kTile, tiles_c = (cols + kTile - 1) / kTile;
  dim3 grid(unsigned(std::min<int64_t>(tiles_c, 1 << 20)),
            unsigned(std::min<int64_t>(tiles_r, 65535)));
  transpose_kernel<<<grid, dim3(kTile, 8), 0, stream()>>>(rows, cols, in, out);
  SPRIG_CUDA_LAUNCHED("transpose_kernel");
}

}  // namespace sprig::cuda
