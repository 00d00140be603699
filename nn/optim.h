#pragma once
// Optimizers with PyTorch's update rules. State lives in each Parameter::state so masks,
// checkpoints and pruning see it; the fused step keeps masked entries at exactly 0.
#include <string>
#include <vector>

#include "nn/parameter.h"

namespace sprig::nn {

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParameterPtr> params, float lr);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  virtual std::string name() const = 0;
  void zero_grad();  // zeroes gradient buffers in place (no reallocation)

  float lr;
  int64_t steps = 0;  // completed steps
  std::vector<ParameterPtr> params;
};

struct SGDOptions {
  float lr = 0.01f, momentum = 0.0f, dampening = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
  // Weight decay also on normalisation scales and shifts (Parameter::norm_affine). Off by
  // default: the usual ResNet recipes leave BatchNorm out of weight decay.
  bool decay_norm_affine = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<ParameterPtr> params, const SGDOptions& opt);
  void step() override;
  std::string name() const override { return "sgd"; }
  SGDOptions opt;
};

struct AdamOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled = false;          // true: AdamW
  bool decay_norm_affine = false;  // as SGDOptions::decay_norm_affine
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<ParameterPtr> params, const AdamOptions& opt);
  void step() override;
  std::string name() const override { return opt.decoupled ? "adamw" : "adam"; }
  AdamOptions opt;
};

}  // namespace sprig::nn
