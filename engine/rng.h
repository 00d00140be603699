#pragma once
// Seeded, portable random numbers (same stream on every platform, unlike std distributions).
#include <cstdint>

namespace sprig {

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next_u64();
  // Uniform in [0, 1) with 24 random bits, the resolution of float32.
  float uniform() { return (next_u64() >> 40) * (1.0f / 16777216.0f); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Standard normal by Box-Muller (one value per call; simple rather than fast).
  float normal();
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n);

 private:
  uint64_t s_[4];
};

}  // namespace sprig
