#pragma once
// Dependency groups: which channels of which layers are one channel of the network and must be
// pruned (and shrunk) together, found from the model's graph as Torch-Pruning's DepGraph does.
//
// Every activation channel gets a node; layers tie nodes:
//   conv / linear   output channel k is a new node, produced by row k of the weight (and bias k);
//                   input channel c (a conv) or feature f (a linear) is consumed
//   bn, relu, pooling, gap
//                   output channel c is input channel c (a BatchNorm also scales and shifts it)
//   flatten         feature f of (C, H, W) is channel f / (H W)
//   shortcut (option A)
//                   output channel pad + c is input channel c; the other outputs are zeros
//   res[...]        output channel c of the add is body channel c and shortcut channel c
//   anything else   its inputs and outputs are fixed: nothing is removed across it
// A *unit* is a set of nodes tied together (union-find): removing it removes one row of every
// producer, one channel of every BatchNorm and the matching inputs of every consumer. In a plain
// chain a unit is one filter and the next layer's input channel; in a ResNet one unit of a
// residual stream spans the stem conv, every block's second conv and BN of the stage, and (through
// option-A shortcuts) the later stages. Units tied to the model's input or output are fixed.
// A *group* is the set of units whose producers overlap (all outputs of one conv, or the whole
// residual stream): amounts, min_keep and reports apply per group.
#include <cstdint>
#include <string>
#include <vector>

#include "nn/model.h"

namespace sprig::prune {

// A conv or linear layer seen uniformly: weight (out, ...), optional bias (out). ok() is false
// for every other kind.
struct Weighted {
  nn::Conv2d* conv = nullptr;
  nn::Linear* linear = nullptr;
  bool ok() const { return conv || linear; }
  int64_t out() const { return conv ? conv->out_channels : linear->out_features; }
  nn::Parameter& weight() const { return conv ? *conv->weight : *linear->weight; }
  nn::Parameter* bias() const { return conv ? conv->bias.get() : linear->bias.get(); }
};
inline Weighted as_weighted(nn::Module* m) {
  Weighted w;
  w.conv = dynamic_cast<nn::Conv2d*>(m);
  if (!w.conv) w.linear = dynamic_cast<nn::Linear*>(m);
  return w;
}

// A layer of the graph that owns channels: conv, linear, bn or shortcut.
struct GraphLayer {
  std::string name;  // module path, e.g. "layer1.0.conv1"
  nn::Module* module = nullptr;
  nn::Sequential* parent = nullptr;  // the container holding it, and its index there
  size_t index = 0;
  int64_t in = 0, out = 0;     // input channels (conv, bn, shortcut) or features (linear)
  std::vector<int> in_units;   // (in) the unit of each input channel / feature
  std::vector<int> out_units;  // (out) the unit of each output channel (conv, linear, shortcut;
                               // a shortcut's zero channels are units of their own) / bn channel
};

// Where a unit lives: (layer index in DependencyGraph::layers, channel or feature index).
struct UnitRef {
  int layer;
  int64_t index;
};

struct ChannelUnit {
  std::vector<UnitRef> producers;  // weight rows (and bias entries) that compute it
  std::vector<UnitRef> norms;      // BatchNorm channels that scale and shift it
  std::vector<UnitRef> consumers;  // conv input channels / linear input features that read it
  bool fixed = false;              // tied to the model's input or output: never removed
  std::string opaque_reader;       // "layer 3 (identity)": a layer of unknown kind reads it
                                   // (which also makes it fixed), or ""
  int group = -1;                  // index in DependencyGraph::groups, -1 when it has no producer
};

struct DependencyGroup {
  std::string name;            // the first producer's name, e.g. "conv1" or "layer2.0.conv1"
  std::vector<int> producers;  // layer indices of every producer of its units, in model order
  std::vector<int> units;      // its units, ordered by (first producer, row)
};

struct DependencyGraph {
  std::vector<GraphLayer> layers;  // in forward order
  std::vector<ChannelUnit> units;
  std::vector<DependencyGroup> groups;
  int find_layer(const std::string& name) const;  // -1 when absent
};

// Walks the model once on its input shape. Layers of kinds the walk does not know fix the
// units they read and write (see opaque_reader).
DependencyGraph build_dependency_graph(const nn::Model& model);

}  // namespace sprig::prune
