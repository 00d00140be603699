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
  // Child modules by local name ("0", "1", ...).
  virtual std::vector<std::pair<std::string, Module*>> children() const { return {}; }

  // Every parameter below this module, named "child.child.local" as in PyTorch.
  std::vector<ParameterPtr> parameters() const;
  std::vector<std::pair<std::string, ParameterPtr>> named_parameters(
      const std::string& prefix = "") const;
  int64_t num_parameters() const;

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

}  // namespace sprig::nn
