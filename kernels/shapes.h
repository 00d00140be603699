#pragma once
// The shapes and layouts the kernels of every device take (kernels/cpu and kernels/cuda, through
// engine/backend.h): plain structs, so a CUDA header needs no CPU one.
#include <cstdint>

namespace sprig {

// A 2-D convolution (cross-correlation, as in PyTorch), NCHW.
struct Conv2dShape {
  int64_t N, C, H, W;  // input (N, C, H, W)
  int64_t K, R, S;     // weight (K, C, R, S): K output channels, R x S kernel
  int64_t stride = 1, pad = 0, dilation = 1;
  int64_t P() const { return (H + 2 * pad - dilation * (R - 1) - 1) / stride + 1; }  // out height
  int64_t Q() const { return (W + 2 * pad - dilation * (S - 1) - 1) / stride + 1; }  // out width
};

// A 2-D pooling window, NCHW.
struct Pool2dShape {
  int64_t N, C, H, W;
  int64_t kernel, stride, pad = 0;
  int64_t P() const { return (H + 2 * pad - kernel) / stride + 1; }
  int64_t Q() const { return (W + 2 * pad - kernel) / stride + 1; }
};

// The option-A residual shortcut (kernels/cpu/pool.h says what it computes).
struct ShortcutShape {
  int64_t N, C, H, W;  // input (N, C, H, W)
  int64_t K;           // output channels, K >= C
  int64_t stride;      // >= 1
  int64_t pad_lo;      // zero channels before the input's, 0 <= pad_lo <= K - C
  int64_t P() const { return (H - 1) / stride + 1; }
  int64_t Q() const { return (W - 1) / stride + 1; }
};

// Batch normalisation over (N, C, HW): BatchNorm2d passes HW = H * W, BatchNorm1d HW = 1.
struct BatchNormShape {
  int64_t N, C, HW;
  int64_t count() const { return N * HW; }  // values per channel
};

// How the elements group into pruning units.
struct UnitLayout {
  enum Kind { Element, Row, Channel, Block } kind = Element;
  int64_t rows = 0, cols = 0;
  int64_t kk = 1;          // Channel: columns per input channel (kh * kw); cols % kk == 0
  int64_t br = 1, bc = 1;  // Block: tile size; edge tiles are smaller
  int64_t block_cols() const { return (cols + bc - 1) / bc; }
  int64_t units() const {
    switch (kind) {
      case Row:
        return rows;
      case Channel:
        return cols / kk;
      case Block:
        return ((rows + br - 1) / br) * block_cols();
      default:
        return rows * cols;
    }
  }
  // The unit of the element at (r, c).
  int64_t unit_of(int64_t r, int64_t c) const {
    switch (kind) {
      case Row:
        return r;
      case Channel:
        return c / kk;
      case Block:
        return (r / br) * block_cols() + c / bc;
      default:
        return r * cols + c;
    }
  }
};

// What each element contributes to its unit's score.
enum class ElementScore {
  AbsWeight,      // |w|
  AbsGrad,        // |g|
  AbsWeightGrad,  // |w * g|
  SquareWeight,   // w^2 (the unit's score is the square root of the sum: an L2 norm)
};

}  // namespace sprig
