#pragma once
// Batch normalisation over (N, C, HW) on the GPU (mirrors kernels/cpu/norm.h: same arguments,
// same null conventions). Statistics and gradient sums are fixed trees in double, one block per
// channel, so results do not change from run to run.
#include <cstdint>

#include "kernels/shapes.h"

namespace sprig::cuda {

void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float eps, float momentum, float* running_mean,
                             float* running_var, float* y, float* save_mean, float* save_invstd);
void batchnorm_forward_eval(const BatchNormShape& s, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var,
                            float eps, float* y, float* save_mean, float* save_invstd);
void batchnorm_backward(const BatchNormShape& s, bool batch_stats, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd,
                        const float* dy, float* dx, float* dgamma, float* dbeta);

}  // namespace sprig::cuda
