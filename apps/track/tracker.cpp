#include "apps/track/tracker.h"

#include <pwd.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "apps/track/local_store.h"
#include "apps/track/mlflow_rest.h"
#include "apps/track/tensorboard.h"
#include "kernels/error.h"
#include "engine/text.h"

namespace sprig::track {

namespace fs = std::filesystem;

namespace {

// MLflow's limits (mlflow/utils/validation.py); the server rejects anything longer.
constexpr size_t kMaxKeyLength = 250;
constexpr size_t kMaxParamValueLength = 6000;
constexpr size_t kMaxTagValueLength = 8000;
constexpr size_t kMaxExperimentNameLength = 500;

// Keys become file names in the store, so MLflow allows only [A-Za-z0-9_-. :/] and no path
// that normalises to something else ("a//b", "./a", "../a", "/a", "a/").
void check_key(const char* call, const char* what, const std::string& key) {
  SPRIG_CHECK(!key.empty(), call, ": empty ", what, " key");
  SPRIG_CHECK(key.size() <= kMaxKeyLength, call, ": ", what, " key '", key.substr(0, 40),
              "...' has ", key.size(), " characters; MLflow allows at most ", kMaxKeyLength);
  for (unsigned char c : key)
    SPRIG_CHECK(
        std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == ' ' || c == ':' || c == '/',
        call, ": ", what, " key '", key,
        "' may hold only letters, digits, '_', '-', '.', ' ', ':' and '/'");
  size_t start = 0;
  while (true) {
    size_t end = key.find('/', start);
    std::string part =
        key.substr(start, end == std::string::npos ? std::string::npos : end - start);
    SPRIG_CHECK(!part.empty() && part != "." && part != "..", call, ": ", what, " key '", key,
                "' is not a clean relative path (empty, '.' or '..' part)");
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

void check_value(const char* call, const char* what, const std::string& key,
                 const std::string& value, size_t limit) {
  SPRIG_CHECK(value.size() <= limit, call, ": value of ", what, " '", key, "' has ", value.size(),
              " characters; MLflow allows at most ", limit);
  SPRIG_CHECK(is_valid_utf8(value), call, ": value of ", what, " '", key, "' is not valid UTF-8");
}

// Artifact paths are relative paths inside the run's artifact directory.
void check_artifact_path(const char* call, const std::string& path) {
  SPRIG_CHECK(!path.empty(), call, ": empty artifact path");
  SPRIG_CHECK(is_valid_utf8(path), call, ": artifact path is not valid UTF-8");
  size_t start = 0;
  while (true) {
    size_t end = path.find('/', start);
    std::string part =
        path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    SPRIG_CHECK(!part.empty() && part != "." && part != "..", call, ": artifact path '", path,
                "' must be relative, without empty, '.' or '..' parts");
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

// MLflow's run id pattern; the directory name in the store.
bool valid_run_id(const std::string& id) {
  if (id.empty() || id.size() > 256 || !std::isalnum(static_cast<unsigned char>(id[0])))
    return false;
  for (unsigned char c : id)
    if (!std::isalnum(c) && c != '_' && c != '-') return false;
  return true;
}

// A uuid4 as 32 hex digits, as MLflow names runs.
std::string new_run_id() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}() ^ static_cast<uint64_t>(now_ms())};
  std::lock_guard<std::mutex> lock(mu);
  uint64_t hi = rng(), lo = rng();
  hi = (hi & ~0xF000ull) | 0x4000ull;                // version 4
  lo = (lo & 0x3FFFFFFFFFFFFFFFull) | (1ull << 63);  // variant 10
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return buf;
}

std::string user_name() {
  for (const char* v : {"LOGNAME", "USER", "LNAME", "USERNAME"})
    if (const char* u = std::getenv(v); u && *u) return u;
  if (passwd* pw = ::getpwuid(::getuid())) return pw->pw_name;
  return "unknown";
}

std::string program_path() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("sprig") : p.string();
}

std::string tb_name(const std::string& run_name) {
  std::string s;
  for (unsigned char c : run_name)
    s += (std::isalnum(c) || c == '-' || c == '_' || c == '.') ? c : '_';
  if (s.empty() || s == "." || s == "..") s = "run";
  return s;
}

}  // namespace

struct Tracker::Impl {
  struct Run {
    std::string name, parent;
    std::string artifact_uri;  // the server's, when the server has this run
    bool on_server = false;
    bool ended = false;
    std::string tb_dir;
    std::unique_ptr<EventWriter> tb;
  };

  TrackerOptions opts;
  LocalStore store;
  std::unique_ptr<RestClient> rest;
  bool server_ok = false;
  double server_seconds = 0;  // spent in server calls so far
  bool server_artifacts_ok = true;
  std::string experiment_id, server_experiment_id;
  std::vector<std::string> warnings;
  std::map<std::string, Run> runs;
  std::vector<std::string> order;  // run ids in start order
  std::string user = user_name();
  std::string source = program_path();
  int uncaught = std::uncaught_exceptions();
  std::mutex mu;

  explicit Impl(const TrackerOptions& o) : opts(o), store(o.local_dir) {}

  void warn(const std::string& msg) {
    warnings.push_back(msg);
    std::fprintf(stderr, "sprig: warning: %s\n", msg.c_str());
  }

  // The first failed call turns the server off for good: one warning, and every later call
  // goes to the local store only (a dead server would otherwise cost a timeout per metric).
  // A server past its time budget (TrackerOptions::server_budget_seconds) is dropped the
  // same way.
  template <class F>
  void server(F&& call) {
    if (!server_ok) return;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      call();
    } catch (const std::exception& e) {
      server_ok = false;
      warn("MLflow server " + rest->base_url() + ": " + e.what() +
           "; from now on runs are logged only to the local store " + store.root());
      return;
    }
    server_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (server_seconds > opts.server_budget_seconds) {
      server_ok = false;
      char spent[64];
      std::snprintf(spent, sizeof spent, "%.1f s", server_seconds);
      warn("MLflow server " + rest->base_url() + ": its calls took " + spent + " in all, past " +
           "the budget; from now on runs are logged only to the local store " + store.root());
    }
  }

  Run& run(const char* call, const std::string& run_id) {
    auto it = runs.find(run_id);
    SPRIG_CHECK(it != runs.end(), call, ": unknown run id '", run_id,
                "' (not started by this tracker)");
    return it->second;
  }

  void upload(Run& r, const std::string& run_id, const std::string& rel_path,
              const std::string* local_path, const std::string* data) {
    if (!r.on_server || !server_ok || !server_artifacts_ok) return;
    if (!RestClient::proxied(r.artifact_uri)) {
      server_artifacts_ok = false;
      warn("MLflow server " + rest->base_url() + " keeps artifacts at '" + r.artifact_uri +
           "', which sprig cannot upload to (run `mlflow server` with artifact serving, the "
           "default); artifacts stay in the local store " +
           store.root());
      return;
    }
    server([&] {
      if (local_path)
        rest->upload_file(r.artifact_uri, rel_path, *local_path);
      else
        rest->upload_data(r.artifact_uri, rel_path, *data);
    });
  }

  void end(const std::string& run_id, Run& r, const std::string& status) {
    int64_t t = now_ms();
    store.end_run(run_id, status, t);
    if (r.on_server) server([&] { rest->update_run(run_id, status, t); });
    if (r.tb) r.tb->close();
    r.ended = true;
  }
};

Tracker::Tracker(const TrackerOptions& opts) {
  const std::string& name = opts.experiment_name;
  SPRIG_CHECK(!name.empty(), "experiment name is empty");
  SPRIG_CHECK(name.size() <= kMaxExperimentNameLength, "experiment name has ", name.size(),
              " characters; MLflow allows at most ", kMaxExperimentNameLength);
  SPRIG_CHECK(is_valid_utf8(name), "experiment name is not valid UTF-8");
  const std::string& uri = opts.tracking_uri;
  SPRIG_CHECK(uri.empty() || uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0,
              "tracking URI '", uri, "' is not http://HOST:PORT or https://...");
  SPRIG_CHECK(uri.empty() || uri.find_first_of(" \t\r\n") == std::string::npos, "tracking URI '",
              uri, "' contains white space");
  impl_ = std::make_unique<Impl>(opts);
  impl_->experiment_id = impl_->store.experiment_id(name);
  if (!uri.empty()) {
    impl_->rest = std::make_unique<RestClient>(uri);
    impl_->server_ok = true;
    impl_->server([&] { impl_->server_experiment_id = impl_->rest->experiment_id(name); });
  }
}

Tracker::~Tracker() {
  if (!impl_) return;
  // Runs left open end FAILED when an exception is unwinding past the tracker, else FINISHED
  // (as MLflow's fluent API ends the active run at exit). Children first.
  std::string status =
      std::uncaught_exceptions() > impl_->uncaught ? std::string("FAILED") : "FINISHED";
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto it = impl_->order.rbegin(); it != impl_->order.rend(); ++it) {
    Impl::Run& r = impl_->runs[*it];
    if (r.ended) continue;
    try {
      impl_->end(*it, r, status);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sprig: warning: could not end run %s: %s\n", it->c_str(), e.what());
    }
  }
}

std::string Tracker::start_run(const std::string& run_name, const std::string& parent_run_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl& m = *impl_;
  if (!parent_run_id.empty()) m.run("start_run", parent_run_id);
  std::string id = new_run_id();
  std::string name = run_name.empty() ? "run-" + id.substr(0, 8) : run_name;
  check_value("start_run", "run name", name, name, kMaxTagValueLength);
  std::vector<std::pair<std::string, std::string>> tags = {{"mlflow.runName", name},
                                                           {"mlflow.user", m.user},
                                                           {"mlflow.source.name", m.source},
                                                           {"mlflow.source.type", "LOCAL"}};
  if (!parent_run_id.empty()) tags.push_back({"mlflow.parentRunId", parent_run_id});
  Impl::Run r;
  r.name = name;
  r.parent = parent_run_id;
  int64_t start = now_ms();
  // The server names the run; the local store uses the same id, so one id works for both.
  bool parent_on_server = parent_run_id.empty() || m.runs[parent_run_id].on_server;
  if (parent_on_server)
    m.server([&] {
      RestClient::Run sr = m.rest->create_run(m.server_experiment_id, name, start, tags, m.user);
      if (!valid_run_id(sr.run_id))
        throw RestError("runs/create returned run id '" + sr.run_id + "', not a valid run id");
      if (m.runs.count(sr.run_id) ||
          fs::exists(fs::path(m.store.root()) / m.experiment_id / sr.run_id))
        throw RestError("runs/create returned run id '" + sr.run_id +
                        "', which a run in the local store already has");
      id = sr.run_id;
      r.artifact_uri = sr.artifact_uri;
      r.on_server = true;
    });
  m.store.create_run(m.experiment_id, id, name, m.user, start);
  for (const auto& [k, v] : tags) m.store.set_tag(id, k, v);
  if (!m.opts.tensorboard_dir.empty()) {
    fs::path base = parent_run_id.empty() ? fs::path(m.opts.tensorboard_dir)
                                          : fs::path(m.runs[parent_run_id].tb_dir);
    fs::path dir = base / tb_name(name);
    if (fs::exists(dir)) dir = base / (tb_name(name) + "-" + id.substr(0, 8));
    r.tb_dir = dir.string();
    r.tb = std::make_unique<EventWriter>(r.tb_dir);
  }
  m.runs[id] = std::move(r);
  m.order.push_back(id);
  return id;
}

void Tracker::log_param(const std::string& run_id, const std::string& key,
                        const std::string& value) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Run& r = impl_->run("log_param", run_id);
  check_key("log_param", "param", key);
  check_value("log_param", "param", key, value, kMaxParamValueLength);
  impl_->store.log_param(run_id, key, value);
  if (r.on_server) impl_->server([&] { impl_->rest->log_param(run_id, key, value); });
}

void Tracker::log_metric(const std::string& run_id, const std::string& key, double value,
                         int64_t step) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Run& r = impl_->run("log_metric", run_id);
  check_key("log_metric", "metric", key);
  int64_t t = now_ms();
  impl_->store.log_metric(run_id, key, value, t, step);
  if (r.on_server) impl_->server([&] { impl_->rest->log_metric(run_id, key, value, t, step); });
  if (r.tb && !r.ended) r.tb->scalar(key, value, step, t / 1000.0);
}

void Tracker::set_tag(const std::string& run_id, const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Run& r = impl_->run("set_tag", run_id);
  check_key("set_tag", "tag", key);
  check_value("set_tag", "tag", key, value, kMaxTagValueLength);
  impl_->store.set_tag(run_id, key, value);
  if (r.on_server) impl_->server([&] { impl_->rest->set_tag(run_id, key, value); });
}

void Tracker::log_artifact(const std::string& run_id, const std::string& local_path,
                           const std::string& artifact_dir) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Run& r = impl_->run("log_artifact", run_id);
  std::error_code ec;
  SPRIG_CHECK(fs::is_regular_file(local_path, ec), "log_artifact: ", local_path,
              " is not a readable file");
  std::string base = fs::path(local_path).filename().string();
  if (!artifact_dir.empty()) check_artifact_path("log_artifact", artifact_dir);
  std::string rel = artifact_dir.empty() ? base : artifact_dir + "/" + base;
  impl_->store.copy_artifact(run_id, local_path, rel);
  impl_->upload(r, run_id, rel, &local_path, nullptr);
}

void Tracker::log_text(const std::string& run_id, const std::string& artifact_name,
                       const std::string& text) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Run& r = impl_->run("log_text", run_id);
  check_artifact_path("log_text", artifact_name);
  impl_->store.write_artifact(run_id, artifact_name, text);
  impl_->upload(r, run_id, artifact_name, nullptr, &text);
}

void Tracker::end_run(const std::string& run_id, const std::string& status) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Run& r = impl_->run("end_run", run_id);
  SPRIG_CHECK(status == "FINISHED" || status == "FAILED" || status == "KILLED", "end_run: status '",
              status, "' is not one of FINISHED, FAILED, KILLED");
  impl_->end(run_id, r, status);
}

const std::string& Tracker::experiment_id() const {
  return impl_->experiment_id;
}
const std::string& Tracker::server_experiment_id() const {
  return impl_->server_experiment_id;
}
const std::string& Tracker::local_dir() const {
  return impl_->store.root();
}
std::string Tracker::run_dir(const std::string& run_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->run("run_dir", run_id);
  return impl_->store.run_dir(run_id);
}
bool Tracker::server_ok() const {
  return impl_->server_ok;
}
const std::vector<std::string>& Tracker::warnings() const {
  return impl_->warnings;
}

}  // namespace sprig::track
