#include "apps/track/local_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "kernels/error.h"

namespace sprig::track {

namespace fs = std::filesystem;

namespace {

// RunStatus in mlflow/protos/service.proto; meta.yaml stores the number.
int status_code(const std::string& status) {
  if (status == "RUNNING") return 1;
  if (status == "FINISHED") return 3;
  if (status == "FAILED") return 4;
  if (status == "KILLED") return 5;
  throw Error("run status '" + status + "' is not one of FINISHED, FAILED, KILLED");
}

// A JSON string is a valid YAML double-quoted scalar, whatever characters it holds.
std::string quoted(const std::string& s) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw Error("'" + s + "' is not valid UTF-8");
  }
}

std::string file_uri(const std::string& abs_path) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "file://";
  for (unsigned char c : abs_path) {
    if (std::isalnum(c) || std::strchr("-._~/", c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string sys_error(const std::string& what, const fs::path& p) {
  return what + " " + p.string() + ": " + std::strerror(errno);
}

void make_dirs(const fs::path& p) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) throw Error("cannot create directory " + p.string() + ": " + ec.message());
}

// MLflow's ids for new experiments: 18 random digits.
std::string random_experiment_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^ static_cast<uint64_t>(now_ms()) ^
                                          static_cast<uint64_t>(::getpid())};
  std::string id = std::to_string(1 + rng() % 9);
  while (id.size() < 18) id += static_cast<char>('0' + rng() % 10);
  return id;
}

// Holds an exclusive flock on a directory for the lifetime of the object.
class DirLock {
 public:
  explicit DirLock(const fs::path& dir) {
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) throw Error(sys_error("cannot open", dir));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd_);
        throw Error(sys_error("cannot lock", dir));
      }
    }
  }
  ~DirLock() { ::close(fd_); }  // closing releases the lock
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

void write_experiment_meta(const fs::path& dir, const std::string& id, const std::string& name,
                           const std::string& artifact_location) {
  int64_t t = now_ms();
  std::ostringstream y;
  y << "artifact_location: " << quoted(artifact_location) << "\n"
    << "creation_time: " << t << "\n"
    << "experiment_id: " << quoted(id) << "\n"
    << "last_update_time: " << t << "\n"
    << "lifecycle_stage: active\n"
    << "name: " << quoted(name) << "\n";
  write_file_atomic((dir / "meta.yaml").string(), y.str());
}

}  // namespace

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void write_file_atomic(const std::string& path, const std::string& data) {
  static std::atomic<unsigned> counter{0};
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(sys_error("cannot write", tmp));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(sys_error("cannot write", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string msg = sys_error("cannot rename " + tmp + " to", path);
    std::remove(tmp.c_str());
    throw Error(msg);
  }
}

std::string yaml_scalar(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size() + 1, key + ":") != 0) continue;
    std::string v = line.substr(key.size() + 1);
    size_t b = v.find_first_not_of(" \t");
    v = b == std::string::npos ? "" : v.substr(b);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\r' || v.back() == '\t')) v.pop_back();
    if (v.size() >= 2 && v.front() == '"') {
      try {
        return nlohmann::json::parse(v).get<std::string>();
      } catch (const nlohmann::json::exception&) {
        return v.substr(1, v.size() - 2);
      }
    }
    if (v.size() >= 2 && v.front() == '\'') {
      std::string out;
      for (size_t i = 1; i + 1 < v.size(); ++i) {
        out += v[i];
        if (v[i] == '\'' && v[i + 1] == '\'') ++i;  // '' is an escaped quote
      }
      return out;
    }
    return v;
  }
  return "";
}

LocalStore::LocalStore(const std::string& root) {
  SPRIG_CHECK(!root.empty(), "the local store directory is empty");
  std::error_code ec;
  fs::path abs = fs::absolute(root, ec);
  if (ec) throw Error("local store " + root + ": " + ec.message());
  root_ = abs.lexically_normal().string();
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  if (fs::exists(root_) && !fs::is_directory(root_))
    throw Error("local store " + root_ + " exists and is not a directory");
  make_dirs(root_);
  make_dirs(fs::path(root_) / ".trash");
  DirLock lock(root_);
  fs::path def = fs::path(root_) / "0";
  if (!fs::exists(def) && !fs::exists(fs::path(root_) / ".trash" / "0")) {
    make_dirs(def);
    write_experiment_meta(def, "0", "Default", file_uri(def.string()));
  }
}

std::string LocalStore::experiment_id(const std::string& name) {
  DirLock lock(root_);
  for (const auto& e : fs::directory_iterator(root_)) {
    if (!e.is_directory() || e.path().filename().string()[0] == '.') continue;
    fs::path meta = e.path() / "meta.yaml";
    if (!fs::exists(meta)) continue;
    std::string text = read_text(meta);
    if (yaml_scalar(text, "name") == name && yaml_scalar(text, "lifecycle_stage") != "deleted")
      return e.path().filename().string();
  }
  fs::path trash = fs::path(root_) / ".trash";
  for (const auto& e : fs::directory_iterator(trash)) {
    fs::path meta = e.path() / "meta.yaml";
    if (e.is_directory() && fs::exists(meta) && yaml_scalar(read_text(meta), "name") == name)
      throw Error("experiment '" + name + "' was deleted in " + root_ +
                  " (it is in .trash): restore it with MLflow or use another experiment name");
  }
  for (int attempt = 0;; ++attempt) {
    std::string id = random_experiment_id();
    fs::path dir = fs::path(root_) / id;
    if (::mkdir(dir.c_str(), 0777) != 0) {
      if (errno == EEXIST && attempt < 100) continue;
      throw Error(sys_error("cannot create experiment directory", dir));
    }
    write_experiment_meta(dir, id, name, file_uri(dir.string()));
    return id;
  }
}

std::string LocalStore::run_dir(const std::string& run_id) const {
  return (fs::path(root_) / meta(run_id).experiment_id / run_id).string();
}

const LocalStore::RunMeta& LocalStore::meta(const std::string& run_id) const {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) throw Error("run " + run_id + " is not in the local store " + root_);
  return it->second;
}

void LocalStore::write_run_meta(const std::string& run_id, const RunMeta& m, int status,
                                int64_t end_ms) {
  fs::path dir = fs::path(root_) / m.experiment_id / run_id;
  std::ostringstream y;
  y << "artifact_uri: " << quoted(file_uri((dir / "artifacts").string())) << "\n"
    << "end_time: " << (end_ms < 0 ? std::string("null") : std::to_string(end_ms)) << "\n"
    << "entry_point_name: ''\n"
    << "experiment_id: " << quoted(m.experiment_id) << "\n"
    << "lifecycle_stage: active\n"
    << "run_id: " << run_id << "\n"
    << "run_name: " << quoted(m.run_name) << "\n"
    << "run_uuid: " << run_id << "\n"  // the key MLflow 1.x reads
    << "source_name: ''\n"
    << "source_type: 4\n"  // LOCAL
    << "source_version: ''\n"
    << "start_time: " << m.start_ms << "\n"
    << "status: " << status << "\n"
    << "tags: []\n"
    << "user_id: " << quoted(m.user) << "\n";
  write_file_atomic((dir / "meta.yaml").string(), y.str());
}

void LocalStore::create_run(const std::string& experiment_id, const std::string& run_id,
                            const std::string& run_name, const std::string& user,
                            int64_t start_ms) {
  fs::path dir = fs::path(root_) / experiment_id / run_id;
  if (::mkdir(dir.c_str(), 0777) != 0) throw Error(sys_error("cannot create run directory", dir));
  // MLflow only recognises a run directory that has all three of these.
  for (const char* sub : {"metrics", "params", "artifacts", "tags"}) make_dirs(dir / sub);
  RunMeta m{experiment_id, run_name, user, start_ms};
  write_run_meta(run_id, m, status_code("RUNNING"), -1);
  runs_[run_id] = m;
}

void LocalStore::log_param(const std::string& run_id, const std::string& key,
                           const std::string& value) {
  fs::path p = fs::path(run_dir(run_id)) / "params" / key;
  if (fs::exists(p)) {
    std::string old = read_text(p);
    if (old == value) return;
    throw Error("param '" + key + "' of run " + run_id + " was already logged as '" + old +
                "' and MLflow params cannot change (new value '" + value + "')");
  }
  make_dirs(p.parent_path());
  write_file_atomic(p.string(), value);
}

void LocalStore::log_metric(const std::string& run_id, const std::string& key, double value,
                            int64_t timestamp_ms, int64_t step) {
  fs::path p = fs::path(run_dir(run_id)) / "metrics" / key;
  make_dirs(p.parent_path());
  char num[64];
  auto res = std::to_chars(num, num + sizeof(num), value);  // shortest round-trip form
  std::string line = std::to_string(timestamp_ms) + " " + std::string(num, res.ptr) + " " +
                     std::to_string(step) + "\n";
  // One write() per line on an O_APPEND descriptor: lines never interleave.
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0) throw Error(sys_error("cannot open", p));
  ssize_t n = ::write(fd, line.data(), line.size());
  int err = errno;
  ::close(fd);
  errno = err;
  if (n != static_cast<ssize_t>(line.size())) throw Error(sys_error("cannot append to", p));
}

void LocalStore::set_tag(const std::string& run_id, const std::string& key,
                         const std::string& value) {
  fs::path p = fs::path(run_dir(run_id)) / "tags" / key;
  make_dirs(p.parent_path());
  write_file_atomic(p.string(), value);
}

void LocalStore::copy_artifact(const std::string& run_id, const std::string& local_path,
                               const std::string& rel_path) {
  fs::path dest = fs::path(run_dir(run_id)) / "artifacts" / rel_path;
  make_dirs(dest.parent_path());
  std::string tmp = dest.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::copy_file(local_path, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("cannot copy artifact " + local_path + " to " + dest.string() + ": " +
                ec.message());
  }
  fs::rename(tmp, dest, ec);
  if (ec) throw Error("cannot rename " + tmp + " to " + dest.string() + ": " + ec.message());
}

void LocalStore::write_artifact(const std::string& run_id, const std::string& rel_path,
                                const std::string& data) {
  fs::path dest = fs::path(run_dir(run_id)) / "artifacts" / rel_path;
  make_dirs(dest.parent_path());
  write_file_atomic(dest.string(), data);
}

void LocalStore::end_run(const std::string& run_id, const std::string& status, int64_t end_ms) {
  write_run_meta(run_id, meta(run_id), status_code(status), end_ms);
}

}  // namespace sprig::track
