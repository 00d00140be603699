// Reductions in fixed-size chunks: the chunk boundaries do not depend on the thread count, and
// the chunk sums are added in order, so results are bit-identical for any number of threads.
#include "kernels/cpu/reduce.h"

#include <atomic>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace sprig::cpu {

static constexpr int64_t kChunk = 4096;

double sum(int64_t n, const float* x) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) return sum_ref(n, x);
  std::vector<double> partial(chunks);  // (chunks)
  parallel_for(chunks, chunks >= 16, [&](int64_t c) {
    int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
    double s = 0.0;
    for (int64_t i = begin; i < end; ++i) s += x[i];
    partial[c] = s;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void sum_rows(int64_t rows, int64_t cols, const float* x, float* out) {
  // Rows are added one after another so each column's order is fixed; the inner loop over
  // columns vectorizes.
  std::vector<double> acc(cols, 0.0);  // (cols)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) acc[c] += xr[c];
  }
  for (int64_t c = 0; c < cols; ++c) out[c] = float(acc[c]);
}

bool all_finite(int64_t n, const float* x) {
  std::atomic<int> bad{0};
  parallel_range(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    int b = 0;
    for (int64_t i = lo; i < hi; ++i) b |= !std::isfinite(x[i]);
    bad.fetch_or(b, std::memory_order_relaxed);
  });
  return !bad.load();
}

double sum_ref(int64_t n, const float* x) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

void sum_rows_ref(int64_t rows, int64_t cols, const float* x, float* out) {
  for (int64_t c = 0; c < cols; ++c) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += x[r * cols + c];
    out[c] = float(s);
  }
}

}  // namespace sprig::cpu
