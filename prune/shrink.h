#pragma once
// Shrink: turn a pruned model into a smaller dense model. Filter / neuron pruning leaves
// output channels whose weights and bias are exactly zero, and channel pruning leaves inputs
// that the consumer never reads; shrink() removes such outputs physically together with the
// matching inputs of the layer that consumes them (a dependency group, as in Torch-Pruning),
// so the model computes the same outputs with fewer parameters and FLOPs.
//
// The channels that go together are the units of prune/groups.h's dependency graph: in a
// chain, a filter and the next layer's input channel (a block of H*W features after a flatten);
// in a ResNet also every BatchNorm channel on it and every channel tied to it by residual adds
// and option-A shortcuts. ReLU, pooling and flatten map a channel that is all zero to zeros, so
// removing it from the consumers' inputs changes nothing.
#include <cstdint>
#include <string>
#include <vector>

#include "nn/model.h"
#include "prune/prune.h"

namespace sprig::prune {

struct ShrinkLayer {
  std::string name;  // the layer's path, e.g. "2" or "layer1.0.conv1"
  std::string spec_before, spec_after;
  int64_t units_before = 0, units_after = 0;  // output channels / neurons
  // Units whose weights are all zero but whose bias is not: they output a constant, so they
  // are kept (removing them would change the outputs).
  int64_t zero_weight_kept = 0;
};

struct ShrinkReport {
  int64_t params_before = 0, params_after = 0;
  std::vector<ShrinkLayer> layers;  // every conv / linear layer, in model order
};

// Removes every unit whose producers' weights and biases (and BatchNorm scales and shifts) are
// all exactly zero, or that no consumer reads (their weights on it are all zero), from every
// layer it touches (see prune/groups.h). Updates
// model.spec and renames the parameters. The model's outputs are unchanged up to float rounding
// of the remaining sums. The last conv/linear layer's outputs (the model's outputs) are never
// removed, and every layer keeps at least one unit. Masks are sliced along with the weights
// (same granularity); optimizer state, gradients and forward hooks of replaced layers are
// dropped, so build the optimizer again after shrinking. Layers with nothing to remove are
// left as they are (the same objects). Throws sprig::Error, leaving the model unchanged, when
// it holds a layer kind the dependency graph does not know.
ShrinkReport shrink(nn::Model& model);

// A deep copy (values and masks, not optimizer state or gradients) of a model.
nn::Model copy_model(const nn::Model& m);

// Pruning to a FLOPs budget, as Torch-Pruning's benchmarks prune to a speed-up: the smallest
// amount (spec.amount's meaning, to within 1e-4) whose one-shot pruning of model with spec and
// these scores, once shrunk, removes at least `reduction` of the model's FLOPs. The model is
// not changed (the trials run on copies; gradients the criterion reads are copied along).
// Needs filter or channel granularity and spec.amount (not count or threshold); throws
// sprig::Error naming the FLOPs reached when even pruning all but min_keep falls short.
struct FlopsSearch {
  double amount = 0.0;
  int64_t flops_before = 0, flops_after = 0;  // of the model, and of it pruned and shrunk
};
// The checks amount_for_flops makes before any work: reduction in [0, 1), filter or channel
// granularity, no count or threshold.
void validate_flops_target(const PruneSpec& spec, double reduction);
FlopsSearch amount_for_flops(const nn::Model& model, const PruneSpec& spec,
                             const std::map<std::string, Tensor>& activation_scores,
                             double reduction);

}  // namespace sprig::prune
