#pragma once
// Parameter: a trainable tensor with its gradient, optimizer state and optional pruning mask.
#include <map>
#include <memory>
#include <string>

#include "engine/tensor.h"

namespace sprig::nn {

// Which structure a pruning mask follows, and the unit a pruning spec (prune/prune.h) scores:
// one weight, a filter (output channel / neuron: a row of the weight), an input channel, a block,
// or N of every M weights. The mask is always stored expanded to the parameter's shape so the
// optimizer can apply it element-wise. Defined here rather than in prune because nn::Mask records
// it and prune depends on nn.
enum class Granularity { Element, Filter, Channel, Block, NM };
// element|filter|channel|block|nm: the command line's spelling, also written into checkpoints.
const char* granularity_name(Granularity g);
// Accepts the command line's spellings (element, filter or neuron, channel, block, nm or N:M such
// as 2:4, whose N and M the caller parses) and the names checkpoints were written with before
// there was one enum (output_channel, input_channel, n:m), so those files still load.
Granularity parse_granularity(const std::string& s);

struct Mask {
  Granularity granularity = Granularity::Element;
  Tensor keep;  // uint8, same shape as the parameter: 1 = kept, 0 = pruned
};

struct Parameter {
  std::string name;                     // e.g. "0.weight"
  Tensor value;                         // leaf tensor with requires_grad
  std::shared_ptr<Mask> mask;           // null while the parameter is dense
  std::map<std::string, Tensor> state;  // optimizer state, e.g. "exp_avg" (same shape as value)
  // A normalisation layer's scale or shift (BatchNorm weight / bias). Training recipes leave
  // these out of weight decay by default; the BN-scale pruning criterion reads the scales.
  bool norm_affine = false;

  Parameter(std::string n, Tensor v);
  Tensor grad() const { return value.grad(); }
  int64_t numel() const { return value.numel(); }
  int64_t count_nonzero() const;
  // Zeroes value (and every state buffer) wherever the mask is 0: the mask invariant.
  void apply_mask();
  // Installs a mask (uint8, same shape, any device: it moves to the parameter's) and applies it.
  void set_mask(Tensor keep, Granularity g = Granularity::Element);
  // Moves value, gradient, mask and optimizer state to device d (a no-op when already there).
  void to(Device d);
  Device device() const { return value.device(); }
};

using ParameterPtr = std::shared_ptr<Parameter>;

}  // namespace sprig::nn
