#pragma once
// What the shrink suites share: a random batch for a model and the check that a shrunk model
// computes what the masked one did.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace sprig::test {

// n samples of per-sample shape, N(0, 1), reproducible from seed.
inline Tensor random_batch(const Shape& per_sample, int64_t n, uint64_t seed) {
  Shape s = {n};
  s.insert(s.end(), per_sample.begin(), per_sample.end());
  Rng rng(seed);
  return Tensor::normal(s, 0.0f, 1.0f, rng);
}

// max |a - b| <= 1e-5 * max(1, max |a|): shrinking only drops exact zeros from sums, so the
// outputs differ by float rounding of the remaining terms at most.
inline void check_close(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float diff = 0.0f, scale = 1.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(a[i]));
  }
  CHECK(diff <= 1e-5f * scale);
}

}  // namespace sprig::test
