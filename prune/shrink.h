#pragma once
// Shrink: turn a pruned model into a smaller dense model. Filter / neuron pruning leaves
// output channels whose weights and bias are exactly zero, and channel pruning leaves inputs
// that the consumer never reads; shrink() removes such outputs physically together with the
// matching inputs of the layer that consumes them (a dependency group, as in Torch-Pruning),
// so the model computes the same outputs with fewer parameters and FLOPs.
//
// Dependency groups in a Sequential model (producer -> ... -> consumer):
//   conv   -> (relu | maxpool)*           -> conv    consumer loses input channels
//   conv   -> (relu | maxpool)* -> flatten -> relu* -> linear
//                                                    consumer loses column blocks: channel c is
//                                                    columns [c*H*W, (c+1)*H*W), H, W the spatial
//                                                    size at the flatten
//   linear -> relu* (flatten)*            -> linear  consumer loses columns
// ReLU, max-pooling and flatten map a channel that is all zero to zeros, so removing it from the
// consumer's inputs changes nothing.
#include <cstdint>
#include <string>
#include <vector>

#include "nn/model.h"

namespace sprig::prune {

struct ShrinkLayer {
  std::string name;  // layer index in the Sequential, e.g. "2"
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

// Removes every output channel (conv) / neuron (linear) whose weights and bias are all exactly
// zero or whose consumer's weights on it are all zero, and the matching inputs of the layer
// that consumes it (see the groups above). Updates
// model.spec and renames the parameters. The model's outputs are unchanged up to float rounding
// of the remaining sums. The last conv/linear layer's outputs (the model's outputs) are never
// removed, and every layer keeps at least one unit. Masks are sliced along with the weights
// (same granularity); optimizer state, gradients and forward hooks of replaced layers are
// dropped, so build the optimizer again after shrinking. Layers with nothing to remove are
// left as they are (the same objects). Throws sprig::Error when a unit would be removed but a
// layer between it and its consumer is of a kind shrink does not know.
ShrinkReport shrink(nn::Model& model);

// A deep copy (values and masks, not optimizer state or gradients) of a model.
nn::Model copy_model(const nn::Model& m);

}  // namespace sprig::prune
