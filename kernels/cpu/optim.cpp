// Fused optimizer steps: one pass over weight, gradient and state, with the mask applied to
// the update and to every state buffer so pruned weights stay exactly 0.
#include "kernels/cpu/optim.h"

#include <cmath>

#include "kernels/cpu/parallel.h"

namespace sprig::cpu {

static constexpr int64_t kParallelMin = 1 << 15;

void sgd_step(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask, float lr,
              float momentum, float dampening, float weight_decay, bool nesterov, bool first_step) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float keep = mask ? float(mask[i] != 0) : 1.0f;
      float d = g[i] + weight_decay * w[i];
      if (momentum != 0.0f) {
        float v = first_step ? d : momentum * velocity[i] + (1.0f - dampening) * d;
        v *= keep;
        velocity[i] = v;
        d = nesterov ? d + momentum * v : v;
      }
      w[i] = (w[i] - lr * d) * keep;
    }
  });
}

void adam_step(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
               float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
               bool decoupled) {
  const float bias1 = 1.0f - std::pow(beta1, float(step));
  const float bias2_sqrt = std::sqrt(1.0f - std::pow(beta2, float(step)));
  const float step_size = lr / bias1;
  const float l2 = decoupled ? 0.0f : weight_decay;
  const float shrink = decoupled ? 1.0f - lr * weight_decay : 1.0f;
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float keep = mask ? float(mask[i] != 0) : 1.0f;
      float gi = g[i] + l2 * w[i];
      float mi = (beta1 * m[i] + (1.0f - beta1) * gi) * keep;
      float vi = (beta2 * v[i] + (1.0f - beta2) * gi * gi) * keep;
      m[i] = mi;
      v[i] = vi;
      // PyTorch: denom = sqrt(v) / sqrt(1 - beta2^t) + eps; w -= lr / (1 - beta1^t) * m / denom
      float denom = std::sqrt(vi) / bias2_sqrt + eps;
      w[i] = (w[i] * shrink - step_size * mi / denom) * keep;
    }
  });
}

// References: the same formulas in double, one operation per line, no fusion.
void sgd_step_ref(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask,
                  float lr, float momentum, float dampening, float weight_decay, bool nesterov,
                  bool first_step) {
  for (int64_t i = 0; i < n; ++i) {
    if (mask && mask[i] == 0) {
      w[i] = 0.0f;
      if (velocity) velocity[i] = 0.0f;
      continue;
    }
    double d = double(g[i]) + double(weight_decay) * w[i];
    if (momentum != 0.0f) {
      double vel = first_step ? d : double(momentum) * velocity[i] + (1.0 - dampening) * d;
      velocity[i] = float(vel);
      d = nesterov ? d + double(momentum) * vel : vel;
    }
    w[i] = float(w[i] - double(lr) * d);
  }
}

void adam_step_ref(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
                   float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                   bool decoupled) {
  for (int64_t i = 0; i < n; ++i) {
    if (mask && mask[i] == 0) {
      w[i] = m[i] = v[i] = 0.0f;
      continue;
    }
    double wi = w[i];
    double gi = g[i];
    if (decoupled)
      wi *= 1.0 - double(lr) * weight_decay;
    else
      gi += double(weight_decay) * wi;
    double mi = beta1 * double(m[i]) + (1.0 - beta1) * gi;
    double vi = beta2 * double(v[i]) + (1.0 - beta2) * gi * gi;
    m[i] = float(mi);
    v[i] = float(vi);
    double mhat = mi / (1.0 - std::pow(double(beta1), double(step)));
    double vhat = vi / (1.0 - std::pow(double(beta2), double(step)));
    // eps is added to sqrt(v) / sqrt(bias2), which equals sqrt(vhat)
    w[i] = float(wi - double(lr) * mhat / (std::sqrt(vhat) + eps));
  }
}

}  // namespace sprig::cpu
