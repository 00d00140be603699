#pragma once
// The layers: Linear, Conv2d, BatchNorm, ReLU, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Shortcut,
// Flatten, and the containers Sequential and Residual (two branches joined by an add).
// New layers start with PyTorch's default initialisation (kaiming_uniform with a = sqrt(5),
// i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases), so a sprig model and a
// PyTorch model trained with the same recipe are comparable.
#include <optional>

#include "engine/ops.h"
#include "engine/rng.h"
#include "nn/module.h"

namespace sprig::nn {

// Quantisation-aware training: while a Linear / Conv2d holds one, it computes what its int8
// inference layer will (infer/quantize.h): its input fake-quantised to uint8 with this scale
// and zero point, its weight to int8 per output channel, both with straight-through gradients.
struct FakeQuant {
  float input_scale = 1.0f;
  int32_t input_zero = 0;
};

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
  std::optional<FakeQuant> fake_quant;
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
  std::optional<FakeQuant> fake_quant;
};

// BatchNorm1d on flat (C) samples, BatchNorm2d on (C, H, W) ones, as PyTorch's: training mode
// normalises with the batch's statistics and updates the running ones (momentum 0.1, unbiased
// variance), evaluation mode uses the running statistics. weight starts at 1, bias at 0.
// PyTorch's num_batches_tracked only matters for momentum=None, which sprig does not offer,
// so it is not kept.
class BatchNorm : public Module {
 public:
  explicit BatchNorm(int64_t num_features, float eps = 1e-5f, float momentum = 0.1f);
  Tensor forward(const Tensor& x) override;  // (N, C) or (N, C, H, W), same shape out
  std::string spec() const override { return "bn"; }
  Shape output_shape(const Shape& in) const override;
  std::vector<std::pair<std::string, ParameterPtr>> local_parameters() const override;
  std::vector<std::pair<std::string, Tensor*>> local_buffers() override;
  // Folds this BatchNorm (eval mode) into the conv / linear before it: with
  // s_k = weight_k / sqrt(running_var_k + eps), that layer's w (K, cols) and b (K) become
  // w_k * s_k and (b_k - running_mean_k) * s_k + bias_k, computed in double and rounded once,
  // so the new layer alone computes layer-then-BN. Zeros of w stay zeros. CPU tensors only.
  void fold_into(int64_t cols, float* w, float* b) const;

  int64_t num_features;
  float eps, momentum;
  ParameterPtr weight;  // (C) scale, gamma
  ParameterPtr bias;    // (C) shift, beta
  Tensor running_mean;  // (C)
  Tensor running_var;   // (C)
  // Set during data-parallel training with synchronised statistics (FitConfig::sync_bn): sums
  // across the ranks, so training mode normalises with the whole global batch's statistics.
  SumAcrossProcesses sum_across;
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string spec() const override { return "relu"; }
};

// Max and average pooling share their window: kernel, stride (0 = kernel) and padding, spec
// "maxpool(k[,stride=][,pad=])" and output shape.
class Pool2d : public Module {
 public:
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;

  int64_t kernel, stride, padding;

 protected:
  Pool2d(const char* name, int64_t kernel, int64_t stride, int64_t padding);
  const char* name_;  // "maxpool" or "avgpool"
};

class MaxPool2d : public Pool2d {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding)
      : Pool2d("maxpool", kernel, stride, padding) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel, stride, padding); }
};

// Average pooling; padding counts as zeros in the average (PyTorch's count_include_pad).
class AvgPool2d : public Pool2d {
 public:
  AvgPool2d(int64_t kernel, int64_t stride, int64_t padding)
      : Pool2d("avgpool", kernel, stride, padding) {}
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, kernel, stride, padding); }
};

// (C, H, W) -> (C, 1, 1): the mean of each channel (AdaptiveAvgPool2d(1)).
class GlobalAvgPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override { return global_avg_pool2d(x); }
  std::string spec() const override { return "gap"; }
  Shape output_shape(const Shape& in) const override;
};

// The option-A residual shortcut of He et al.'s CIFAR ResNets: the input subsampled by stride
// with zero channels on both sides up to out_channels (see engine/ops.h shortcut). No weights.
// pad_lo zero channels come first; -1 centres the input's channels (pytorch_resnet_cifar10).
// Shrinking a ResNet can leave them off-centre, so the spec says pad= then.
class Shortcut : public Module {
 public:
  Shortcut(int64_t out_channels, int64_t stride, int64_t pad_lo = -1);
  Tensor forward(const Tensor& x) override { return shortcut(x, out_channels, stride, pad_lo); }
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  // The zero channels before an input of C channels (pad_lo, or C centred when it is -1).
  int64_t pad_lo_for(int64_t C) const;

  int64_t out_channels, stride, pad_lo;
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
  // The layers' specs joined by spaces, each named one as "name:spec", nested containers in
  // brackets ("seq[...]", "res[...]").
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  int64_t flops(const Shape& in) const override;
  std::vector<std::pair<std::string, Module*>> children() const override;
  // The local name of layer i: names[i] when given and not empty, else its index, as
  // PyTorch names nn.Sequential's children (and named submodules, for ResNets).
  std::string name_of(size_t i) const;

  std::vector<ModulePtr> layers;
  std::vector<std::string> names;  // optional, parallel to layers
};

// A residual block: y = body(x) + shortcut(x), then ReLU when relu_out (He et al.'s basic
// block: the ReLU after the add). An empty shortcut is the identity. The body's layers are
// this block's children under their own names and the shortcut is child "shortcut", so a
// basic block's parameters are named as pytorch_resnet_cifar10's (conv1.weight, bn1.weight,
// ..., shortcut.0.weight for an option-B shortcut).
class Residual : public Module {
 public:
  Residual(std::shared_ptr<Sequential> body, std::shared_ptr<Sequential> shortcut, bool relu_out);
  Tensor forward(const Tensor& x) override;
  std::string spec() const override;  // "res[body | shortcut]", "res(relu=0)[body]"
  Shape output_shape(const Shape& in) const override;  // checks both branches agree
  int64_t flops(const Shape& in) const override;
  std::vector<std::pair<std::string, Module*>> children() const override;

  std::shared_ptr<Sequential> body;      // never null
  std::shared_ptr<Sequential> shortcut;  // null or empty: identity
  bool relu_out = true;
  bool identity_shortcut() const { return !shortcut || shortcut->layers.empty(); }
};

}  // namespace sprig::nn
