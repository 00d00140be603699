#include "nn/module.h"

namespace sprig::nn {

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  for (auto& [id, hook] : hooks_) hook(*this, x, y);
  return y;
}

int Module::add_forward_hook(ForwardHook hook) {
  hooks_.push_back({next_hook_id_, std::move(hook)});
  return next_hook_id_++;
}

void Module::remove_forward_hook(int id) {
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it)
    if (it->first == id) {
      hooks_.erase(it);
      return;
    }
}

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

std::vector<std::pair<std::string, Tensor*>> Module::named_buffers(const std::string& prefix) {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [name, t] : local_buffers()) out.push_back({prefix + name, t});
  for (auto& [name, child] : children()) {
    auto sub = child->named_buffers(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(
    const std::string& prefix) const {
  std::vector<std::pair<std::string, Module*>> out;
  for (auto& [name, child] : children()) {
    out.push_back({prefix + name, child});
    auto sub = child->named_modules(prefix + name + ".");
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
