#pragma once
// Sparse int8 Linear: int8 weights in 1 x 4 blocks (the layout of Intel's block-sparse int8
// SpMM work: 4 consecutive input columns of one output row, stored when any of them is
// nonzero), uint8 activations with a zero point, exact int32 sums. With AVX-512 VNNI one
// vpdpbusd applies a block's 4 weights to 16 samples at once. Nothing here knows what a
// Tensor is.
#include <cstdint>
#include <vector>

namespace sprig::cpu {

struct Bsr14Int8 {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_ptr;    // (rows + 1) into the blocks
  std::vector<int32_t> block_col;  // (blocks) the block's first column / 4
  std::vector<int32_t> weights;    // (blocks) its 4 int8 weights as one little-endian word
  std::vector<int32_t> row_sums;   // (rows) sum of the row's weights (zero-point correction)
  int64_t blocks() const { return int64_t(block_col.size()); }
};

// W (rows, cols) int8 row-major, cols <= 2^15; all-zero 1 x 4 blocks are dropped (the last
// block of a row is zero-padded when cols % 4 != 0).
Bsr14Int8 bsr14_int8_from_dense(int64_t rows, int64_t cols, const int8_t* w);

// acc (B, rows) = (x - x_zero) W^T, exactly: x (B, cols) uint8. Runs on the OpenMP team
// (rows split) outside a parallel region when the product is big enough; VNNI where the CPU has
// it, else plain C++.
void bsr14_int8_linear(const Bsr14Int8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                       int32_t* acc);
// The plain loop over the blocks, the reference the tests compare with.
void bsr14_int8_linear_ref(const Bsr14Int8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                           int32_t* acc);

}  // namespace sprig::cpu
