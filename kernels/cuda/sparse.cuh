#pragma once
// Sparse Linear and Conv2d layers on the GPU (mirrors kernels/cpu/sparse.h, CSR only): three
// ways to compute y (B, rows) = x (B, cols) W^T + bias with a CSR weight (kernels/sparse_ref.h,
// its arrays in device memory: 32-bit columns and the row order, as SparseWeight::to makes them):
//   Cusparse            cusparseSpMM (generic API), the library's choice of algorithm
//   RowSplit, ColTile   our SpMM kernels, for the shapes where cuSPARSE loses
//   csr_linear_naive    one thread per output, the reference the tests compare against
// Plain C++ may include this header: it names no CUDA type. All calls are queued on sprig's
// stream (kernels/cuda/common.cuh) and take device pointers; none of them synchronises.
#include <cstdint>

#include "kernels/shapes.h"
#include "kernels/sparse_ref.h"

namespace sprig::cuda {

// sprig's own SpMM kernels. Both work on transposed activations, xt (cols, B) -> yt (rows, B),
// so the threads of a row read consecutive batch entries of xt (float4 loads, coalesced) for
// each stored (value, column):
//   RowSplit  Sputnik-style: sub-warps of 2-32 lanes per row (sized to B), rows scheduled by
//             decreasing length, x read from L2 per entry. Best at high sparsity / small B.
//             For B <= 4 the lanes split each row's entries instead (CSR-vector).
//   ColTile   blocks of 64 rows stage tiles of xt in shared memory and walk the columns once:
//             less L2 traffic at 50-95% sparsity with a large B. Needs the columns of each row
//             in increasing order (csr_from_dense and load_packed guarantee it).
// Cusparse computes the column-major product Y' (rows, B) = W (rows, cols) X' (cols, B), where
// X' is x read as column-major (cols, B) and Y' is y read as column-major: no transposes unless
// x_t / y_t ask for them.
enum class CsrAlgo { RowSplit, ColTile, Cusparse };
inline constexpr CsrAlgo kCsrAlgos[] = {CsrAlgo::Cusparse, CsrAlgo::RowSplit, CsrAlgo::ColTile};
const char* csr_algo_name(CsrAlgo a);  // "cusparse", "rowsplit", "coltile"
// x_t / y_t say whether x is given as (cols, B) and y is wanted as (rows, B), as
// cpu::csr_linear_ex; otherwise x and y are transposed through scratch buffers. A chain of such
// layers keeps its activations transposed and transposes only at the ends. relu sets
// y = max(y, 0) after the bias (NaN passes through, as relu_forward).
void csr_linear_ex(const CsrRef& w, int64_t B, const float* x, bool x_t, const float* bias,
                   bool relu, float* y, bool y_t, CsrAlgo algo = CsrAlgo::RowSplit);
// csr_linear_ex with x (B, cols) and y (B, rows).
void csr_linear(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y,
                CsrAlgo algo = CsrAlgo::RowSplit);

// y (N, K, P, Q) = conv(x (N, C, H, W), W) + bias (K; may be null), then max(y, 0) when relu,
// with W (K, C*R*S) in CSR, as cpu::csr_conv2d. im2col writes (C*R*S, N*P*Q), which is the
// transposed activation layout the kernels above take, so one SpMM computes (K, N*P*Q), and a
// permute gives (N, K, P*Q). Scratch: C*R*S x N*P*Q floats for im2col, K x N*P*Q for the
// product. Throws sprig::Error when W is not K x C*R*S.
void csr_conv2d(const CsrRef& w, const Conv2dShape& s, const float* x, const float* bias, float* y,
                bool relu = false, CsrAlgo algo = CsrAlgo::RowSplit);

// The plain kernel: one thread per output y[b][r], a loop over row r. For tests.
void csr_linear_naive(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y);

// out (cols, rows) = in (rows, cols)^T, a tiled transpose through shared memory.
void transpose(int64_t rows, int64_t cols, const float* in, float* out);

}  // namespace sprig::cuda
