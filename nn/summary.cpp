#include "nn/summary.h"

#include <cstdio>

namespace sprig::nn {

ModelSummary summarize(const Model& model) {
  ModelSummary s;
  s.input_shape = model.input_shape;
  Shape shape = model.input_shape;
  for (size_t i = 0; i < model.net->layers.size(); ++i) {
    const Module& layer = *model.net->layers[i];
    LayerSummary l;
    l.name = std::to_string(i);
    l.spec = layer.spec();
    l.flops = layer.flops(shape);
    shape = layer.output_shape(shape);
    l.output_shape = shape;
    for (auto& [name, p] : layer.named_parameters()) {
      l.params += p->numel();
      l.nonzero += p->count_nonzero();
    }
    s.params += l.params;
    s.nonzero += l.nonzero;
    s.flops += l.flops;
    s.layers.push_back(l);
  }
  return s;
}

static std::string with_commas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string format_summary(const ModelSummary& s) {
  char line[256];
  std::string out;
  std::snprintf(line, sizeof line, "%-4s %-22s %-15s %12s %12s %9s %14s\n", "#", "layer",
                "output shape", "params", "nonzero", "sparsity", "FLOPs");
  out += line;
  out += std::string(94, '-') + "\n";
  for (const auto& l : s.layers) {
    std::snprintf(line, sizeof line, "%-4s %-22s %-15s %12s %12s %8.2f%% %14s\n", l.name.c_str(),
                  l.spec.c_str(), to_string(l.output_shape).c_str(), with_commas(l.params).c_str(),
                  with_commas(l.nonzero).c_str(), 100.0 * l.sparsity(),
                  with_commas(l.flops).c_str());
    out += line;
  }
  out += std::string(94, '-') + "\n";
  double sparsity = s.params ? 100.0 * (1.0 - double(s.nonzero) / double(s.params)) : 0.0;
  std::snprintf(line, sizeof line, "%-4s %-22s %-15s %12s %12s %8.2f%% %14s\n", "", "total",
                ("in " + to_string(s.input_shape)).c_str(), with_commas(s.params).c_str(),
                with_commas(s.nonzero).c_str(), sparsity, with_commas(s.flops).c_str());
  out += line;
  return out;
}

nlohmann::json summary_json(const ModelSummary& s) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : s.layers)
    layers.push_back({{"name", l.name},
                      {"spec", l.spec},
                      {"output_shape", l.output_shape},
                      {"params", l.params},
                      {"nonzero", l.nonzero},
                      {"sparsity", l.sparsity()},
                      {"flops", l.flops}});
  return {{"input_shape", s.input_shape},
          {"params", s.params},
          {"nonzero", s.nonzero},
          {"flops", s.flops},
          {"layers", layers}};
}

}  // namespace sprig::nn
