#pragma once
// Models from the zoo or from a short text spec such as
//   conv(8,3,pad=1) relu conv(16,3,pad=1) relu flatten linear(10)
// Layers: conv(out, kernel[, stride=1][, pad=0][, dilation=1][, bias=1]), linear(out[, bias=1]),
// bn (BatchNorm1d or 2d by the input), relu, maxpool(kernel[, stride=kernel][, pad=0]),
// avgpool(kernel[, stride=kernel][, pad=0]), gap (global average pooling to (C, 1, 1)),
// shortcut(out[, stride=1][, pad=centred]) (option-A residual shortcut), flatten. Input features
// and channels are inferred from the input shape, so a spec plus an input shape defines every
// parameter. Containers: seq[layers] (a nested Sequential) and res[body | shortcut] (a residual
// block y = relu(body(x) + shortcut(x)); no '|' = identity shortcut; res(relu=0)[...] skips the
// ReLU). Any layer may be named, "conv1:conv(16,3)"; unnamed layers are named by index, so
// parameters are "conv1.weight", "layer1.0.bn1.running_mean", "3.weight" as in PyTorch.
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace sprig::nn {

struct Model {
  std::string spec;   // canonical spec (parse_spec(spec) rebuilds the same layers)
  Shape input_shape;  // per sample, e.g. (1, 28, 28)
  std::shared_ptr<Sequential> net;

  Tensor forward(const Tensor& x) const { return (*net)(x); }
  std::vector<std::pair<std::string, ParameterPtr>> named_parameters() const {
    return net->named_parameters();
  }
  std::vector<ParameterPtr> parameters() const { return net->parameters(); }
  int64_t num_parameters() const { return net->num_parameters(); }
  Shape output_shape() const { return net->output_shape(input_shape); }
  // Moves every parameter (with its gradient, mask and optimizer state) to device d.
  void to(Device d) const {
    for (auto& p : parameters()) p->to(d);
    for (auto& [name, b] : net->named_buffers()) *b = b->to(d);
  }
  // BatchNorm running statistics and other non-trained state, by name.
  std::vector<std::pair<std::string, Tensor*>> named_buffers() const {
    return net->named_buffers();
  }
  Device device() const {
    auto ps = parameters();
    return ps.empty() ? Device::cpu() : ps.front()->device();
  }
};

// The zoo: mlp (LeNet-300-100), cnn2 (seed 002's 2-conv Fashion-MNIST model), lenet5,
// resnet20 / resnet32 / resnet56 (He et al. 2016's CIFAR ResNets, option-A shortcuts) and
// resnet20b / resnet32b / resnet56b (option-B shortcuts: 1x1 conv + BN), for any (C, H, W)
// input.
std::vector<std::string> zoo_names();
// The spec of a zoo model, or "" when name is not in the zoo.
std::string zoo_spec(const std::string& name);

// Builds a zoo model or a spec for per-sample input_shape, initialised from seed.
// Throws sprig::Error naming the token and its position on a malformed spec, and naming the
// layer on a shape that does not fit. max_params >= 0 caps the parameters (and BatchNorm
// buffers) the model may hold: a layer that would pass it is refused before its weights are
// allocated, so a spec from an untrusted file cannot demand gigabytes to be compared.
Model build_model(const std::string& name_or_spec, const Shape& input_shape, uint64_t seed,
                  int64_t max_params = -1);

}  // namespace sprig::nn
