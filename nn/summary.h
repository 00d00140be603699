#pragma once
// Per-layer summary of a model: output shape, parameters, nonzeros, sparsity, FLOPs.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/model.h"

namespace sprig::nn {

struct LayerSummary {
  std::string name;    // index in the Sequential, e.g. "0"
  std::string spec;    // e.g. "conv(8,3,pad=1)"
  Shape output_shape;  // per sample
  int64_t params = 0, nonzero = 0, flops = 0;
  double sparsity() const { return params ? 1.0 - double(nonzero) / double(params) : 0.0; }
};

struct ModelSummary {
  Shape input_shape;
  std::vector<LayerSummary> layers;
  int64_t params = 0, nonzero = 0, flops = 0;
};

ModelSummary summarize(const Model& model);
std::string format_summary(const ModelSummary& s);  // an aligned text table with totals
nlohmann::json summary_json(const ModelSummary& s);

}  // namespace sprig::nn
