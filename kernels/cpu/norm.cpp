// Batch normalisation, NCHW. Each channel is one thread's work from start to end: its sums are
// taken in double over a fixed lane pattern that does not depend on the thread count, so any
// number of threads gives bit-identical statistics, outputs and gradients.
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"

namespace sprig::cpu {
namespace {

constexpr int kLanes = 8;

// Eight independent double partial sums; element i of a plane always goes to lane i % 8 and the
// lanes are added by one fixed tree, so the compiler may vectorise the adds without changing the
// result.
struct Lanes {
  double v[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  double total() const { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }
};

// Channel c of x (N, C, HW) is the N planes x + (n * C + c) * HW.
inline const float* plane(const BatchNormShape& s, const float* x, int64_t n, int64_t c) {
  return x + (n * s.C + c) * s.HW;
}
inline float* plane(const BatchNormShape& s, float* x, int64_t n, int64_t c) {
  return x + (n * s.C + c) * s.HW;
}

// Parallel over channels only for enough work to pay for the threads (parallel_for runs
// serially inside another kernel's item); the per-channel work is the same either way.
bool use_team(const BatchNormShape& s) {
  return s.C > 1 && s.N * s.C * s.HW >= 32768;
}

double channel_sum(const BatchNormShape& s, const float* x, int64_t c) {
  Lanes acc;
  for (int64_t n = 0; n < s.N; n++) {
    const float* p = plane(s, x, n, c);  // (HW)
    int64_t i = 0;
    for (; i + kLanes <= s.HW; i += kLanes)
      for (int j = 0; j < kLanes; j++) acc.v[j] += double(p[i + j]);
    for (int j = 0; i + j < s.HW; j++) acc.v[j] += double(p[i + j]);
  }
  return acc.total();
}

// Sum of (x - mean)^2: the second pass, so a large mean does not cancel the variance away.
double channel_sqdev(const BatchNormShape& s, const float* x, int64_t c, double mean) {
  Lanes acc;
  for (int64_t n = 0; n < s.N; n++) {
    const float* p = plane(s, x, n, c);  // (HW)
    int64_t i = 0;
    for (; i + kLanes <= s.HW; i += kLanes)
      for (int j = 0; j < kLanes; j++) {
        const double d = double(p[i + j]) - mean;
        acc.v[j] += d * d;
      }
    for (int j = 0; i + j < s.HW; j++) {
      const double d = double(p[i + j]) - mean;
      acc.v[j] += d * d;
    }
  }
  return acc.total();
}

// y = (x - mean) * (gamma * invstd) + beta over one channel.
void channel_affine(const BatchNormShape& s, const float* x, int64_t c, float mean, float scale,
                    float shift, float* y) {
  for (int64_t n = 0; n < s.N; n++) {
    const float* p = plane(s, x, n, c);  // (HW)
    float* q = plane(s, y, n, c);        // (HW)
#pragma omp simd
    for (int64_t i = 0; i < s.HW; i++) q[i] = (p[i] - mean) * scale + shift;
  }
}

// PyTorch's update: the batch variance enters unbiased, n / (n - 1), except for n == 1 where
// that is 0 / 0 and the (zero) biased variance is used.
void update_running(double mean, double var, int64_t n, float momentum, float* running_mean,
                    float* running_var, int64_t c) {
  const double m = double(momentum);
  const double unbiased = n > 1 ? var * double(n) / double(n - 1) : var;
  if (running_mean) running_mean[c] = float((1.0 - m) * double(running_mean[c]) + m * mean);
  if (running_var) running_var[c] = float((1.0 - m) * double(running_var[c]) + m * unbiased);
}

// Channel c of dx = a * dy + b * (x - mean) + d with a = gamma * invstd,
// b = -a * invstd * mean(dy * xhat), d = -a * mean(dy), the means over the n values the
// statistics came from (sum_dy, sum_dy_xhat: their sums). n = 0: the statistics were constants
// (evaluation mode), and dx = a * dy.
void channel_dx(const BatchNormShape& s, const float* x, const float* dy, int64_t c, float mean,
                double invstd, double gamma, double sum_dy, double sum_dy_xhat, int64_t n,
                float* dx) {
  const double ad = gamma * invstd;
  const float a = float(ad);
  float b = 0.0f, d = 0.0f;
  if (n > 0) {
    b = float(-ad * invstd * sum_dy_xhat / double(n));
    d = float(-ad * sum_dy / double(n));
  }
  for (int64_t k = 0; k < s.N; k++) {
    const float* xp = plane(s, x, k, c);    // (HW)
    const float* dyp = plane(s, dy, k, c);  // (HW)
    float* dxp = plane(s, dx, k, c);        // (HW)
#pragma omp simd
    for (int64_t i = 0; i < s.HW; i++) dxp[i] = a * dyp[i] + b * (xp[i] - mean) + d;
  }
}

}  // namespace

void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float eps, float momentum, float* running_mean,
                             float* running_var, float* y, float* save_mean, float* save_invstd) {
  const int64_t n = s.count();
  parallel_for(s.C, use_team(s), [&](int64_t c) {
    if (n == 0) {  // an empty batch has no statistics: nothing to normalise, nothing to learn
      save_mean[c] = 0.0f;
      save_invstd[c] = float(1.0 / std::sqrt(double(eps)));
      return;
    }
    const double mean = channel_sum(s, x, c) / double(n);
    const double var = channel_sqdev(s, x, c, mean) / double(n);
    const double invstd = 1.0 / std::sqrt(var + double(eps));
    save_mean[c] = float(mean);
    save_invstd[c] = float(invstd);
    update_running(mean, var, n, momentum, running_mean, running_var, c);
    const float scale = float((gamma ? double(gamma[c]) : 1.0) * invstd);
    channel_affine(s, x, c, float(mean), scale, beta ? beta[c] : 0.0f, y);
  });
}

void batchnorm_forward_eval(const BatchNormShape& s, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var,
                            float eps, float* y, float* save_mean, float* save_invstd) {
  parallel_for(s.C, use_team(s), [&](int64_t c) {
    const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
    save_mean[c] = running_mean[c];
    save_invstd[c] = float(invstd);
    const float scale = float((gamma ? double(gamma[c]) : 1.0) * invstd);
    channel_affine(s, x, c, running_mean[c], scale, beta ? beta[c] : 0.0f, y);
  });
}

void batchnorm_sums(const BatchNormShape& s, const float* x, double* sums) {
  parallel_for(s.C, use_team(s), [&](int64_t c) {
    double sum = 0.0, sum_sq = 0.0;
    for (int64_t k = 0; k < s.N; k++) {
      const float* xp = plane(s, x, k, c);  // (HW)
      for (int64_t i = 0; i < s.HW; i++) {
        sum += double(xp[i]);
        sum_sq += double(xp[i]) * double(xp[i]);
      }
    }
    sums[c] = sum;
    sums[s.C + c] = sum_sq;
  });
}

void batchnorm_forward_from_sums(const BatchNormShape& s, const double* sums, int64_t count,
                                 const float* x, const float* gamma, const float* beta, float eps,
                                 float momentum, float* running_mean, float* running_var, float* y,
                                 float* save_mean, float* save_invstd) {
  parallel_for(s.C, use_team(s), [&](int64_t c) {
    const double mean = count > 0 ? sums[c] / double(count) : 0.0;
    const double var = count > 0 ? std::max(sums[s.C + c] / double(count) - mean * mean, 0.0) : 0.0;
    const double invstd = 1.0 / std::sqrt(var + double(eps));
    save_mean[c] = float(mean);
    save_invstd[c] = float(invstd);
    if (count > 0) update_running(mean, var, count, momentum, running_mean, running_var, c);
    const float scale = float((gamma ? double(gamma[c]) : 1.0) * invstd);
    channel_affine(s, x, c, float(mean), scale, beta ? beta[c] : 0.0f, y);
  });
}

void batchnorm_backward_from_sums(const BatchNormShape& s, const double* dsums, int64_t count,
                                  const float* x, const float* gamma, const float* save_mean,
                                  const float* save_invstd, const float* dy, float* dx) {
  parallel_for(s.C, use_team(s), [&](int64_t c) {
    channel_dx(s, x, dy, c, save_mean[c], double(save_invstd[c]), gamma ? double(gamma[c]) : 1.0,
               dsums[c], dsums[s.C + c], count, dx);
  });
}

void batchnorm_backward(const BatchNormShape& s, bool batch_stats, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd,
                        const float* dy, float* dx, float* dgamma, float* dbeta) {
  const int64_t n = s.count();
  // Evaluation-mode dx needs no sums; everything else needs sum(dy) and sum(dy * (x - mean)).
  const bool need_sums = dgamma || dbeta || (dx && batch_stats);
  parallel_for(s.C, use_team(s), [&](int64_t c) {
    const float mean = save_mean[c];
    const double invstd = double(save_invstd[c]);
    const double g = gamma ? double(gamma[c]) : 1.0;
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    if (need_sums) {
      Lanes a, b;
      for (int64_t k = 0; k < s.N; k++) {
        const float* xp = plane(s, x, k, c);    // (HW)
        const float* dyp = plane(s, dy, k, c);  // (HW)
        int64_t i = 0;
        for (; i + kLanes <= s.HW; i += kLanes)
          for (int j = 0; j < kLanes; j++) {
            a.v[j] += double(dyp[i + j]);
            b.v[j] += double(dyp[i + j]) * (double(xp[i + j]) - double(mean));
          }
        for (int j = 0; i + j < s.HW; j++) {
          a.v[j] += double(dyp[i + j]);
          b.v[j] += double(dyp[i + j]) * (double(xp[i + j]) - double(mean));
        }
      }
      sum_dy = a.total();
      sum_dy_xhat = b.total() * invstd;
    }
    if (dgamma) dgamma[c] = float(sum_dy_xhat);
    if (dbeta) dbeta[c] = float(sum_dy);
    if (!dx) return;
    channel_dx(s, x, dy, c, mean, invstd, g, sum_dy, sum_dy_xhat, batch_stats ? n : 0, dx);
  });
}

// ---- references: one channel at a time, two passes, every intermediate in double -------------

void batchnorm_forward_train_ref(const BatchNormShape& s, const float* x, const float* gamma,
                                 const float* beta, float eps, float momentum, float* running_mean,
                                 float* running_var, float* y, float* save_mean,
                                 float* save_invstd) {
  const int64_t n = s.N * s.HW;
  for (int64_t c = 0; c < s.C; c++) {
    if (n == 0) {
      save_mean[c] = 0.0f;
      save_invstd[c] = float(1.0 / std::sqrt(double(eps)));
      continue;
    }
    double sum = 0.0;
    for (int64_t k = 0; k < s.N; k++)
      for (int64_t i = 0; i < s.HW; i++) sum += x[(k * s.C + c) * s.HW + i];
    const double mean = sum / double(n);
    double sq = 0.0;
    for (int64_t k = 0; k < s.N; k++)
      for (int64_t i = 0; i < s.HW; i++) {
        const double d = x[(k * s.C + c) * s.HW + i] - mean;
        sq += d * d;
      }
    const double var = sq / double(n);
    const double invstd = 1.0 / std::sqrt(var + double(eps));
    save_mean[c] = float(mean);
    save_invstd[c] = float(invstd);
    const double m = momentum;
    if (running_mean) running_mean[c] = float((1.0 - m) * running_mean[c] + m * mean);
    if (running_var)
      running_var[c] = float((1.0 - m) * running_var[c] + m * (n > 1 ? sq / double(n - 1) : var));
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    for (int64_t k = 0; k < s.N; k++)
      for (int64_t i = 0; i < s.HW; i++) {
        const int64_t j = (k * s.C + c) * s.HW + i;
        y[j] = float((x[j] - mean) * invstd * g + b);
      }
  }
}

void batchnorm_forward_eval_ref(const BatchNormShape& s, const float* x, const float* gamma,
                                const float* beta, const float* running_mean,
                                const float* running_var, float eps, float* y, float* save_mean,
                                float* save_invstd) {
  for (int64_t c = 0; c < s.C; c++) {
    const double mean = running_mean[c];
    const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
    save_mean[c] = running_mean[c];
    save_invstd[c] = float(invstd);
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    for (int64_t k = 0; k < s.N; k++)
      for (int64_t i = 0; i < s.HW; i++) {
        const int64_t j = (k * s.C + c) * s.HW + i;
        y[j] = float((x[j] - mean) * invstd * g + b);
      }
  }
}

void batchnorm_backward_ref(const BatchNormShape& s, bool batch_stats, const float* x,
                            const float* gamma, const float* save_mean, const float* save_invstd,
                            const float* dy, float* dx, float* dgamma, float* dbeta) {
  const int64_t n = s.N * s.HW;
  for (int64_t c = 0; c < s.C; c++) {
    const double mean = save_mean[c], invstd = save_invstd[c];
    const double g = gamma ? gamma[c] : 1.0;
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t k = 0; k < s.N; k++)
      for (int64_t i = 0; i < s.HW; i++) {
        const int64_t j = (k * s.C + c) * s.HW + i;
        sum_dy += dy[j];
        sum_dy_xhat += dy[j] * ((x[j] - mean) * invstd);
      }
    if (dgamma) dgamma[c] = float(sum_dy_xhat);
    if (dbeta) dbeta[c] = float(sum_dy);
    if (!dx) continue;
    for (int64_t k = 0; k < s.N; k++)
      for (int64_t i = 0; i < s.HW; i++) {
        const int64_t j = (k * s.C + c) * s.HW + i;
        const double xhat = (x[j] - mean) * invstd;
        const double t = batch_stats ? dy[j] - sum_dy / double(n) - xhat * sum_dy_xhat / double(n)
                                     : double(dy[j]);
        dx[j] = float(g * invstd * t);
      }
  }
}

}  // namespace sprig::cpu
