#pragma once
// Inputs shared by the kernel suites.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace sprig::testing {

// n values uniform in [-1, 1) from a fixed seed.
inline std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// |v|, element-wise: running a reference on magnitudes bounds the rounding error of a sum.
inline std::vector<float> abs_vec(const std::vector<float>& v) {
  std::vector<float> a(v.size());
  for (size_t i = 0; i < v.size(); i++) a[i] = std::fabs(v[i]);
  return a;
}

}  // namespace sprig::testing
