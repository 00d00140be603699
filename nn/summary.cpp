#include "nn/summary.h"

#include <cstdio>

#include "kernels/error.h"

namespace sprig::nn {

namespace {

// Appends the rows of `layer` (and of its children) for per-sample input `in`; returns its
// output shape.
Shape summarize_layer(const Module& layer, const std::string& name, int depth, const Shape& in,
                      ModelSummary& s) {
  LayerSummary l;
  l.name = name;
  l.depth = depth;
  l.flops = layer.flops(in);
  l.output_shape = layer.output_shape(in);
  for (auto& [pname, p] : layer.named_parameters()) {
    l.params += p->numel();
    l.nonzero += p->count_nonzero();
  }
  const auto* seq = dynamic_cast<const Sequential*>(&layer);
  const auto* res = dynamic_cast<const Residual*>(&layer);
  l.container = seq || res;
  if (!l.container) {
    l.spec = layer.spec();
    s.params += l.params;
    s.nonzero += l.nonzero;
    s.flops += l.flops;
    s.layers.push_back(l);
    return l.output_shape;
  }
  l.spec = seq ? "seq" : res->identity_shortcut() ? "res (identity)" : "res";
  s.layers.push_back(l);
  const std::string prefix = name + ".";
  if (seq) {
    Shape shape = in;
    for (size_t i = 0; i < seq->layers.size(); ++i)
      shape = summarize_layer(*seq->layers[i], prefix + seq->name_of(i), depth + 1, shape, s);
  } else {
    Shape shape = in;
    for (size_t i = 0; i < res->body->layers.size(); ++i)
      shape = summarize_layer(*res->body->layers[i], prefix + res->body->name_of(i), depth + 1,
                              shape, s);
    if (!res->identity_shortcut())
      summarize_layer(*res->shortcut, prefix + "shortcut", depth + 1, in, s);
  }
  return l.output_shape;
}

}  // namespace

ModelSummary summarize(const Model& model) {
  ModelSummary s;
  s.input_shape = model.input_shape;
  Shape shape = model.input_shape;
  for (size_t i = 0; i < model.net->layers.size(); ++i)
    shape = summarize_layer(*model.net->layers[i], model.net->name_of(i), 0, shape, s);
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
  std::snprintf(line, sizeof line, "%-20s %-34s %-15s %12s %12s %9s %14s\n", "name", "layer",
                "output shape", "params", "nonzero", "sparsity", "FLOPs");
  out += line;
  out += std::string(122, '-') + "\n";
  for (const auto& l : s.layers) {
    // Deeper rows are indented, so the tree shows; the name column holds the leaf's own name.
    std::string indent(2 * l.depth, ' ');
    std::string leaf = l.name.substr(l.name.find_last_of('.') + 1);
    std::snprintf(line, sizeof line, "%-20s %-34s %-15s %12s %12s %8.2f%% %14s\n",
                  (indent + leaf).c_str(), l.spec.c_str(), to_string(l.output_shape).c_str(),
                  with_commas(l.params).c_str(), with_commas(l.nonzero).c_str(),
                  100.0 * l.sparsity(), with_commas(l.flops).c_str());
    out += line;
  }
  out += std::string(122, '-') + "\n";
  double sparsity = s.params ? 100.0 * (1.0 - double(s.nonzero) / double(s.params)) : 0.0;
  std::snprintf(line, sizeof line, "%-20s %-34s %-15s %12s %12s %8.2f%% %14s\n", "", "total",
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
                      {"depth", l.depth},
                      {"container", l.container},
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

ModelSummary summary_from_json(const nlohmann::json& j) {
  try {
    ModelSummary s;
    s.input_shape = j.at("input_shape").get<Shape>();
    s.params = j.at("params").get<int64_t>();
    s.nonzero = j.at("nonzero").get<int64_t>();
    s.flops = j.at("flops").get<int64_t>();
    for (const auto& l : j.at("layers")) {
      LayerSummary row;
      row.name = l.at("name").get<std::string>();
      row.spec = l.at("spec").get<std::string>();
      row.depth = l.at("depth").get<int>();
      row.container = l.at("container").get<bool>();
      row.output_shape = l.at("output_shape").get<Shape>();
      row.params = l.at("params").get<int64_t>();
      row.nonzero = l.at("nonzero").get<int64_t>();
      row.flops = l.at("flops").get<int64_t>();
      s.layers.push_back(row);
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("model summary JSON: ") + e.what());
  }
}

}  // namespace sprig::nn
