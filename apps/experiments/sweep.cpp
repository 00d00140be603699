#include "apps/experiments/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "kernels/error.h"

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

std::vector<nlohmann::json> spread_tasks(const dist::Comm& comm, int64_t n,
                                         const std::function<nlohmann::json(int64_t)>& task,
                                         const TaskResult& each) {
  std::vector<nlohmann::json> out;
  if (comm.size() == 1) {
    for (int64_t i = 0; i < n; ++i) {
      out.push_back(task(i));
      if (each) each(i, out.back());
    }
    return out;
  }
  nlohmann::json mine = nlohmann::json::array();
  for (int64_t i = comm.rank(); i < n; i += comm.size()) mine.push_back(task(i));
  // Rank r holds tasks r, r + N, ...: interleave them back into one list.
  std::vector<nlohmann::json> by_rank;
  for (const std::string& part : comm.allgather(mine.dump()))
    by_rank.push_back(nlohmann::json::parse(part));
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(by_rank[size_t(i % comm.size())][size_t(i / comm.size())]);
    if (each) each(i, out.back());
  }
  return out;
}

nlohmann::json eval_to_json(const train::EvalResult& e) {
  return {e.loss, e.accuracy, e.samples};
}
train::EvalResult eval_from_json(const nlohmann::json& j) {
  return {j[0].get<double>(), j[1].get<double>(), j[2].get<int64_t>()};
}

nlohmann::json epochs_to_json(const std::vector<train::EpochStats>& epochs) {
  nlohmann::json out = nlohmann::json::array();
  for (const train::EpochStats& e : epochs)
    out.push_back({e.epoch, e.train_loss, e.seconds, eval_to_json(e.test)});
  return out;
}

std::vector<train::EpochStats> epochs_from_json(const nlohmann::json& j) {
  std::vector<train::EpochStats> out;
  for (const auto& e : j) {
    train::EpochStats st;
    st.epoch = e[0];
    st.train_loss = e[1];
    st.seconds = e[2];
    st.test = eval_from_json(e[3]);
    out.push_back(st);
  }
  return out;
}

}  // namespace sprig::app::experiments
