#include "kernels/cpu/threads.h"

#include <omp.h>

#include <exception>

namespace sprig::cpu {

void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);  // 0 leaves OpenMP's default (OMP_NUM_THREADS) alone
}

int num_threads() {
  return omp_get_max_threads();
}

int num_processors() {
  return omp_get_num_procs();
}

int planned_shards(int64_t n, int64_t min_per_shard) {
  const int threads = omp_get_max_threads();
  return omp_in_parallel() || threads < 2 || n < min_per_shard * threads ? 1 : threads;
}

int for_each_shard(int64_t n, int64_t min_per_shard,
                   const std::function<void(int shard, int64_t lo, int64_t hi)>& body) {
  const int threads = planned_shards(n, min_per_shard);
  if (threads == 1) {
    body(0, 0, n);
    return 1;
  }
  std::exception_ptr error;
  int shards = 1;
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    if (t == 0) shards = int(T);  // OpenMP may grant fewer threads than asked for
    try {
      body(int(t), n * t / T, n * (t + 1) / T);
    } catch (...) {
#pragma omp critical(sprig_for_each_shard)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return shards;
}

}  // namespace sprig::cpu
