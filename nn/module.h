#pragma once
// Module: a layer or a container of layers. Shapes passed to output_shape/flops are
// per-sample (no batch dimension), e.g. (1, 28, 28) for an MNIST image.
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "nn/parameter.h"

namespace sprig::nn {

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;
  // Runs forward, then every forward hook (in the order added). Containers call their
  // children through this, so hooks see every layer's input and output.
  Tensor operator()(const Tensor& x);

  // A forward hook sees (module, input, output); pruning criteria use them to record
  // activations (e.g. Taylor). add_forward_hook returns an id for remove_forward_hook.
  using ForwardHook = std::function<void(Module&, const Tensor& input, const Tensor& output)>;
  int add_forward_hook(ForwardHook hook);
  void remove_forward_hook(int id);

  // The layer in the model-spec language, e.g. "conv(8,3,pad=1)"; parse_spec reads it back.
  virtual std::string spec() const = 0;
  virtual Shape output_shape(const Shape& in) const { return in; }
  // Floating-point operations of the weighted layers for one sample: 2 per multiply-add plus
  // the bias adds. Activations and pooling count 0, as in most FLOP counters.
  virtual int64_t flops(const Shape& in) const { return 0; }

  // This module's own parameters, by local name ("weight", "bias").
  virtual std::vector<std::pair<std::string, ParameterPtr>> local_parameters() const { return {}; }
  // Child modules by local name ("0", "1", ..., or the name the spec gave them).
  virtual std::vector<std::pair<std::string, Module*>> children() const { return {}; }
  // State a layer saves beside its parameters but does not train (BatchNorm's running
  // statistics), by local name; the pointers let loading and device moves replace them.
  virtual std::vector<std::pair<std::string, Tensor*>> local_buffers() { return {}; }

  // Every parameter below this module, named "child.child.local" as in PyTorch.
  std::vector<ParameterPtr> parameters() const;
  std::vector<std::pair<std::string, ParameterPtr>> named_parameters(
      const std::string& prefix = "") const;
  int64_t num_parameters() const;
  // Every buffer below this module, named as parameters are ("bn1.running_mean").
  std::vector<std::pair<std::string, Tensor*>> named_buffers(const std::string& prefix = "");
  // Every module below this one (not itself), parents before children, by path
  // ("layer1.0.conv1"), as PyTorch's named_modules without the root.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "") const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

 protected:
  bool training_ = true;

 private:
  std::vector<std::pair<int, ForwardHook>> hooks_;
  int next_hook_id_ = 0;
};

using ModulePtr = std::shared_ptr<Module>;

// Sets a module's mode (train(on)) for a scope and restores the previous one after, e.g. so a
// pruning criterion that runs forward and backward passes leaves BatchNorm's running
// statistics as they were.
class ModeGuard {
 public:
  ModeGuard(Module& m, bool training) : m_(m), prev_(m.is_training()) { m.train(training); }
  ~ModeGuard() { m_.train(prev_); }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  Module& m_;
  bool prev_;
};

}  // namespace sprig::nn
