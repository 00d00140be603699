#pragma once
// Batch normalisation over (N, C, HW) float32, NCHW: each channel c is normalised over its
// N x HW values. BatchNorm2d passes HW = H * W, BatchNorm1d on (N, C) passes HW = 1.
// Statistics are summed in double in a fixed order, so results do not depend on the thread
// count. gamma / beta may be null (no affine transform: scale 1, shift 0).
#include <cstdint>

#include "kernels/shapes.h"

namespace sprig::cpu {

// Training mode: y = (x - mean) * invstd * gamma + beta with the batch's mean and biased
// variance, invstd = 1 / sqrt(var + eps). Writes save_mean / save_invstd (C) for the backward
// pass and, when running_mean / running_var are not null, updates them as PyTorch does:
// running = (1 - momentum) * running + momentum * stat, with the unbiased variance
// var * n / (n - 1) (n = N * HW; n == 1 uses var itself, which is 0).
// An empty batch (n == 0) leaves the running statistics alone, as PyTorch does, and writes
// save_mean = 0, save_invstd = 1 / sqrt(eps).
void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float eps, float momentum, float* running_mean,
                             float* running_var, float* y, float* save_mean, float* save_invstd);
// Evaluation mode: the same affine map with the running statistics. Also writes save_mean
// (= running_mean) and save_invstd (= 1 / sqrt(running_var + eps)), so the backward pass
// takes the same arguments in both modes.
void batchnorm_forward_eval(const BatchNormShape& s, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var,
                            float eps, float* y, float* save_mean, float* save_invstd);
// Overwrites dx (N, C, HW), dgamma (C) and dbeta (C); any of them may be null (not needed).
// batch_stats: the forward pass used the batch's statistics (training mode), so the gradient
// flows through the mean and variance too:
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
// otherwise (evaluation mode) the statistics are constants: dx = gamma * invstd * dy.
// dgamma = sum(dy * xhat), dbeta = sum(dy), xhat = (x - save_mean) * save_invstd.
void batchnorm_backward(const BatchNormShape& s, bool batch_stats, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd,
                        const float* dy, float* dx, float* dgamma, float* dbeta);

// Synchronised batch normalisation: the statistics of a batch split over several processes,
// each holding a shard. The caller sums across processes between the steps.
// 1. sums (2C): sum of x in [0, C), sum of x^2 in [C, 2C), per channel over (N, HW), in double.
void batchnorm_sums(const BatchNormShape& s, const float* x, double* sums);
// 2. With the sums over every process (count values per channel in all): mean = sum / count,
//    biased var = sum_sq / count - mean^2; y, save_mean, save_invstd and the running statistics
//    as batchnorm_forward_train computes them from its own batch.
void batchnorm_forward_from_sums(const BatchNormShape& s, const double* sums, int64_t count,
                                 const float* x, const float* gamma, const float* beta, float eps,
                                 float momentum, float* running_mean, float* running_var, float* y,
                                 float* save_mean, float* save_invstd);
// 3. Backward, with dsums (2C) summed over every process: sum(dy) in [0, C) and sum(dy * xhat)
//    in [C, 2C) (each process's dbeta and dgamma from batchnorm_backward):
//    dx = gamma * invstd * (dy - sum(dy) / count - xhat * sum(dy * xhat) / count).
void batchnorm_backward_from_sums(const BatchNormShape& s, const double* dsums, int64_t count,
                                  const float* x, const float* gamma, const float* save_mean,
                                  const float* save_invstd, const float* dy, float* dx);

// Scalar references for the tests (two passes, textbook formulas).
void batchnorm_forward_train_ref(const BatchNormShape& s, const float* x, const float* gamma,
                                 const float* beta, float eps, float momentum, float* running_mean,
                                 float* running_var, float* y, float* save_mean,
                                 float* save_invstd);
void batchnorm_forward_eval_ref(const BatchNormShape& s, const float* x, const float* gamma,
                                const float* beta, const float* running_mean,
                                const float* running_var, float eps, float* y, float* save_mean,
                                float* save_invstd);
void batchnorm_backward_ref(const BatchNormShape& s, bool batch_stats, const float* x,
                            const float* gamma, const float* save_mean, const float* save_invstd,
                            const float* dy, float* dx, float* dgamma, float* dbeta);

}  // namespace sprig::cpu
