#pragma once
// Reductions. Deterministic for a fixed thread count: partial sums per fixed chunk, combined
// in chunk order, accumulated in double.
#include <cstdint>

namespace sprig::cpu {

double sum(int64_t n, const float* x);
// out (cols) = sum over rows of x (rows, cols); used for bias gradients.
void sum_rows(int64_t rows, int64_t cols, const float* x, float* out);
// True when every value is finite.
bool all_finite(int64_t n, const float* x);

double sum_ref(int64_t n, const float* x);
void sum_rows_ref(int64_t rows, int64_t cols, const float* x, float* out);

}  // namespace sprig::cpu
