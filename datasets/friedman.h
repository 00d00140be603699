#pragma once
// Friedman #1 synthetic regression problem, as scikit-learn's make_friedman1.
#include <cstdint>
#include <utility>

#include "datasets/mnist.h"

namespace sprig::data {

// X ~ U[0, 1)^(n_samples, n_features) and
//   y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + noise * N(0, 1),
// where only the first 5 features matter. images = X (N, n_features) float32,
// labels = y (N, 1) float32, name "friedman1". All of X is drawn before the noise (the
// order scikit-learn uses). n_samples >= 1, n_features >= 5, noise >= 0.
Dataset make_friedman1(int64_t n_samples, int n_features = 10, float noise = 0.0f,
                       uint64_t seed = 0);

// Shuffles with permutation(N, seed), then puts the first ceil(test_fraction * N) samples of
// the permutation in the test set and the rest in the training set (as scikit-learn's
// train_test_split). Returns {train, test}, named name + "/train" and name + "/test".
// test_fraction must be in (0, 1) and both parts non-empty.
std::pair<Dataset, Dataset> train_test_split(const Dataset& ds, double test_fraction,
                                             uint64_t seed);

}  // namespace sprig::data
