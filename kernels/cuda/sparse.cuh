#pragma once
// Sparse Linear and Conv2d layers on the GPU (mirrors kernels/cpu/sparse.h, CSR only): a CSR
// weight uploaded once, and three ways to compute y (B, rows) = x (B, cols) W^T + bias with it:
//   csr_linear_cusparse  cusparseSpMM (generic API), the library's choice of algorithm
//   csr_linear           our SpMM kernels (row-split, Sputnik style; column-tiled), for the
//                        shapes where cuSPARSE loses
//   csr_linear_naive     one thread per output, the reference the tests compare against
// Plain C++ may include this header: it names no CUDA type. All calls are queued on sprig's
// stream (kernels/cuda/common.cuh) and take device pointers; none of them synchronises.
#include <cstdint>

#include "kernels/cpu/sparse.h"

namespace sprig::cuda {

// A CSR matrix W (rows, cols) in device memory (from device_alloc), 32-bit indices.
// Move-only; the destructor frees the arrays and the cuSPARSE state.
struct DeviceCsr {
  int64_t rows = 0, cols = 0, nnz = 0;
  int32_t* row_ptr = nullptr;    // (rows + 1)
  int32_t* col = nullptr;        // (nnz)
  float* values = nullptr;       // (nnz)
  int32_t* row_order = nullptr;  // (rows) rows by decreasing nnz: csr_linear's schedule

  DeviceCsr() = default;
  // Uploads a, checked: row pointers consistent, the columns of each row increasing and in
  // range (as csr_from_dense and load_packed give them), sizes that fit int32. Throws
  // sprig::Error otherwise. The copies are queued; a may be freed on return.
  explicit DeviceCsr(const cpu::CsrMatrix& a);
  ~DeviceCsr();
  DeviceCsr(DeviceCsr&& o) noexcept;
  DeviceCsr& operator=(DeviceCsr&& o) noexcept;
  DeviceCsr(const DeviceCsr&) = delete;
  DeviceCsr& operator=(const DeviceCsr&) = delete;
  void reset();  // frees everything; the matrix becomes empty
  size_t bytes() const;

  // cuSPARSE's matrix descriptor and SpMM workspace, made on first use of
  // csr_linear_cusparse (opaque here: see sparse.cu). Not thread-safe, as sprig's one stream.
  mutable void* cusparse_state = nullptr;
};

// y (B, rows) = x (B, cols) W^T + bias (rows; may be null), then max(y, 0) when relu.
// cuSPARSE computes the column-major product Y' (rows, B) = W (rows, cols) X' (cols, B), where
// X' is x read as column-major (cols, B) and Y' is y read as column-major: no transposes.
void csr_linear_cusparse(const DeviceCsr& w, int64_t B, const float* x, const float* bias, float* y,
                         bool relu = false);

// sprig's own SpMM kernels. Both work on transposed activations, xt (cols, B) -> yt (rows, B),
// so the threads of a row read consecutive batch entries of xt (float4 loads, coalesced) for
// each stored (value, column):
//   RowSplit  Sputnik-style: sub-warps of 2-32 lanes per row (sized to B), rows scheduled by
//             decreasing length, x read from L2 per entry. Best at high sparsity / small B.
//             For B <= 4 the lanes split each row's entries instead (CSR-vector).
//   ColTile   blocks of 64 rows stage tiles of xt in shared memory and walk the columns once:
//             less L2 traffic at 50-95% sparsity with a large B. Needs the columns of each row
//             in increasing order (csr_from_dense and load_packed guarantee it).
enum class CsrAlgo { RowSplit, ColTile };
// x_t / y_t say whether x is given as (cols, B) and y is wanted as (rows, B), as
// cpu::csr_linear_ex; otherwise x and y are transposed through scratch buffers. A chain of such
// layers keeps its activations transposed and transposes only at the ends. relu sets
// y = max(y, 0) after the bias (NaN passes through, as relu_forward).
void csr_linear_ex(const DeviceCsr& w, int64_t B, const float* x, bool x_t, const float* bias,
                   bool relu, float* y, bool y_t, CsrAlgo algo = CsrAlgo::RowSplit);
// csr_linear_ex with x (B, cols) and y (B, rows).
void csr_linear(const DeviceCsr& w, int64_t B, const float* x, const float* bias, float* y,
                CsrAlgo algo = CsrAlgo::RowSplit);

// y (N, K, P, Q) = conv(x (N, C, H, W), W) + bias (K; may be null), then max(y, 0) when relu,
// with W (K, C*R*S) in CSR, as cpu::csr_conv2d. im2col writes (C*R*S, N*P*Q), which is the
// transposed activation layout the kernels above take, so one SpMM computes (K, N*P*Q), and a
// permute gives (N, K, P*Q). Scratch: C*R*S x N*P*Q floats for im2col, K x N*P*Q for the
// product. Throws sprig::Error when W is not K x C*R*S.
void csr_conv2d(const DeviceCsr& w, const Conv2dShape& s, const float* x, const float* bias,
                float* y, bool relu = false, CsrAlgo algo = CsrAlgo::RowSplit);

// The plain kernel: one thread per output y[b][r], a loop over row r. For tests.
void csr_linear_naive(const DeviceCsr& w, int64_t B, const float* x, const float* bias, float* y);

// out (cols, rows) = in (rows, cols)^T, a tiled transpose through shared memory.
void transpose(int64_t rows, int64_t cols, const float* in, float* out);

}  // namespace sprig::cuda
