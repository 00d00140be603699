#include "infer/fold.h"

#include <memory>

#include "kernels/error.h"

namespace sprig::infer {
namespace {

// Folds bn into the layer whose weight has rows output channels; false when the shapes do not
// match (then nothing changes).
bool fold_layer(nn::ParameterPtr& weight, nn::ParameterPtr& bias, const nn::BatchNorm& bn) {
  const int64_t rows = weight->value.size(0), cols = weight->value.numel() / rows;
  if (bn.num_features != rows) return false;
  SPRIG_CHECK(weight->value.device().is_cpu() && bn.running_mean.device().is_cpu(),
              "fold_batchnorm: the model must be on the CPU");
  if (!bias) bias = std::make_shared<nn::Parameter>("bias", Tensor::zeros({rows}));
  bn.fold_into(cols, weight->value.data(), bias->value.data());
  return true;
}

int fold_sequential(nn::Sequential& seq) {
  int folded = 0;
  for (size_t i = 0; i < seq.layers.size(); ++i) {
    nn::Module* m = seq.layers[i].get();
    if (auto* inner = dynamic_cast<nn::Sequential*>(m)) folded += fold_sequential(*inner);
    if (auto* res = dynamic_cast<nn::Residual*>(m)) {
      folded += fold_sequential(*res->body);
      if (res->shortcut) folded += fold_sequential(*res->shortcut);
    }
    if (i + 1 >= seq.layers.size()) continue;
    auto* bn = dynamic_cast<nn::BatchNorm*>(seq.layers[i + 1].get());
    if (!bn) continue;
    bool done = false;
    if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) done = fold_layer(conv->weight, conv->bias, *bn);
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) done = fold_layer(lin->weight, lin->bias, *bn);
    if (!done) continue;
    seq.layers.erase(seq.layers.begin() + std::ptrdiff_t(i + 1));
    if (seq.names.size() > i + 1) seq.names.erase(seq.names.begin() + std::ptrdiff_t(i + 1));
    ++folded;
  }
  return folded;
}

}  // namespace

int fold_batchnorm(nn::Model& model) {
  const int folded = fold_sequential(*model.net);
  if (folded) model.spec = model.net->spec();
  return folded;
}

}  // namespace sprig::infer
