#include "datasets/friedman.h"

#include <cmath>
#include <vector>

#include "datasets/dataloader.h"
#include "engine/rng.h"

namespace sprig::data {

Dataset make_friedman1(int64_t n_samples, int n_features, float noise, uint64_t seed) {
  SPRIG_CHECK(n_samples >= 1, "make_friedman1: n_samples must be >= 1, got ", n_samples);
  SPRIG_CHECK(n_features >= 5, "make_friedman1: n_features must be >= 5, got ", n_features);
  SPRIG_CHECK(noise >= 0.0f && std::isfinite(noise),
              "make_friedman1: noise must be a finite value >= 0, got ", noise);
  Rng rng(seed);
  Dataset ds;
  ds.name = "friedman1";
  ds.images = Tensor::empty({n_samples, n_features});  // X: (N, F)
  ds.labels = Tensor::empty({n_samples, 1});           // y: (N, 1)
  float* x = ds.images.data();
  float* y = ds.labels.data();
  const int64_t total = n_samples * n_features;
  for (int64_t i = 0; i < total; ++i) x[i] = rng.uniform();
  for (int64_t i = 0; i < n_samples; ++i) {
    const float* r = x + i * n_features;
    // In double so that the float result is the correctly rounded value of the formula.
    double v = 10.0 * std::sin(M_PI * double(r[0]) * double(r[1])) +
               20.0 * (double(r[2]) - 0.5) * (double(r[2]) - 0.5) + 10.0 * double(r[3]) +
               5.0 * double(r[4]);
    y[i] = static_cast<float>(v);
  }
  if (noise > 0.0f) {
    for (int64_t i = 0; i < n_samples; ++i) y[i] += noise * rng.normal();
  }
  return ds;
}

std::pair<Dataset, Dataset> train_test_split(const Dataset& ds, double test_fraction,
                                             uint64_t seed) {
  SPRIG_CHECK(test_fraction > 0.0 && test_fraction < 1.0,
              "train_test_split: test fraction must be in (0, 1), got ", test_fraction);
  check_dataset(ds, "train_test_split");
  const int64_t n = ds.size();
  const int64_t n_test = static_cast<int64_t>(std::ceil(test_fraction * double(n)));
  const int64_t n_train = n - n_test;
  SPRIG_CHECK(n_test >= 1 && n_train >= 1, "train_test_split: test fraction ", test_fraction,
              " of ", n, " samples leaves ", n_train, " for training and ", n_test,
              " for testing; both must be >= 1");
  std::vector<int64_t> perm = permutation(n, seed);
  std::vector<int64_t> test_idx(perm.begin(), perm.begin() + n_test);
  std::vector<int64_t> train_idx(perm.begin() + n_test, perm.end());
  Dataset train = subset(ds, train_idx);
  Dataset test = subset(ds, test_idx);
  train.name = ds.name + "/train";
  test.name = ds.name + "/test";
  return {train, test};
}

}  // namespace sprig::data
