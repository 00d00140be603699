#pragma once
// `sprig experiment NAME`: the seed write-ups as commands. Each experiment logs to a Tracker
// (MLflow REST or the local store), writes one HTML report and prints its tables.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/report/report.h"
#include "apps/track/tracker.h"

namespace sprig::app::experiments {

// Flags every experiment takes.
struct CommonFlags {
  std::string tracking_uri;          // --tracking-uri http://HOST:PORT
  std::string local_store = "mlruns";  // --local-store DIR (always written)
  std::string report;                // --report PATH (default reports/<name>.html)
  std::string tensorboard;           // --tensorboard DIR
  std::string dataset, data_dir;     // --dataset / --data-dir
  std::string experiment_name;       // --experiment-name (default sprig-<name>)
  uint64_t seed = 0;                 // --seed
  int threads = 0;                   // --threads (0 = OpenMP's default)
};
void add_common_flags(CLI::App& app, CommonFlags& flags);

// What a running experiment writes to.
struct Context {
  std::string name;  // e.g. "iterative"
  CommonFlags flags;
  std::unique_ptr<track::Tracker> tracker;
  report::Report report;
  std::string report_path;
  Context(const std::string& name, const CommonFlags& flags);
};
// Writes the report, logs it as an artifact of `run_id` (when given), prints the report's
// path as the last line and any tracking warnings.
void finish(Context& ctx, const std::string& run_id);

// One per experiment, each in its own file; registered under `sprig experiment`.
Command add_iterative(CLI::App& app);           // seed 000, iterative.cpp
Command add_l1_vs_fpgm(CLI::App& app);          // seed 001, l1_vs_fpgm.cpp
Command add_taylor(CLI::App& app);              // seed 002, taylor.cpp
Command add_gradual_vs_instant(CLI::App& app);  // seed 003, gradual_vs_instant.cpp
Command add_friedman(CLI::App& app);            // seed 004, friedman.cpp

}  // namespace sprig::app::experiments
