#pragma once
// Reductions in device memory (mirrors kernels/cpu/reduce.h). Deterministic: a fixed tree per
// size, accumulated in double.
#include <cstdint>

namespace sprig::cuda {

// out[0] (device) = factor * sum(x)
void sum(int64_t n, const float* x, float factor, float* out);
// out (cols) = sum over rows of x (rows, cols)
void sum_rows(int64_t rows, int64_t cols, const float* x, float* out);
// These two return to the host, so they wait for the stream.
bool all_finite(int64_t n, const float* x);
int64_t count_nonzero(int64_t n, const float* x);

}  // namespace sprig::cuda
