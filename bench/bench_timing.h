#pragma once
// What the in-process kernel benchmarks (gemm_int8, sparse_int8) share: timing a call, the
// median of rounds, and their two flags.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sprig::bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds per call of f after one warm-up call: calls repeated until the timing lasts >= 20 ms,
// so short calls are not timer noise.
template <class F>
double seconds_per_call(F f) {
  f();
  int reps = 1;
  for (;;) {
    const double t0 = now_s();
    for (int i = 0; i < reps; ++i) f();
    const double t = now_s() - t0;
    if (t >= 0.02) return t / reps;
    reps *= 2;
  }
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// --threads T and --rounds R; false (after printing the usage) on anything else.
inline bool parse_threads_rounds(int argc, char** argv, const char* program, int& threads,
                                 int& rounds) {
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = i + 1 < argc ? std::atoi(argv[i + 1]) : 0;
    if (flag == "--threads" && value > 0)
      threads = value;
    else if (flag == "--rounds" && value > 0)
      rounds = value;
    else {
      std::fprintf(stderr, "usage: %s [--threads T] [--rounds R]\n", program);
      return false;
    }
  }
  return true;
}

}  // namespace sprig::bench
