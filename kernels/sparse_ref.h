#pragma once
// Views of a sparse weight's arrays, on whichever device holds them: what the sparse kernels of
// every device take (kernels/cpu/sparse.h, kernels/cuda/sparse.cuh, through engine/backend.h).
// They own nothing: the engine keeps the arrays in Tensors (engine/sparse_weight.h), the CPU
// packers in vectors (cpu::CsrMatrix and friends, which convert to these). A weight is viewed
// as a 2-D matrix W (rows, cols): (out, in) for a Linear, (K, C*R*S) for a Conv2d.
#include <cstdint>

namespace sprig {

// Compressed sparse rows, columns increasing within each row. Column indices are 16-bit on the
// CPU when cols <= 65536 (half the index bytes; narrow()), else 32-bit: exactly one of col16 /
// col32 is set (either may be null when nnz is 0). The GPU kernels take col32 only.
struct CsrRef {
  int64_t rows = 0, cols = 0, nnz = 0;
  const int32_t* row_ptr = nullptr;    // (rows + 1)
  const uint16_t* col16 = nullptr;     // (nnz) when narrow()
  const int32_t* col32 = nullptr;      // (nnz) otherwise
  const float* values = nullptr;       // (nnz)
  const int32_t* row_order = nullptr;  // (rows) rows by decreasing length: the GPU's schedule
  bool narrow() const { return col16 != nullptr || (col32 == nullptr && cols <= 65536); }
};

// Block sparse rows: dense br x bc blocks, stored when any entry is nonzero; edge blocks are
// zero-padded to full size.
struct BsrRef {
  int64_t rows = 0, cols = 0, br = 1, bc = 4, nblocks = 0;
  const int32_t* block_row_ptr = nullptr;  // (ceil(rows / br) + 1)
  const int32_t* block_col = nullptr;      // (nblocks) block column index
  const float* values = nullptr;           // (nblocks, br, bc)
};

// N:M: each group of m consecutive columns of a row stores exactly n values and their positions
// in the group (cpu::NmMatrix says how padding entries point).
struct NmRef {
  int64_t rows = 0, cols = 0, n = 2, m = 4;
  const float* values = nullptr;   // (rows, ceil(cols / m), n)
  const uint8_t* index = nullptr;  // (rows, ceil(cols / m), n) position within the group, < m
};

}  // namespace sprig
