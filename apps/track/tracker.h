#pragma once
// Experiment tracking in MLflow's data model: an experiment holds runs; a run has params, metrics
// (with steps), tags and artifacts; nested runs carry the tag mlflow.parentRunId.
//
// Every call is written to a local store that MLflow itself can read (the FileStore layout,
// `mlruns/<experiment_id>/<run_id>/...`), so nothing is lost. With a tracking URI
// (http://HOST:PORT) the same calls also go to a live MLflow server through its REST API
// (/api/2.0/mlflow/...); a server that is down or refuses a call gives one warning on stderr
// and the run goes on with its local record.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sprig::track {

struct TrackerOptions {
  std::string tracking_uri;          // "" = local store only; "http://host:port" = REST too
  std::string local_dir = "mlruns";  // the local store (always written)
  std::string experiment_name;       // created when missing, reused otherwise
  std::string tensorboard_dir;       // "" = none; else scalar event files, one dir per run
  // All server calls of this tracker together may take this long; past it the server is
  // dropped (one warning) and the rest goes to the local store only, so a slow server cannot
  // stretch a short experiment by minutes.
  double server_budget_seconds = 30;
};

class Tracker {
 public:
  explicit Tracker(const TrackerOptions& opts);
  ~Tracker();
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  // Starts a run and returns its id (32 hex digits, the same id locally and on the server).
  // A non-empty parent makes it a nested run (tag mlflow.parentRunId).
  std::string start_run(const std::string& run_name, const std::string& parent_run_id = "");
  void log_param(const std::string& run_id, const std::string& key, const std::string& value);
  void log_metric(const std::string& run_id, const std::string& key, double value,
                  int64_t step = 0);
  void set_tag(const std::string& run_id, const std::string& key, const std::string& value);
  // Copies a file into the run's artifacts (under artifact_dir when given).
  void log_artifact(const std::string& run_id, const std::string& local_path,
                    const std::string& artifact_dir = "");
  // Writes text as an artifact file named `artifact_name` (e.g. "summary.txt").
  void log_text(const std::string& run_id, const std::string& artifact_name,
                const std::string& text);
  void end_run(const std::string& run_id, const std::string& status = "FINISHED");

  // The experiment's id in the local store; server_experiment_id() is the server's ("" without
  // one). The two stores number experiments independently; run ids are shared.
  const std::string& experiment_id() const;
  const std::string& server_experiment_id() const;
  const std::string& local_dir() const;                  // the local store, absolute
  std::string run_dir(const std::string& run_id) const;  // <local_dir>/<experiment_id>/<run_id>
  // True while a tracking server is configured and every call to it has succeeded.
  bool server_ok() const;
  const std::vector<std::string>& warnings() const;  // what went wrong with the server, if anything

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sprig::track
