// The all-reduce's cost on this machine, for the scaling model in docs/scaling.md: the time of
// one sum of n floats over every rank, blocking (MPI_Allreduce) and non-blocking as the
// gradient buckets use it (MPI_Iallreduce, then wait), for n from 1 to 4M floats.
//
// Usage: mpirun -np N build/bench/allreduce_cost [--reps R]
// Prints one line per size on rank 0: bytes, microseconds per call (median of 5 runs of R
// calls each), and the bus bandwidth 2 (N - 1) / N x bytes / time (a ring all-reduce's traffic).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dist/comm.h"

using sprig::dist::Comm;

static double time_calls(const Comm& c, std::vector<float>& x, int reps, bool nonblocking) {
  std::vector<double> runs;
  for (int run = 0; run < 5; ++run) {
    c.barrier();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
      if (nonblocking)
        c.iallreduce_sum(x.data(), int64_t(x.size())).wait();
      else
        c.allreduce_sum(x.data(), int64_t(x.size()));
    }
    runs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                   reps);
  }
  std::sort(runs.begin(), runs.end());
  return runs[2];
}

int main(int argc, char** argv) {
  int reps = 50;
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::atoi(argv[i + 1]));
  const Comm& c = Comm::world();
  if (c.is_root())
    std::printf("# %d ranks, %d calls per run, median of 5 runs\n# %10s %12s %12s %14s\n",
                c.size(), reps, "bytes", "blocking_us", "nonblock_us", "bus_GB_per_s");
  for (int64_t n = 1; n <= (int64_t(4) << 20); n *= 4) {
    std::vector<float> x(size_t(n), 1.0f);
    const double blocking = time_calls(c, x, reps, false);
    const double nonblocking = time_calls(c, x, reps, true);
    const double bytes = 4.0 * double(n);
    if (c.is_root())
      std::printf("  %10.0f %12.1f %12.1f %14.2f\n", bytes, blocking * 1e6, nonblocking * 1e6,
                  2.0 * (c.size() - 1) / c.size() * bytes / blocking / 1e9);
  }
  return 0;
}
