#pragma once
// Pruning criteria: per-unit scores of a weight viewed as (rows, cols) = (out, in * kh * kw).
// prune/criteria.cpp chooses the layout and the element score; these compute the numbers.
#include <cstdint>

#include "kernels/shapes.h"

namespace sprig::cpu {

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
