#include "kernels/cpu/threads.h"

#include <omp.h>

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

}  // namespace sprig::cpu
