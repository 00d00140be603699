#pragma once
// Pruning criteria: per-unit scores of a weight viewed as (rows, cols) = (out, in * kh * kw).
// prune/criteria.cpp chooses the layout and the element score; these compute the numbers.
#include <cstdint>

namespace sprig::cpu {

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

// out (units) = per-unit sum of the element scores of w (rows, cols) (g: the gradient, same
// shape, may be null unless the score reads it), divided by the unit's size for Block, then
// square-rooted for SquareWeight. Accumulated in double, rounded to float at the end.
void unit_scores(const UnitLayout& layout, ElementScore e, const float* w, const float* g,
                 float* out);
// FPGM (He et al. 2019): out[u] = sum over units v of ||u - v||_2, for the units of a Row or
// Channel layout (a channel's vector is its kk columns of every row, in row order). Like the
// authors' code this stands in for the distance to the geometric median: the units nearest it
// score lowest. Accumulated in double.
void fpgm_scores(const UnitLayout& layout, const float* w, float* out);

}  // namespace sprig::cpu
