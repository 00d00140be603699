// Softmax cross-entropy and MSE. The softmax is shifted by the row maximum so exp never
// overflows; log-sum-exp is accumulated in double.
#include "kernels/cpu/loss.h"

#include <algorithm>
#include <cmath>

namespace sprig::cpu {

// log(sum(exp(row - max))) + max, the log of the softmax denominator.
static double row_logsumexp(int64_t C, const float* row) {
  float mx = *std::max_element(row, row + C);
  double s = 0.0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(double(row[c] - mx));
  return std::log(s) + mx;
}

float softmax_cross_entropy_forward(int64_t N, int64_t C, const float* logits,
                                    const int32_t* labels) {
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits + i * C;  // (C)
    total += row_logsumexp(C, row) - row[labels[i]];
  }
  return float(total / double(N));
}

void softmax_cross_entropy_backward(int64_t N, int64_t C, const float* logits,
                                    const int32_t* labels, float dloss, float* dlogits) {
  const float g = dloss / float(N);
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits + i * C;  // (C)
    float* drow = dlogits + i * C;      // (C)
    float lse = float(row_logsumexp(C, row));
    for (int64_t c = 0; c < C; ++c) drow[c] = g * std::exp(row[c] - lse);
    drow[labels[i]] -= g;
  }
}

float mse_forward(int64_t n, const float* pred, const float* target) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double d = double(pred[i]) - double(target[i]);
    s += d * d;
  }
  return float(s / double(n));
}

void mse_backward(int64_t n, const float* pred, const float* target, float dloss, float* dpred) {
  const float g = 2.0f * dloss / float(n);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dpred[i] = g * (pred[i] - target[i]);
}

// The textbook two-pass softmax, written independently of the fast path above.
float softmax_cross_entropy_forward_ref(int64_t N, int64_t C, const float* logits,
                                        const int32_t* labels) {
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    double mx = logits[i * C];
    for (int64_t c = 1; c < C; ++c) mx = std::max(mx, double(logits[i * C + c]));
    double denom = 0.0;
    for (int64_t c = 0; c < C; ++c) denom += std::exp(double(logits[i * C + c]) - mx);
    double p = std::exp(double(logits[i * C + labels[i]]) - mx) / denom;
    total += -std::log(p);
  }
  return float(total / N);
}

void softmax_cross_entropy_backward_ref(int64_t N, int64_t C, const float* logits,
                                        const int32_t* labels, float dloss, float* dlogits) {
  for (int64_t i = 0; i < N; ++i) {
    double mx = logits[i * C];
    for (int64_t c = 1; c < C; ++c) mx = std::max(mx, double(logits[i * C + c]));
    double denom = 0.0;
    for (int64_t c = 0; c < C; ++c) denom += std::exp(double(logits[i * C + c]) - mx);
    for (int64_t c = 0; c < C; ++c) {
      double p = std::exp(double(logits[i * C + c]) - mx) / denom;
      double onehot = (c == labels[i]) ? 1.0 : 0.0;
      dlogits[i * C + c] = float(dloss * (p - onehot) / N);
    }
  }
}

}  // namespace sprig::cpu
