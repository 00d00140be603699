#pragma once
// Losses fused with their gradients. Labels are checked by the caller (0 <= label < C).
#include <cstdint>

namespace sprig::cpu {

// Mean over the batch of -log softmax(logits)[label], computed with the log-sum-exp shift so
// large logits do not overflow. logits (N, C), labels (N).
float softmax_cross_entropy_forward(int64_t N, int64_t C, const float* logits,
                                    const int32_t* labels);
// dlogits (N, C) = dloss * (softmax(logits) - onehot(label)) / N
void softmax_cross_entropy_backward(int64_t N, int64_t C, const float* logits,
                                    const int32_t* labels, float dloss, float* dlogits);
// mean((pred - target)^2) over n values
float mse_forward(int64_t n, const float* pred, const float* target);
// dpred = dloss * 2 (pred - target) / n
void mse_backward(int64_t n, const float* pred, const float* target, float dloss, float* dpred);

float softmax_cross_entropy_forward_ref(int64_t N, int64_t C, const float* logits,
                                        const int32_t* labels);
void softmax_cross_entropy_backward_ref(int64_t N, int64_t C, const float* logits,
                                        const int32_t* labels, float dloss, float* dlogits);

}  // namespace sprig::cpu
