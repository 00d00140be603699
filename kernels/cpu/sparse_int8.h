#pragma once
// Sparse int8 Linear: int8 weights, uint8 activations with a zero point, exact int32 sums, in
// two layouts:
// - BsrInt8: br x 4 blocks, br 1 or 4 (the layouts of Intel's block-sparse int8 SpMM work). A
//   block row's 4 weights are one 32-bit word, so one AVX-512 VNNI vpdpbusd applies them to 16
//   samples at once; a 4 x 4 block reuses each activation load for 4 output rows.
// - CsrInt8: one weight per stored entry (unstructured pruning without the 1 x 4 blocks' padding:
//   at 90% a third of the 1 x 4 blocks hold a nonzero, so they do ~3.4x CSR's multiply-adds).
// At a few samples (1 to 4; 1 for 4 x 4 blocks) they gather a row's inputs (16 blocks or entries
// per vpdpbusd) instead of spreading the samples over vector lanes. Nothing here knows what a
// Tensor is.
#include <cstdint>
#include <vector>

#include "kernels/cpu/gemm_int8.h"  // Int8Dequantize, ActivationQuant

namespace sprig::cpu {

struct BsrInt8 {
  int64_t rows = 0, cols = 0, br = 1;  // blocks are br x 4, br 1 or 4
  std::vector<int64_t> block_row_ptr;  // (ceil(rows / br) + 1) into the blocks
  std::vector<int32_t> block_col;      // (blocks) the block's first column / 4
  // (blocks, br) each block row's 4 int8 weights as one little-endian word; rows past `rows`
  // (the last block row's padding) and columns past `cols` are zero
  std::vector<int32_t> weights;
  std::vector<int32_t> row_sums;  // (rows) sum of the row's weights (zero-point correction)
  int64_t blocks() const { return int64_t(block_col.size()); }
};

struct CsrInt8 {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_ptr;   // (rows + 1)
  std::vector<uint16_t> col;      // (nnz)
  std::vector<int8_t> values;     // (nnz)
  std::vector<int32_t> row_sums;  // (rows)
  int64_t nnz() const { return int64_t(values.size()); }
};

// W (rows, cols) int8 row-major, cols <= 2^15 (as gemm_int8's K: the sums and the zero-point
// correction stay inside int32). bsr: all-zero blocks are dropped, br 1 or 4. csr: zeros are.
BsrInt8 bsr_int8_from_dense(int64_t rows, int64_t cols, int64_t br, const int8_t* w);
CsrInt8 csr_int8_from_dense(int64_t rows, int64_t cols, const int8_t* w);

// acc (B, rows) = (x - x_zero) W^T, exactly: x (B, cols) uint8. Runs on sprig's threads (rows
// split) outside another kernel's item when the product is big enough; VNNI where the CPU has it,
// else the reference.
void bsr_int8_linear(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero, int32_t* acc);
void csr_int8_linear(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero, int32_t* acc);
// The same with gemm_u8s8_dequantize's epilogue fused into the stores: y (B, rows) floats,
// a_scale x w_scales[r] x sum + bias[r], ReLU'd when dq.relu ...
void bsr_int8_linear_dequantize(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, float* y);
void csr_int8_linear_dequantize(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, float* y);
// ... or gemm_u8s8_requantize's: q (B, rows), those floats' uint8 codes under `out`, bit for bit.
void bsr_int8_linear_requantize(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, ActivationQuant out, uint8_t* q);
void csr_int8_linear_requantize(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                                const Int8Dequantize& dq, ActivationQuant out, uint8_t* q);
// The plain loops over the stored weights, the references the tests compare with.
void bsr_int8_linear_ref(const BsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                         int32_t* acc);
void csr_int8_linear_ref(const CsrInt8& w, int64_t B, const uint8_t* x, int32_t x_zero,
                         int32_t* acc);

}  // namespace sprig::cpu
