#pragma once
// SparseWeight: a pruned conv / linear weight packed in a sparse format, its arrays Tensors on
// one device. The kernels take views of those arrays (kernels/sparse_ref.h); the op front-ends
// that run them are sparse_linear and sparse_conv2d (engine/ops.h, ops_sparse.cpp). The weight
// is viewed as a 2-D matrix W (rows, cols): (out, in) for a Linear, (K, C*R*S) for a Conv2d.
#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "kernels/cpu/sparse.h"
#include "kernels/sparse_ref.h"

namespace sprig {

enum class SparseFormat { Csr, Bsr, Nm };
const char* sparse_format_name(SparseFormat f);  // "csr", "bsr", "nm"

struct SparseWeight {
  SparseFormat format = SparseFormat::Csr;
  Shape shape;                             // the dense weight's: (out, in) or (K, C, R, S)
  int64_t block_rows = 1, block_cols = 4;  // Bsr: the blocks
  int64_t n = 2, m = 4;                    // Nm: n stored in every group of m
  // F32. Csr: (nnz); Bsr: (nblocks, block_rows, block_cols); Nm: (rows, ceil(cols / m), n).
  Tensor values;
  // I32. Csr: row pointers (rows + 1); Bsr: block row pointers (ceil(rows / block_rows) + 1);
  // Nm: undefined.
  Tensor pointers;
  // Csr: columns (nnz), U16 on the CPU where cols <= 65536, else I32 (always I32 on a GPU,
  // whose kernels and cuSPARSE take 32-bit indices); Bsr: block columns I32 (nblocks); Nm:
  // positions within the group U8, shaped as values.
  Tensor indices;
  // I32 (rows), Csr on a GPU only: rows by decreasing length, the GPU kernels' schedule.
  Tensor row_order;

  bool defined() const { return values.defined(); }
  Device device() const { return values.device(); }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const;     // the product of shape's other dims
  int64_t stored() const;   // values stored (nnz for Csr; padding included for Bsr and Nm)
  int64_t nonzero() const;  // stored values that are not zero (reads a GPU weight back)
  size_t bytes() const;     // of all the arrays

  // Views for the kernels; each throws sprig::Error unless the weight is in that format.
  CsrRef csr() const;
  BsrRef bsr() const;
  NmRef nm() const;

  // A copy on device d. To a GPU a CSR weight gets 32-bit columns and its row order (the
  // schedule of cuda::CsrAlgo::RowSplit / ColTile); back on the CPU, 16-bit columns where
  // they fit.
  SparseWeight to(Device d) const;
  // The dense weight, (shape) on the CPU.
  Tensor to_dense() const;
};

// Packs w (shape, at least 1-D; its 2-D view (rows, cols)), on the CPU: zeros are dropped.
// Bsr keeps the blocks of block_rows x block_cols holding any nonzero; Nm throws sprig::Error
// when a group of m holds more than n nonzeros (cpu::nm_from_dense).
SparseWeight sparse_weight_from_dense(SparseFormat f, const Tensor& w, int64_t block_rows = 1,
                                      int64_t block_cols = 4, int64_t n = 2, int64_t m = 4);
// The CPU packers' arrays as a SparseWeight of dense shape `shape` (rows x cols as theirs),
// copied. Checked first (cpu::csr_validate and friends): an inconsistent matrix, as a corrupt
// file gives, throws sprig::Error naming the problem.
SparseWeight sparse_weight(const cpu::CsrMatrix& a, const Shape& shape);
SparseWeight sparse_weight(const cpu::BsrMatrix& a, const Shape& shape);
SparseWeight sparse_weight(const cpu::NmMatrix& a, const Shape& shape);

}  // namespace sprig
