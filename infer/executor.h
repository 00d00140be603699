#pragma once
// Internal to infer/: the one executor of packed models, for every device. It walks the model's
// blocks the way their forward does and decides what is fused:
//   - a ReLU right after a conv / linear layer runs inside it;
//   - a residual block's add and ReLU run inside its last layer where the runner fuses them
//     (LayerRunner::fuses_residual), else as one pass (Backend::add_relu);
//   - consecutive sparse linear layers that can hand each other (features, N) activations do;
//   - an int8 layer whose output feeds another int8 layer hands it uint8 codes;
//   - conv layers that the runner runs 16 samples to a vector (LayerRunner::lanes_pad) hand
//     each other activations in those lanes (cpu::LanesShape), residual blocks' adds and
//     option-A shortcuts included, converted back only where another module takes them.
// A LayerRunner runs the conv / linear layers on its device (pack.cpp on the CPU, pack_cuda.cpp
// on a GPU); every other module (pooling, flatten, an unfolded BatchNorm, ...) runs as itself on
// the activations' device.
#include <cstdint>
#include <vector>

#include "infer/pack.h"
#include "nn/model.h"

namespace sprig::infer::detail {

// How the executor calls one conv / linear layer.
struct LayerCall {
  bool x_t = false;   // x is (features, N) rather than (N, features...)
  bool relu = false;  // the ReLU after the layer runs inside it
  bool y_t = false;   // y is wanted as (features, N)
  // y is wanted as uint8 codes under these parameters (the next int8 layer's input)
  const cpu::ActivationQuant* requantize = nullptr;
  // Added to y before the ReLU: the shortcut of the residual block this layer ends (the same
  // shape as y; only where the runner fuses_residual).
  const Tensor* residual = nullptr;
  // x is in the CPU's sample lanes of this shape (its logical (N, C, H, W) and border), not
  // (N, ...); only for a layer whose lanes_pad is >= 0 and at most x_lanes->pad.
  const cpu::LanesShape* x_lanes = nullptr;
  // >= 0: y is wanted in sample lanes of this border (and residual, when given, is laid out so).
  int64_t y_lanes = -1;
};

class LayerRunner {
 public:
  virtual ~LayerRunner() = default;
  // The packed layer that module m is (PackedLayer::module), or nullptr for every other module.
  const PackedLayer* find(const nn::Module* m) const {
    for (const PackedLayer& p : *layers_)
      if (p.module == m) return &p;
    return nullptr;
  }
  // Whether p at batch N runs on a kernel that takes and gives (features, N) activations.
  virtual bool chains(const PackedLayer& p, int64_t N) const = 0;
  // Whether p can give its output as the next int8 layer's uint8 codes.
  virtual bool requantizes(const PackedLayer& p) const = 0;
  // Whether p takes LayerCall::residual (adds a residual block's shortcut in its stores).
  virtual bool fuses_residual(const PackedLayer& p) const = 0;
  // The border with which p takes and gives sample lanes at input x (N, C, H, W): its padding,
  // or -1 where it does not run 16 samples to a vector.
  virtual int64_t lanes_pad(const PackedLayer& p, const Shape& x) const = 0;
  // p's forward (m is its module) on x, as call says.
  virtual Tensor run(const PackedLayer& p, nn::Module& m, const Tensor& x,
                     const LayerCall& call) const = 0;

 protected:
  // The runner runs these layers (of the model it is given to run_blocks with).
  explicit LayerRunner(const std::vector<PackedLayer>* layers) : layers_(layers) {}

 private:
  const std::vector<PackedLayer>* layers_;
};

// seq's forward on h (N, ...) through runner; observe, when set, sees each conv / linear layer's
// input before it runs (and turns off the uint8 and sample-lane hand-overs, since observers look
// at (N, ...) floats).
Tensor run_blocks(const nn::Sequential& seq, Tensor h, const LayerRunner& runner,
                  const InferenceModel::Observer* observe = nullptr);

}  // namespace sprig::infer::detail
