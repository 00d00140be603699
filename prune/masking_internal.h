#pragma once
// Internal to prune/: the 2-D view of a weight and the unit each element belongs to, shared by
// the criteria (criteria.cpp) and the mask builder (masking.cpp).
#include "kernels/cpu/criteria.h"
#include "prune/prune.h"

namespace sprig::prune::detail {

// A weight viewed as (rows, cols) = (out, in * kh * kw); kk = kh * kw columns per input channel.
struct WeightView {
  int64_t rows = 0, cols = 0, in = 0, kk = 1;
  int64_t br = 1, bc = 1;  // block size (Block granularity)
  int64_t block_cols() const { return (cols + bc - 1) / bc; }
};

// Errors when w is not a 2-D (linear) or 4-D (conv) CPU float weight or the block size is bad.
WeightView weight_view(const nn::Parameter& w, const PruneSpec& spec);

// The units of granularity g as the criteria kernels see them (kernels/cpu/criteria.h).
inline cpu::UnitLayout unit_layout(const WeightView& v, Granularity g) {
  cpu::UnitLayout l;
  l.rows = v.rows;
  l.cols = v.cols;
  l.kk = v.kk;
  l.br = v.br;
  l.bc = v.bc;
  if (g == Granularity::Filter) l.kind = cpu::UnitLayout::Row;
  if (g == Granularity::Channel) l.kind = cpu::UnitLayout::Channel;
  if (g == Granularity::Block) l.kind = cpu::UnitLayout::Block;
  return l;  // Element and NM: one unit per weight
}

// Number of units at granularity g (elements for Element and NM).
inline int64_t num_units(const WeightView& v, Granularity g) {
  return unit_layout(v, g).units();
}

// Shape of unit_scores' result: the weight's own shape for Element and NM.
Shape unit_shape(const nn::Parameter& w, const WeightView& v, Granularity g);

// The unit of the element at (r, c) of the 2-D view.
inline int64_t unit_of(const WeightView& v, Granularity g, int64_t r, int64_t c) {
  return unit_layout(v, g).unit_of(r, c);
}

// Throws when criterion c cannot score units of granularity g (e.g. FPGM on single weights).
void check_applies(Criterion c, Granularity g);

}  // namespace sprig::prune::detail
