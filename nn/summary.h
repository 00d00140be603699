#pragma once
// Per-layer summary of a model: output shape, parameters, nonzeros, sparsity, FLOPs.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/model.h"

namespace sprig::nn {

// One row per layer, containers (seq, res) included, in forward order: a container's row is
// followed by its children's, one level deeper. A container's numbers are its children's sums.
struct LayerSummary {
  std::string name;  // path as in parameter names, e.g. "0" or "layer2.0.conv1"
  std::string spec;  // e.g. "conv(8,3,pad=1)"; "seq" / "res" for a container
  int depth = 0;     // 0 for the model's own layers
  bool container = false;
  Shape output_shape;  // per sample
  int64_t params = 0, nonzero = 0, flops = 0;
  double sparsity() const { return params ? 1.0 - double(nonzero) / double(params) : 0.0; }
};

struct ModelSummary {
  Shape input_shape;
  std::vector<LayerSummary> layers;
  int64_t params = 0, nonzero = 0, flops = 0;  // over the leaf layers
};

ModelSummary summarize(const Model& model);
std::string format_summary(const ModelSummary& s);  // an aligned text table with totals
nlohmann::json summary_json(const ModelSummary& s);
// The inverse of summary_json (a summary sent between ranks); throws sprig::Error on a field that
// is missing or of the wrong type.
ModelSummary summary_from_json(const nlohmann::json& j);

}  // namespace sprig::nn
