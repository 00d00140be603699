#include "nn/module.h"

namespace sprig::nn {

std::vector<std::pair<std::string, ParameterPtr>> Module::named_parameters(
    const std::string& prefix) const {
  std::vector<std::pair<std::string, ParameterPtr>> out;
  for (auto& [name, p] : local_parameters()) out.push_back({prefix + name, p});
  for (auto& [name, child] : children()) {
    auto sub = child->named_parameters(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<ParameterPtr> Module::parameters() const {
  std::vector<ParameterPtr> out;
  for (auto& kv : named_parameters()) out.push_back(kv.second);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : parameters()) n += p->numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& kv : children()) kv.second->train(on);
}

}  // namespace sprig::nn
