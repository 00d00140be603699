#pragma once
// Internal to prune/: the 2-D view of a weight and the unit each element belongs to, shared by
// the criteria (criteria.cpp), the mask builder (masking.cpp) and filter pruning by dependency
// groups (group_masking.cpp).
#include <functional>

#include "engine/backend.h"  // the criteria kernels' unit layout, as every backend takes it
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

// The units of granularity g as the criteria kernels see them (Backend's criteria entries).
inline UnitLayout unit_layout(const WeightView& v, Granularity g) {
  UnitLayout l;
  l.rows = v.rows;
  l.cols = v.cols;
  l.kk = v.kk;
  l.br = v.br;
  l.bc = v.bc;
  if (g == Granularity::Filter) l.kind = UnitLayout::Row;
  if (g == Granularity::Channel) l.kind = UnitLayout::Channel;
  if (g == Granularity::Block) l.kind = UnitLayout::Block;
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

// A weight to prune, with the bias that filter pruning also masks (null for none).
struct Target {
  std::string name;
  nn::Parameter* weight;
  nn::Parameter* bias;
};

// Scores and pruned flags of the units of one weight (or one dependency group) while choosing.
struct LayerUnits {
  std::string name;
  std::vector<float> score;     // (U)
  std::vector<uint8_t> pruned;  // (U) 1 = pruned: on entry by an earlier mask, on exit chosen
};

// Units whose every element an earlier mask already zeroed (they stay pruned).
std::vector<uint8_t> already_pruned(const nn::Parameter& w, const WeightView& v, Granularity g);
// Says whether unit `index` of layers[layer] may still be pruned; called just before it would
// be, so it may count what it allows.
using UnitFilter = std::function<bool(size_t layer, int64_t index)>;
// Marks more units pruned, lowest score first, until the spec's target for `layers` together
// is met (one entry: layer scope; all: global scope), leaving each at least min_keep and
// skipping units may_prune refuses.
void select_units(const std::vector<LayerUnits*>& layers, const PruneSpec& spec,
                  const UnitFilter& may_prune = nullptr);
// Divides the scores by their L2 norm, so global scope compares layers of different scales.
void normalise_scores(LayerUnits& L);
// Installs a mask on p, keeping its old zeros (keep must include them).
void install_mask(nn::Parameter& p, Tensor keep, Granularity g);
// Masks the pruned units of t's weight (and, for filters, their bias entries).
void install_units(const Target& t, const WeightView& v, Granularity g,
                   const std::vector<uint8_t>& pruned);
LayerReport report_for(const Target& t, int64_t units, int64_t pruned_units);

// Filter pruning over the model's dependency groups (group_masking.cpp); spec is checked.
PruneReport prune_filter_groups(nn::Model& model, const PruneSpec& spec,
                                const std::map<std::string, Tensor>& activation_scores);

}  // namespace sprig::prune::detail
