// Fused optimizer steps on the GPU: the formulas and their order are those of
// kernels/cpu/optim.cpp, the mask applied to the update and to every state buffer so pruned
// weights stay exactly 0. Step-dependent constants are computed on the host, as on the CPU.
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optim.cuh"

namespace sprig::cuda {

using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

// w, g, velocity, mask (n); velocity is only touched when momentum != 0 (may be null then),
// mask may be null (keep everything).
__global__ void sgd_step_kernel(int64_t n, float* w, const float* g, float* velocity,
                                const uint8_t* mask, float lr, float momentum, float dampening,
                                float weight_decay, bool nesterov, bool first_step) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
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
}

// w, g, m, v, mask (n); mask may be null.
__global__ void adam_step_kernel(int64_t n, float* w, const float* g, float* m, float* v,
                                 const uint8_t* mask, float beta1, float beta2, float eps,
                                 float bias2_sqrt, float step_size, float l2, float shrink) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    float keep = mask ? float(mask[i] != 0) : 1.0f;
    float gi = g[i] + l2 * w[i];
    float mi = (beta1 * m[i] + (1.0f - beta1) * gi) * keep;
    float vi = (beta2 * v[i] + (1.0f - beta2) * gi * gi) * keep;
    m[i] = mi;
    v[i] = vi;
    // PyTorch: denom = sqrt(v) / sqrt(1 - beta2^t) + eps; w -= lr / (1 - beta1^t) * m / denom
    float denom = sqrtf(vi) / bias2_sqrt + eps;
    w[i] = (w[i] * shrink - step_size * mi / denom) * keep;
  }
}

}  // namespace

void sgd_step(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask, float lr,
              float momentum, float dampening, float weight_decay, bool nesterov, bool first_step) {
  if (n <= 0) return;
  sgd_step_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(
      n, w, g, velocity, mask, lr, momentum, dampening, weight_decay, nesterov, first_step);
  SPRIG_CUDA_LAUNCHED("sgd_step_kernel");
}

void adam_step(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
               float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
               bool decoupled) {
  if (n <= 0) return;
  // Exactly the CPU's host-side constants (float pow and sqrt).
  const float bias1 = 1.0f - std::pow(beta1, float(step));
  const float bias2_sqrt = std::sqrt(1.0f - std::pow(beta2, float(step)));
  const float step_size = lr / bias1;
  const float l2 = decoupled ? 0.0f : weight_decay;
  const float shrink = decoupled ? 1.0f - lr * weight_decay : 1.0f;
  adam_step_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, w, g, m, v, mask, beta1, beta2, eps,
                                                             bias2_sqrt, step_size, l2, shrink);
  SPRIG_CUDA_LAUNCHED("adam_step_kernel");
}

}  // namespace sprig::cuda
