#pragma once
// Comparing the models of a data-parallel run with one process's (test_dist, test_cli_mpi).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/model.h"

namespace sprig::testing {

// ||a - b|| / ||a|| over every parameter, the largest one.
inline double max_relative_difference(const nn::Model& a, const nn::Model& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  double worst = 0.0;
  for (size_t i = 0; i < pa.size(); ++i) {
    std::vector<float> x = pa[i].second->value.to_vector(), y = pb[i].second->value.to_vector();
    REQUIRE(x.size() == y.size());
    double diff = 0.0, norm = 0.0;
    for (size_t k = 0; k < x.size(); ++k) {
      diff += (double(x[k]) - y[k]) * (double(x[k]) - y[k]);
      norm += double(x[k]) * x[k];
    }
    worst = std::max(worst, std::sqrt(diff / std::max(norm, 1e-60)));
  }
  return worst;
}

// How many parameters carry a mask, after checking that a and b mask the same parameters with
// the same bits.
inline int check_same_masks(const nn::Model& a, const nn::Model& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  int masked = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    REQUIRE(pa[i].first == pb[i].first);
    REQUIRE(bool(pa[i].second->mask) == bool(pb[i].second->mask));
    if (!pa[i].second->mask) continue;
    ++masked;
    const Tensor& ka = pa[i].second->mask->keep;
    const Tensor& kb = pb[i].second->mask->keep;
    CHECK(std::equal(ka.data_as<uint8_t>(), ka.data_as<uint8_t>() + ka.numel(),
                     kb.data_as<uint8_t>()));
  }
  return masked;
}

}  // namespace sprig::testing
