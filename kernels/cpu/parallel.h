#pragma once
// parallel_range: the element-wise kernels' loop split. Internal: include only from kernels/cpu.
#include <cstdint>
#include <limits>

#include "kernels/cpu/threads.h"

namespace sprig::cpu {

// Calls body(lo, hi) on [0, n): once per available thread, in equal chunks run as items of
// run_items, when n >= min_parallel; else once on the calling thread. The body is a plain loop
// that the compiler vectorizes in both cases. (GCC 12 compiles "#pragma omp parallel for simd
// if (...)" with a scalar loop for the serial case, so every element-wise kernel below the
// threshold ran one float at a time.)
template <class Body>
void parallel_range(int64_t n, int64_t min_parallel, Body&& body) {
  const int64_t T = n < min_parallel ? 1 : available_threads();
  if (T == 1) {
    body(int64_t(0), n);
    return;
  }
  run_items(T, int(T), [&](int64_t t) { body(n * t / T, n * (t + 1) / T); });
}

// Calls body(i) for every i in [0, n): in parallel_range's chunks when `parallel`, else in
// order on the calling thread (what "#pragma omp parallel for schedule(static) if (parallel)"
// did).
template <class Body>
void parallel_for(int64_t n, bool parallel, Body&& body) {
  parallel_range(n, parallel ? 2 : std::numeric_limits<int64_t>::max(),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t i = lo; i < hi; ++i) body(i);
                 });
}

}  // namespace sprig::cpu
