#pragma once
// Losses fused with their gradients on the GPU (mirrors kernels/cpu/loss.h). loss and dloss are
// one float in device memory, so a training step never waits for the GPU.
#include <cstdint>

namespace sprig::cuda {

// True when every label is in [0, C) (returns to the host: waits for the stream).
bool labels_in_range(int64_t N, const int32_t* labels, int64_t C);
void softmax_cross_entropy_forward(int64_t N, int64_t C, const float* logits, const int32_t* labels,
                                   float* loss);
void softmax_cross_entropy_backward(int64_t N, int64_t C, const float* logits,
                                    const int32_t* labels, const float* dloss, float* dlogits);
void mse_forward(int64_t n, const float* pred, const float* target, float* loss);
void mse_backward(int64_t n, const float* pred, const float* target, const float* dloss,
                  float* dpred);

}  // namespace sprig::cuda
