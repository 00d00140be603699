#pragma once
// `sprig experiment NAME`: the seed write-ups as commands. Each experiment logs to a Tracker
// (MLflow REST or the local store), writes one HTML report and prints its tables.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "apps/commands.h"
#include "apps/report/report.h"
#include "apps/track/tracker.h"
#include "dist/comm.h"
#include "nn/model.h"
#include "nn/summary.h"
#include "train/trainer.h"

namespace sprig::app::experiments {

// Flags every experiment takes.
struct CommonFlags {
  std::string tracking_uri;            // --tracking-uri http://HOST:PORT
  std::string local_store = "mlruns";  // --local-store DIR (always written)
  std::string report;                  // --report PATH (default reports/<name>.html)
  std::string tensorboard;             // --tensorboard DIR
  std::string dataset, data_dir;       // --dataset / --data-dir
  std::string experiment_name;         // --experiment-name (default sprig-<name>)
  uint64_t seed = 0;                   // --seed
  int threads = 0;                     // --threads (0 = OpenMP's default)
  int64_t train_samples = -1;          // --train-samples N: the first N training samples (-1: all)
  int64_t test_samples = -1;           // --test-samples N: the first N test samples (-1: all)
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

// An open run that is ended FAILED if it is left by an exception; end() finishes it normally.
class RunScope {
 public:
  RunScope(track::Tracker& tracker, std::string run_id)
      : tracker_(tracker), id_(std::move(run_id)) {}
  ~RunScope();
  RunScope(const RunScope&) = delete;
  RunScope& operator=(const RunScope&) = delete;
  const std::string& id() const { return id_; }
  void end(const std::string& status = "FINISHED");

 private:
  track::Tracker& tracker_;
  std::string id_;
  bool open_ = true;
};

// The dataset named by --dataset (else `fallback`) cut to --train-samples / --test-samples.
train::DataSource load_data(const Context& ctx, const std::string& fallback);
// Applies --train-samples / --test-samples to data already loaded.
void limit_samples(const CommonFlags& flags, train::DataSource& src);

// Logs one metric per epoch with step = epoch number + step_offset: <prefix>train_loss,
// <prefix>test_accuracy (or <prefix>test_mse) and <prefix>epoch_seconds.
void log_epochs(Context& ctx, const std::string& run_id,
                const std::vector<train::EpochStats>& epochs, train::Task task,
                int64_t step_offset = 0, const std::string& prefix = "");

// The model an experiment starts from: trained here, or loaded from a checkpoint (--base).
struct BaseFlags {
  std::string base;              // --base CHECKPOINT ("" = train)
  std::string model;             // --model (zoo name or spec)
  int epochs = 2;                // --base-epochs (or --max-epochs)
  int64_t batch_size = 64;       // --batch-size
  train::OptimizerConfig optim;  // --lr (Adam)
};
struct BaseModel {
  nn::Model model;
  train::DataSource src;
  std::vector<train::EpochStats> history;  // empty when loaded
  train::EvalResult test;                  // on the (possibly limited) test split
  std::string origin;                      // "trained 2 epochs" or the checkpoint path
};
// Registers --base (when with_base_flag), --model, --batch-size and --lr; the epochs flag is the
// caller's (its name differs between experiments).
void add_base_flags(CLI::App& app, BaseFlags& flags, bool with_base_flag);
BaseModel make_base(Context& ctx, const BaseFlags& flags);
// Experiments that spread trials over MPI ranks: rank 0 makes the base model (make_base) and
// sends it with this call; every other rank calls it to receive the model (masks included) and
// the base's test result, and loads the same data itself (by the dataset's name, `flags`'
// --data-dir, --seed and sample limits). Training history and origin stay on rank 0. A group of
// one does nothing.
void share_base(const dist::Comm& comm, const CommonFlags& flags, BaseModel& base);
// The base model for the first line printed: "mlp, 2 epochs" or the --base checkpoint's path.
std::string describe_base(const BaseFlags& flags);
// Saves the model to a temporary checkpoint (metadata: dataset, created_by), logs it as an
// artifact under "model/" and removes the temporary file.
void log_model_artifact(Context& ctx, const std::string& run_id, const nn::Model& model,
                        const std::string& dataset, const std::string& file_name);

// Adds a point (epoch + x_offset, test accuracy) per epoch: accuracy curves in the reports.
void append_test_accuracy(report::Series& series, const std::vector<train::EpochStats>& epochs,
                          double x_offset = 0.0);
// One bar per layer that has parameters, its sparsity, labelled "<name> <spec>": where pruning
// took the weights from.
report::Chart layer_sparsity_chart(const std::string& id, const std::string& title,
                                   const nn::ModelSummary& summary);

// Table text: 0.9043 -> "90.43%", 126698 -> "126,698", (1, "epoch") -> "1 epoch".
std::string pct(double fraction);
std::string with_commas(int64_t value);
std::string plural(int64_t n, const std::string& noun);
// The model's spec when it is short; for a long one (a ResNet) the output widths of its conv
// and linear layers in order, "widths 16/8/16/8/16/...", which is what pruning changes.
std::string short_spec(const nn::Model& model);

// One per experiment, each in its own file; registered under `sprig experiment`.
Command add_iterative(CLI::App& app);           // seed 000, iterative.cpp
Command add_l1_vs_fpgm(CLI::App& app);          // seed 001, l1_vs_fpgm.cpp
Command add_taylor(CLI::App& app);              // seed 002, taylor.cpp
Command add_gradual_vs_instant(CLI::App& app);  // seed 003, gradual_vs_instant.cpp
Command add_friedman(CLI::App& app);            // seed 004, friedman.cpp
Command add_pipeline(CLI::App& app);            // the main job, end to end, pipeline.cpp
Command add_prune_quantize(CLI::App& app);      // issue 17, prune_quantize.cpp

}  // namespace sprig::app::experiments
