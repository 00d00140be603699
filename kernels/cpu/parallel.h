#pragma once
// parallel_range: the element-wise kernels' loop split. Internal: include only from kernels/cpu.
#include <omp.h>

#include <cstdint>

namespace sprig::cpu {

// Calls body(lo, hi) on [0, n): once per thread of the OpenMP team, in equal static chunks,
// when n >= min_parallel and no parallel region is running; else once on the calling thread.
// The body is a plain loop that the compiler vectorizes in both cases. (GCC 12 compiles
// "#pragma omp parallel for simd if (...)" with a scalar loop for the serial case, so every
// element-wise kernel below the threshold ran one float at a time.)
template <class Body>
void parallel_range(int64_t n, int64_t min_parallel, Body&& body) {
  if (n < min_parallel || omp_in_parallel() || omp_get_max_threads() == 1) {
    body(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    body(n * t / T, n * (t + 1) / T);
  }
}

}  // namespace sprig::cpu
