#include "apps/experiments/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "engine/error.h"

namespace sprig::app::experiments {

Spread spread(const std::vector<double>& values) {
  Spread s;
  s.n = values.size();
  if (values.empty()) return s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  double sum = 0.0;
  for (double v : values) sum += v;
  s.mean = sum / double(values.size());
  if (values.size() > 1) {
    double sq = 0.0;
    for (double v : values) sq += (v - s.mean) * (v - s.mean);
    s.std = std::sqrt(sq / double(values.size() - 1));
  }
  return s;
}

template <typename T>
static void check_distinct_impl(const std::string& flag, const std::vector<T>& values) {
  SPRIG_CHECK(!values.empty(), flag, " is empty");
  std::set<T> seen;
  for (const T& v : values) SPRIG_CHECK(seen.insert(v).second, flag, " lists ", v, " twice");
}

void check_distinct(const std::string& flag, const std::vector<double>& values) {
  check_distinct_impl(flag, values);
}
void check_distinct(const std::string& flag, const std::vector<int>& values) {
  check_distinct_impl(flag, values);
}

std::string percent_label(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g%%", 100.0 * fraction);
  return buf;
}

std::string format_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string signed_pp(double pp) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f pp", pp);
  return buf;
}

}  // namespace sprig::app::experiments
