#pragma once
// Fused optimizer updates on the GPU (mirrors kernels/cpu/optim.h, same rules and mask
// invariant: where mask[i] == 0 the weight and every state buffer stay exactly 0).
#include <cstdint>

namespace sprig::cuda {

void sgd_step(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask, float lr,
              float momentum, float dampening, float weight_decay, bool nesterov, bool first_step);
void adam_step(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
               float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
               bool decoupled);

}  // namespace sprig::cuda
