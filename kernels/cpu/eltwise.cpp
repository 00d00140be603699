// Element-wise kernels. Plain loops the compiler vectorizes; threads only pay past ~64K values
// (parallel_range).
#include "kernels/cpu/eltwise.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"

namespace sprig::cpu {

static constexpr int64_t kParallelMin = 1 << 16;

void add(int64_t n, const float* a, const float* b, float* out) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
  });
}

void sub(int64_t n, const float* a, const float* b, float* out) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] - b[i];
  });
}

void mul(int64_t n, const float* a, const float* b, float* out) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] * b[i];
  });
}

void scale(int64_t n, const float* a, float s, float* out) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] * s;
  });
}

void axpy(int64_t n, float alpha, const float* x, float* y) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] += alpha * x[i];
  });
}

void fill(int64_t n, float value, float* out) {
  std::fill(out, out + n, value);
}

// NaN passes through, as in PyTorch (x <= 0 is false for NaN): mapping it to 0 would hide a
// diverged layer behind finite outputs and a finite loss.
void relu_forward(int64_t n, const float* x, float* y) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
  });
}

void add_relu(int64_t n, const float* a, const float* b, float* out) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float v = a[i] + b[i];
      out[i] = v <= 0.0f ? 0.0f : v;
    }
  });
}

void relu_backward(int64_t n, const float* x, const float* dy, float* dx) {
  parallel_range(n, kParallelMin, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dx[i] = x[i] <= 0.0f ? 0.0f : dy[i];
  });
}

void add_row_bias(int64_t rows, int64_t cols, const float* b, float* y) {
  parallel_range(rows, std::max<int64_t>(1, kParallelMin / std::max<int64_t>(cols, 1)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t r = lo; r < hi; ++r) {
                     float* yr = y + r * cols;  // (cols)
                     for (int64_t c = 0; c < cols; ++c) yr[c] += b[c];
                   }
                 });
}

void relu_forward_ref(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::isnan(x[i]) ? x[i] : std::max(x[i], 0.0f);
}

// PyTorch's threshold_backward: the gradient is cut where x <= 0, so it passes at NaN.
void relu_backward_ref(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] > 0.0f || std::isnan(x[i]))
      dx[i] = dy[i];
    else
      dx[i] = 0.0f;
  }
}

}  // namespace sprig::cpu
