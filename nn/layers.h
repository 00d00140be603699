#pragma once
// The layers: Linear, Conv2d, ReLU, MaxPool2d, Flatten, and the Sequential container.
// New layers start with PyTorch's default initialisation (kaiming_uniform with a = sqrt(5),
// i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases), so a sprig model and a
// PyTorch model trained with the same recipe are comparable.
#include "engine/ops.h"
#include "engine/rng.h"
#include "nn/module.h"

namespace sprig::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Rng& rng);
  Tensor forward(const Tensor& x) override;  // x (N, in) -> (N, out)
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  int64_t flops(const Shape& in) const override;
  std::vector<std::pair<std::string, ParameterPtr>> local_parameters() const override;

  int64_t in_features, out_features;
  ParameterPtr weight;  // (out, in)
  ParameterPtr bias;    // (out), or null
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, const Conv2dOptions& opt,
         bool bias, Rng& rng);
  Tensor forward(const Tensor& x) override;  // (N, C, H, W) -> (N, K, P, Q)
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  int64_t flops(const Shape& in) const override;
  std::vector<std::pair<std::string, ParameterPtr>> local_parameters() const override;

  int64_t in_channels, out_channels, kernel;
  Conv2dOptions opt;
  ParameterPtr weight;  // (K, C, R, S)
  ParameterPtr bias;    // (K), or null
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string spec() const override { return "relu"; }
};

class MaxPool2d : public Module {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding);
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel, stride, padding); }
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;

  int64_t kernel, stride, padding;
};

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return flatten(x, 1); }
  std::string spec() const override { return "flatten"; }
  Shape output_shape(const Shape& in) const override;  // throws when the size overflows
};

class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> layers) : layers(std::move(layers)) {}
  Tensor forward(const Tensor& x) override;
  std::string spec() const override;  // the layers' specs joined by spaces
  Shape output_shape(const Shape& in) const override;
  int64_t flops(const Shape& in) const override;
  std::vector<std::pair<std::string, Module*>> children() const override;

  std::vector<ModulePtr> layers;
};

}  // namespace sprig::nn
