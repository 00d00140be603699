#pragma once
// Writes MLflow's file store layout, which `mlflow ui` and MlflowClient("file:///...") read:
//
//   <root>/0/meta.yaml                       the Default experiment MLflow expects
//   <root>/.trash/                           where MLflow moves deleted experiments
//   <root>/<experiment_id>/meta.yaml         name, artifact_location, lifecycle_stage, times
//   <root>/<experiment_id>/<run_id>/meta.yaml      run_name, status (1 RUNNING .. 5 KILLED), times
//   <root>/<experiment_id>/<run_id>/params/<key>   the value
//   <root>/<experiment_id>/<run_id>/metrics/<key>  one "timestamp_ms value step" line per value
//   <root>/<experiment_id>/<run_id>/tags/<key>     the value (mlflow.runName, mlflow.parentRunId..)
//   <root>/<experiment_id>/<run_id>/artifacts/...  copied files
//
// Keys with '/' become subdirectories, as in MLflow. meta.yaml, params and tags are written to
// a temporary file and renamed into place; experiments are looked up and created under an
// flock on the root, so concurrent processes agree on one experiment per name.
#include <cstdint>
#include <map>
#include <string>

namespace sprig::track {

int64_t now_ms();
// Writes `data` to a temporary file beside `path` and renames it over `path`.
void write_file_atomic(const std::string& path, const std::string& data);
// The value of a top-level `key: value` line of a YAML mapping (plain, 'single' or "double"
// quoted scalar); "" when absent.
std::string yaml_scalar(const std::string& text, const std::string& key);

class LocalStore {
 public:
  // Creates the root (and MLflow's Default experiment and .trash) when missing.
  explicit LocalStore(const std::string& root);

  // The id of the active experiment called `name`, created when there is none.
  std::string experiment_id(const std::string& name);

  void create_run(const std::string& experiment_id, const std::string& run_id,
                  const std::string& run_name, const std::string& user, int64_t start_ms);
  // MLflow params are immutable: logging a different value for a key throws sprig::Error.
  void log_param(const std::string& run_id, const std::string& key, const std::string& value);
  void log_metric(const std::string& run_id, const std::string& key, double value,
                  int64_t timestamp_ms, int64_t step);
  void set_tag(const std::string& run_id, const std::string& key, const std::string& value);
  // Copies a file to artifacts/<rel_path>.
  void copy_artifact(const std::string& run_id, const std::string& local_path,
                     const std::string& rel_path);
  void write_artifact(const std::string& run_id, const std::string& rel_path,
                      const std::string& data);
  // status: FINISHED, FAILED or KILLED.
  void end_run(const std::string& run_id, const std::string& status, int64_t end_ms);

  const std::string& root() const { return root_; }
  std::string run_dir(const std::string& run_id) const;

 private:
  struct RunMeta {
    std::string experiment_id, run_name, user;
    int64_t start_ms = 0;
  };
  void write_run_meta(const std::string& run_id, const RunMeta& m, int status, int64_t end_ms);
  const RunMeta& meta(const std::string& run_id) const;

  std::string root_;                     // absolute
  std::map<std::string, RunMeta> runs_;  // the runs this store created
};

}  // namespace sprig::track
