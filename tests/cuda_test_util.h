#pragma once
// Helpers shared by the CUDA suites (tests/test_cuda_*.cpp): the device under test, the two
// backends, host-side inputs, and the comparison every parity check uses.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace sprig::testing {

inline const Device kGpu = Device::cuda();
inline const Backend& cpu_be() {
  return backend_for(Device::cpu());
}
inline const Backend& gpu_be() {
  return backend_for(kGpu);
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The message of the sprig::Error that f throws; fails the test when it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected a sprig::Error, nothing was thrown");
  return "";
}

inline std::vector<float> random_values(int64_t n, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

// A uint8 tensor on the host (a mask), shaped (v.size()) unless shape is given.
inline Tensor u8_tensor(const std::vector<uint8_t>& v, Shape shape = {}) {
  if (shape.empty()) shape = {int64_t(v.size())};
  REQUIRE(numel(shape) == int64_t(v.size()));
  Tensor t = Tensor::empty(shape, DType::U8);
  std::memcpy(t.data_as<uint8_t>(), v.data(), v.size());
  return t;
}

// Every element: |got - want| <= rtol * (|want| + floor), floor = max|want| when `of_largest`
// (reductions: an output that cancels to ~0 carries the rounding of its large terms) else 0
// (element-wise: each value is its own scale, and an exact 0 must stay exactly 0). NaN fails.
inline void check_close(const std::vector<float>& got, const std::vector<float>& want, double rtol,
                        bool of_largest, const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what, ": ", got.size(), " values vs ", want.size());
  double floor = 0.0;
  if (of_largest)
    for (float w : want) floor = std::max(floor, double(std::fabs(w)));
  int64_t bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    const double tol = rtol * (std::fabs(double(want[i])) + floor);
    if (!(err <= tol)) {  // written so that NaN fails
      if (bad < 5)
        MESSAGE(what, " [", i, "]: gpu ", got[i], " vs cpu ", want[i], " (tolerance ", tol, ")");
      ++bad;
    }
    if (tol > 0) worst = std::max(worst, err / tol);
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", got.size(), " values differ (worst ", worst,
                " x tolerance)");
}

}  // namespace sprig::testing
