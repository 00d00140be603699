#pragma once
// Fused optimizer updates over n parameters. mask (n) may be null; where mask[i] == 0 the
// weight, the update and every state buffer are kept at exactly 0.
#include <cstdint>

namespace sprig::cpu {

// PyTorch's SGD: g' = g + wd * w; v = momentum * v + (1 - dampening) * g' (v = g' on the first
// step); step = nesterov ? g' + momentum * v : v; w -= lr * step. velocity may be null when
// momentum == 0.
void sgd_step(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask, float lr,
              float momentum, float dampening, float weight_decay, bool nesterov, bool first_step);

// PyTorch's Adam (decoupled == false: L2 added to g) or AdamW (decoupled == true: w *= 1 - lr wd).
// step counts from 1.
void adam_step(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
               float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
               bool decoupled);

void sgd_step_ref(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask,
                  float lr, float momentum, float dampening, float weight_decay, bool nesterov,
                  bool first_step);
void adam_step_ref(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
                   float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                   bool decoupled);

}  // namespace sprig::cpu
