#pragma once
// Small pieces the experiments' sweeps share: summary statistics over repeated runs, checks on
// list-valued flags, number formats for labels, and trials spread over MPI ranks.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "train/trainer.h"

namespace sprig::app::experiments {

// Mean and spread of repeated measurements. std is the sample standard deviation (n - 1 in the
// denominator; 0 for a single value), which is what the error bars show.
struct Spread {
  double mean = 0.0, std = 0.0, min = 0.0, max = 0.0;
  size_t n = 0;
};
Spread spread(const std::vector<double>& values);

// Throws sprig::Error naming the flag when a list-valued flag is empty or repeats a value.
void check_distinct(const std::string& flag, const std::vector<double>& values);
void check_distinct(const std::string& flag, const std::vector<int>& values);

// "0.95" -> "95%", "0.875" -> "87.5%": sparsities for labels and run names.
std::string percent_label(double fraction);

// printf's %g: params and short labels.
std::string format_g(double v);

// Signed percentage points with one decimal ("+1.2 pp", "-0.4 pp").
std::string signed_pp(double pp);

// Runs task(i) for every i in [0, n), task i on rank i % comm.size() (mpirun -np N sprig
// experiment ...), and returns every task's result, in index order, on every rank. A task runs
// alone on its rank and computes what it computes in one process; results travel as JSON, whose
// numbers keep every bit of a double, so what follows is the same on every rank and the same as
// one process's. `each` (optional) sees every result in index order on every rank: in a group of
// one as soon as the task ends (progress lines), otherwise once all of them are in.
using TaskResult = std::function<void(int64_t, const nlohmann::json&)>;
std::vector<nlohmann::json> spread_tasks(const dist::Comm& comm, int64_t n,
                                         const std::function<nlohmann::json(int64_t)>& task,
                                         const TaskResult& each = nullptr);

// Evaluations and epoch records as JSON and back, for sending a trial's results between ranks.
nlohmann::json eval_to_json(const train::EvalResult& e);
train::EvalResult eval_from_json(const nlohmann::json& j);
nlohmann::json epochs_to_json(const std::vector<train::EpochStats>& epochs);
std::vector<train::EpochStats> epochs_from_json(const nlohmann::json& j);

}  // namespace sprig::app::experiments
