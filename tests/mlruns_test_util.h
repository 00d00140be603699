#pragma once
// Reads an MLflow local store (FileStore layout, apps/track/local_store.h) in the experiment
// tests: the runs of one experiment, split into the parent run and its nested children.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace sprig::testing {

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct MetricPoint {
  double value;
  int64_t step;
};

struct StoredRun {
  std::string id;
  std::filesystem::path dir;  // <store>/<experiment id>/<run id>
  std::string param(const std::string& k) const {
    REQUIRE_MESSAGE(std::filesystem::exists(dir / "params" / k), "param " << k << " of run " << id);
    return read_text(dir / "params" / k);
  }
  std::string tag(const std::string& k) const {
    return std::filesystem::exists(dir / "tags" / k) ? read_text(dir / "tags" / k) : "";
  }
  // Every "timestamp value step" line of a metric, in order.
  std::vector<MetricPoint> metric(const std::string& k) const {
    std::vector<MetricPoint> out;
    std::ifstream f(dir / "metrics" / k);
    long long ts, step;
    double v;
    while (f >> ts >> v >> step) out.push_back({v, step});
    return out;
  }
  double last(const std::string& k) const {
    auto m = metric(k);
    REQUIRE_MESSAGE(!m.empty(), "metric " << k << " of run " << id);
    return m.back().value;
  }
  bool artifact(const std::string& rel) const {
    return std::filesystem::exists(dir / "artifacts" / rel);
  }
  // MLflow's RunStatus number as written in meta.yaml ("3" = FINISHED, "4" = FAILED).
  std::string status() const {
    std::string meta = read_text(dir / "meta.yaml");
    size_t p = meta.find("status: ");
    return p == std::string::npos ? "" : meta.substr(p + 8, 1);
  }
};

// The parent run (no mlflow.parentRunId; exactly one) and the children of experiment `name` in
// the store at root; every child must point at that parent.
inline void load_runs(const std::filesystem::path& root, const std::string& name, StoredRun& parent,
                      std::vector<StoredRun>& children) {
  namespace fs = std::filesystem;
  std::vector<StoredRun> runs;
  for (auto& e : fs::directory_iterator(root)) {
    if (!e.is_directory() || !fs::exists(e.path() / "meta.yaml")) continue;
    std::string meta = read_text(e.path() / "meta.yaml");
    if (meta.find("\nname: " + name + "\n") == std::string::npos &&
        meta.find("\nname: \"" + name + "\"") == std::string::npos)
      continue;
    for (auto& r : fs::directory_iterator(e.path()))
      if (r.is_directory() && fs::exists(r.path() / "meta.yaml"))
        runs.push_back({r.path().filename().string(), r.path()});
  }
  int parents = 0;
  for (const StoredRun& r : runs)
    if (r.tag("mlflow.parentRunId").empty()) parent = r, ++parents;
  REQUIRE(parents == 1);
  for (const StoredRun& r : runs)
    if (!r.tag("mlflow.parentRunId").empty()) {
      CHECK(r.tag("mlflow.parentRunId") == parent.id);
      children.push_back(r);
    }
}

}  // namespace sprig::testing
