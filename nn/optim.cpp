#include "nn/optim.h"

#include <cmath>

#include "engine/backend.h"

namespace sprig::nn {

static const uint8_t* mask_of(const Parameter& p) {
  return p.mask ? p.mask->keep.ptr_as<uint8_t>() : nullptr;
}

// The named state buffer of p, created as zeros on first use, on the parameter's device.
static Tensor& state_of(Parameter& p, const char* key) {
  auto it = p.state.find(key);
  if (it == p.state.end())
    it = p.state.emplace(key, Tensor::zeros(p.value.shape(), DType::F32, p.device())).first;
  SPRIG_CHECK(it->second.device() == p.device(), "optimizer state '", key, "' of ", p.name,
              " is on ", it->second.device().str(), " but the parameter is on ", p.device().str());
  return it->second;
}

// The weight decay for p: none on normalisation parameters unless asked for.
static float weight_decay_for(const Parameter& p, float weight_decay, bool decay_norm_affine) {
  return p.norm_affine && !decay_norm_affine ? 0.0f : weight_decay;
}

static const Backend& backend_of(const Parameter& p, const Tensor& g) {
  SPRIG_CHECK(g.device() == p.device(), "gradient of ", p.name, " is on ", g.device().str(),
              " but the parameter is on ", p.device().str());
  return backend_for(p.device());
}

Optimizer::Optimizer(std::vector<ParameterPtr> ps, float lr_) : lr(lr_), params(std::move(ps)) {
  SPRIG_CHECK(lr_ >= 0.0f && std::isfinite(lr_), "learning rate must be finite and >= 0, got ",
              lr_);
}

void Optimizer::zero_grad() {
  for (auto& p : params) p->value.zero_grad();
}

SGD::SGD(std::vector<ParameterPtr> ps, const SGDOptions& o)
    : Optimizer(std::move(ps), o.lr), opt(o) {
  SPRIG_CHECK(o.momentum >= 0.0f, "sgd: momentum must be >= 0, got ", o.momentum);
  SPRIG_CHECK(o.weight_decay >= 0.0f, "sgd: weight decay must be >= 0, got ", o.weight_decay);
  SPRIG_CHECK(!o.nesterov || (o.momentum > 0.0f && o.dampening == 0.0f),
              "sgd: nesterov needs momentum > 0 and dampening 0");
}

void SGD::step() {
  for (auto& p : params) {
    Tensor g = p->grad();
    if (!g.defined()) continue;  // parameter not reached by backward (as PyTorch skips it)
    float* velocity = nullptr;
    bool first = false;
    if (opt.momentum != 0.0f) {
      first = p->state.find("momentum_buffer") == p->state.end();
      velocity = state_of(*p, "momentum_buffer").ptr();
    }
    backend_of(*p, g).sgd_step(
        p->numel(), p->value.ptr(), g.ptr(), velocity, mask_of(*p), lr, opt.momentum, opt.dampening,
        weight_decay_for(*p, opt.weight_decay, opt.decay_norm_affine), opt.nesterov, first);
  }
  ++steps;
}

Adam::Adam(std::vector<ParameterPtr> ps, const AdamOptions& o)
    : Optimizer(std::move(ps), o.lr), opt(o) {
  SPRIG_CHECK(o.beta1 >= 0.0f && o.beta1 < 1.0f && o.beta2 >= 0.0f && o.beta2 < 1.0f,
              "adam: betas must be in [0, 1), got ", o.beta1, ", ", o.beta2);
  SPRIG_CHECK(o.eps > 0.0f, "adam: eps must be > 0, got ", o.eps);
  SPRIG_CHECK(o.weight_decay >= 0.0f, "adam: weight decay must be >= 0, got ", o.weight_decay);
}

void Adam::step() {
  ++steps;
  for (auto& p : params) {
    Tensor g = p->grad();
    if (!g.defined()) continue;
    Tensor& m = state_of(*p, "exp_avg");
    Tensor& v = state_of(*p, "exp_avg_sq");
    backend_of(*p, g).adam_step(p->numel(), p->value.ptr(), g.ptr(), m.ptr(), v.ptr(), mask_of(*p),
                                lr, opt.beta1, opt.beta2, opt.eps,
                                weight_decay_for(*p, opt.weight_decay, opt.decay_norm_affine),
                                steps, opt.decoupled);
  }
}

}  // namespace sprig::nn
