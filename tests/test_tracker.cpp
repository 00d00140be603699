// Experiment tracking: the MLflow file-store layout a parent run and two nested children leave,
// what goes over the wire to a (fake) tracking server, one warning and a complete local store
// when the server is down or answers errors, bad input, concurrent trackers, and TensorBoard
// event files decoded independently of the writer. tests/mlflow_check.py checks the same
// stores with MLflow itself (the "server round trip" case runs under it).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "apps/track/tensorboard.h"
#include "apps/track/tracker.h"
#include "kernels/error.h"
#include "tests/cli_test_util.h"
#include "tests/protobuf_reader.h"

namespace fs = std::filesystem;
using sprig::track::Tracker;
using sprig::track::TrackerOptions;
using json = nlohmann::json;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = sprig::testing::temp_dir("test_tracker") / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing file ", p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l))
    if (l == line) return true;
  return false;
}

struct MetricLine {
  int64_t timestamp, step;
  double value;
};
std::vector<MetricLine> metric_lines(const fs::path& p) {
  std::vector<MetricLine> out;
  std::istringstream in(slurp(p));
  std::string l;
  while (std::getline(in, l)) {
    std::istringstream f(l);
    MetricLine m{};
    std::string value, extra;
    f >> m.timestamp >> value >> m.step;
    REQUIRE_MESSAGE(!f.fail(), "bad metric line '", l, "' in ", p.string());
    CHECK_FALSE(static_cast<bool>(f >> extra));
    m.value = std::strtod(value.c_str(), nullptr);
    out.push_back(m);
  }
  return out;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sprig::Error& e) {
    return e.what();
  }
  return "(no sprig::Error thrown)";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Sends stderr to a file while alive; text() returns what was written.
class CaptureStderr {
 public:
  explicit CaptureStderr(const fs::path& file) : file_(file) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    FILE* f = std::fopen(file.c_str(), "w");
    ::dup2(::fileno(f), 2);
    std::fclose(f);
  }
  ~CaptureStderr() { restore(); }
  std::string text() {
    restore();
    return slurp(file_);
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  fs::path file_;
  int saved_ = -1;
};

// A port nothing listens on: bound once by us, then closed.
int closed_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  socklen_t len = sizeof(a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// A one-thread HTTP/1.1 server on 127.0.0.1 that records each request and answers with
// handler(method, path, body) -> {status, body}, closing the connection after each answer.
class FakeServer {
 public:
  struct Request {
    std::string method, path, body;
  };
  using Handler = std::function<std::pair<int, std::string>(const Request&)>;

  explicit FakeServer(Handler h) : handler_(std::move(h)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string uri() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string data;
      char buf[4096];
      size_t header_end = std::string::npos;
      while (header_end == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        data.append(buf, n);
        header_end = data.find("\r\n\r\n");
      }
      if (header_end == std::string::npos) {
        ::close(c);
        continue;
      }
      std::string head = data.substr(0, header_end);
      size_t length = 0;
      std::string lower = head;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (size_t p = lower.find("content-length:"); p != std::string::npos)
        length = std::stoul(head.substr(p + 15));
      std::string body = data.substr(header_end + 4);
      while (body.size() < length) {
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        body.append(buf, n);
      }
      Request r;
      std::istringstream first(head);
      first >> r.method >> r.path;
      r.body = body;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(r);
      }
      auto [status, answer] = handler_(r);
      std::string resp = "HTTP/1.1 " + std::to_string(status) +
                         " X\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         "Content-Length: " +
                         std::to_string(answer.size()) + "\r\n\r\n" + answer;
      ::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }
  Handler handler_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Request> requests_;
};

std::string experiment_dir_named(const fs::path& store, const std::string& name) {
  std::string found;
  int count = 0;
  for (const auto& e : fs::directory_iterator(store)) {
    fs::path meta = e.path() / "meta.yaml";
    if (e.is_directory() && fs::exists(meta) &&
        has_line(slurp(meta), "name: " + json(name).dump())) {
      found = e.path().filename().string();
      ++count;
    }
  }
  CHECK_MESSAGE(count == 1, count, " experiments named ", name, " in ", store.string());
  return found;
}

bool is_hex32(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(c)) return false;
  return true;
}

// What the three-run scenario logs; the local-store and server tests share it.
struct Scenario {
  std::string parent, child1, child2;
};
Scenario log_scenario(Tracker& t, const fs::path& artifact_file) {
  Scenario s;
  s.parent = t.start_run("sweep");
  t.log_param(s.parent, "model", "cnn2");
  t.log_param(s.parent, "lr", "0.001");
  t.set_tag(s.parent, "stage", "pruning sweep");
  s.child1 = t.start_run("trial-1", s.parent);
  s.child2 = t.start_run("trial-2", s.parent);
  t.log_param(s.child1, "amount", "0.5");
  t.log_param(s.child2, "amount", "0.75");
  t.log_param(s.child2, "amount", "0.75");  // the same value again is fine, as in MLflow
  for (int step = 0; step < 3; ++step) {
    t.log_metric(s.child1, "test_accuracy", 0.5 + 0.125 * step, step);
    t.log_metric(s.child2, "test_accuracy", 0.25 + 0.0625 * step, step);
    t.log_metric(s.child2, "train/loss", 1.0 / (step + 1), step);
  }
  t.end_run(s.child1);
  t.end_run(s.child2);
  t.log_metric(s.parent, "best_accuracy", 0.75, 2);
  t.log_artifact(s.parent, artifact_file.string(), "models");
  t.log_text(s.parent, "summary.txt", "trial-1: 0.75\ntrial-2: 0.375\n");
  t.end_run(s.parent);
  return s;
}

void check_local_scenario(const fs::path& store, const std::string& experiment, const Scenario& s,
                          const std::string& artifact_content) {
  std::string exp = experiment_dir_named(store, experiment);
  REQUIRE(!exp.empty());
  std::string exp_meta = slurp(store / exp / "meta.yaml");
  CHECK(has_line(exp_meta, "experiment_id: \"" + exp + "\""));
  CHECK(has_line(exp_meta, "lifecycle_stage: active"));
  CHECK(contains(exp_meta, "artifact_location: \"file://"));
  CHECK(has_line(slurp(store / "0" / "meta.yaml"), "name: \"Default\""));
  CHECK(fs::is_directory(store / ".trash"));

  for (const std::string& id : {s.parent, s.child1, s.child2}) {
    CAPTURE(id);
    CHECK(is_hex32(id));
    fs::path run = store / exp / id;
    for (const char* sub : {"metrics", "params", "artifacts", "tags"})
      CHECK(fs::is_directory(run / sub));
    std::string meta = slurp(run / "meta.yaml");
    CHECK(has_line(meta, "run_id: " + id));
    CHECK(has_line(meta, "experiment_id: \"" + exp + "\""));
    CHECK(has_line(meta, "status: 3"));  // FINISHED
    CHECK_FALSE(has_line(meta, "end_time: null"));
    CHECK(contains(slurp(run / "tags" / "mlflow.source.name"), "test_tracker"));
    CHECK(slurp(run / "tags" / "mlflow.source.type") == "LOCAL");
    CHECK(fs::exists(run / "tags" / "mlflow.user"));
  }
  CHECK(std::set<std::string>{s.parent, s.child1, s.child2}.size() == 3);
  fs::path p = store / exp / s.parent, c1 = store / exp / s.child1, c2 = store / exp / s.child2;
  CHECK(has_line(slurp(p / "meta.yaml"), "run_name: \"sweep\""));
  CHECK(slurp(p / "tags" / "mlflow.runName") == "sweep");
  CHECK(slurp(c1 / "tags" / "mlflow.runName") == "trial-1");
  CHECK_FALSE(fs::exists(p / "tags" / "mlflow.parentRunId"));
  CHECK(slurp(c1 / "tags" / "mlflow.parentRunId") == s.parent);
  CHECK(slurp(c2 / "tags" / "mlflow.parentRunId") == s.parent);
  CHECK(slurp(p / "tags" / "stage") == "pruning sweep");
  CHECK(slurp(p / "params" / "model") == "cnn2");
  CHECK(slurp(p / "params" / "lr") == "0.001");
  CHECK(slurp(c1 / "params" / "amount") == "0.5");
  CHECK(slurp(c2 / "params" / "amount") == "0.75");

  auto acc = metric_lines(c1 / "metrics" / "test_accuracy");
  REQUIRE(acc.size() == 3);
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  for (int i = 0; i < 3; ++i) {
    CHECK(acc[i].step == i);
    CHECK(acc[i].value == 0.5 + 0.125 * i);
    CHECK(acc[i].timestamp <= now);
    CHECK(acc[i].timestamp > now - 600000);
    if (i) CHECK(acc[i].timestamp >= acc[i - 1].timestamp);
  }
  auto loss = metric_lines(c2 / "metrics" / "train" / "loss");  // '/' keys nest, as in MLflow
  REQUIRE(loss.size() == 3);
  CHECK(loss[2].value == 1.0 / 3);  // shortest round-trip text keeps every bit
  CHECK(metric_lines(p / "metrics" / "best_accuracy").at(0).step == 2);

  CHECK(slurp(p / "artifacts" / "models" / "weights.txt") == artifact_content);
  CHECK(slurp(p / "artifacts" / "summary.txt") == "trial-1: 0.75\ntrial-2: 0.375\n");
}

// CRC-32C bit by bit, independent of the library's table.
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
  }
  return ~c;
}
uint32_t masked(uint32_t c) {
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// The Event payloads of a TFRecord file, checking the framing and both CRCs of every record.
std::vector<std::string> read_events(const fs::path& file) {
  std::string data = slurp(file);
  std::vector<std::string> out;
  size_t pos = 0;
  auto le = [&](size_t at, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(static_cast<unsigned char>(data[at + i])) << (8 * i);
    return v;
  };
  while (pos < data.size()) {
    REQUIRE(pos + 12 <= data.size());
    uint64_t len = le(pos, 8);
    CHECK(le(pos + 8, 4) == masked(crc32c_bitwise(data.substr(pos, 8))));
    REQUIRE(pos + 12 + len + 4 <= data.size());
    std::string payload = data.substr(pos + 12, len);
    CHECK(le(pos + 12 + len, 4) == masked(crc32c_bitwise(payload)));
    out.push_back(payload);
    pos += 12 + len + 4;
  }
  return out;
}

fs::path only_event_file(const fs::path& dir) {
  fs::path found;
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && contains(e.path().filename().string(), "tfevents")) {
      found = e.path();
      ++n;
    }
  REQUIRE_MESSAGE(n == 1, n, " event files in ", dir.string());
  return found;
}

}  // namespace

TEST_CASE("local store: a parent run and two nested children in MLflow's file layout") {
  fs::path dir = fresh_dir("layout");
  fs::path art = dir / "weights.txt";
  std::ofstream(art) << "w = 1, 2, 3\n";
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "sprig test: layout";
  Scenario s;
  {
    Tracker t(o);
    CHECK(t.local_dir() == fs::absolute(o.local_dir).string());
    s = log_scenario(t, art);
    CHECK(t.warnings().empty());
    CHECK_FALSE(t.server_ok());
    CHECK(t.run_dir(s.child1) == (dir / "mlruns" / t.experiment_id() / s.child1).string());
  }
  check_local_scenario(dir / "mlruns", o.experiment_name, s, "w = 1, 2, 3\n");

  // The experiment is reused by name; another name gets another experiment.
  std::string first;
  {
    Tracker a(o);
    first = a.experiment_id();
    std::string r = a.start_run("again");
    a.end_run(r, "KILLED");
    CHECK(has_line(slurp(fs::path(a.run_dir(r)) / "meta.yaml"), "status: 5"));
  }
  CHECK(first == experiment_dir_named(dir / "mlruns", o.experiment_name));
  o.experiment_name = "another";
  Tracker b(o);
  CHECK(b.experiment_id() != first);
}

TEST_CASE("runs left open end with the tracker: FINISHED, or FAILED while unwinding") {
  fs::path dir = fresh_dir("open");
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "open runs";
  std::string ok_run, failed_run, ok_dir, failed_dir;
  {
    Tracker t(o);
    ok_run = t.start_run("left open");
    ok_dir = t.run_dir(ok_run);
    CHECK(has_line(slurp(fs::path(ok_dir) / "meta.yaml"), "status: 1"));  // RUNNING
    CHECK(has_line(slurp(fs::path(ok_dir) / "meta.yaml"), "end_time: null"));
  }
  CHECK(has_line(slurp(fs::path(ok_dir) / "meta.yaml"), "status: 3"));
  try {
    Tracker t(o);
    failed_run = t.start_run("crashes");
    failed_dir = t.run_dir(failed_run);
    throw std::runtime_error("training diverged");
  } catch (const std::runtime_error&) {
  }
  CHECK(has_line(slurp(fs::path(failed_dir) / "meta.yaml"), "status: 4"));
}

TEST_CASE("a closed port: one warning, a complete local store, no exception") {
  fs::path dir = fresh_dir("closed");
  fs::path art = dir / "weights.txt";
  std::ofstream(art) << "closed\n";
  int port = closed_port();
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "closed port";
  o.tracking_uri = "http://127.0.0.1:" + std::to_string(port);
  Scenario s;
  std::vector<std::string> warnings;
  auto t0 = std::chrono::steady_clock::now();
  {
    CaptureStderr cap(dir / "stderr.txt");
    Tracker t(o);
    s = log_scenario(t, art);
    CHECK_FALSE(t.server_ok());
    warnings = t.warnings();
    std::string err = cap.text();
    CHECK(sprig::testing::count_lines(err) == 1);
    CHECK(contains(err, "warning"));
  }
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  REQUIRE(warnings.size() == 1);
  CHECK(contains(warnings[0], "127.0.0.1:" + std::to_string(port)));
  CHECK(contains(warnings[0], "experiments/get-by-name"));
  CHECK(contains(warnings[0], fs::absolute(o.local_dir).string()));
  check_local_scenario(dir / "mlruns", o.experiment_name, s, "closed\n");
}

TEST_CASE("REST calls: fields on the wire, one id for both stores, artifacts through the proxy") {
  fs::path dir = fresh_dir("rest");
  fs::path art = dir / "weights.txt";
  std::ofstream(art) << "proxied\n";
  int runs = 0;
  FakeServer server([&](const FakeServer::Request& r) -> std::pair<int, std::string> {
    if (r.method == "GET" && contains(r.path, "experiments/get-by-name"))
      return {404, R"({"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no such experiment"})"};
    if (contains(r.path, "experiments/create")) return {200, R"({"experiment_id":"42"})"};
    if (contains(r.path, "runs/create")) {
      std::string id = "0123456789abcdef0123456789abcd0" + std::to_string(runs++);
      json info = {{"run_id", id}, {"artifact_uri", "mlflow-artifacts:/42/" + id + "/artifacts"}};
      return {200, json{{"run", {{"info", info}}}}.dump()};
    }
    return {200, "{}"};
  });
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "rest wire/format";
  o.tracking_uri = server.uri() + "/";
  Scenario s;
  {
    Tracker t(o);
    CHECK(t.server_experiment_id() == "42");
    s = log_scenario(t, art);
    t.log_metric(s.parent, "diverged", std::nan(""), 3);
    CHECK(t.server_ok());
    CHECK(t.warnings().empty());
  }
  CHECK(s.parent == "0123456789abcdef0123456789abcd00");
  CHECK(s.child2 == "0123456789abcdef0123456789abcd02");
  check_local_scenario(dir / "mlruns", o.experiment_name, s, "proxied\n");

  auto reqs = server.requests();
  REQUIRE(reqs.size() >= 2);
  CHECK(reqs[0].path ==
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=rest%20wire%2Fformat");
  CHECK(json::parse(reqs[1].body) == json{{"name", "rest wire/format"}});
  int creates = 0, metrics = 0, updates = 0, puts = 0;
  for (const auto& r : reqs) {
    CAPTURE(r.path);
    if (r.method == "PUT") {
      ++puts;
      CHECK((r.path == "/api/2.0/mlflow-artifacts/artifacts/42/" + s.parent +
                           "/artifacts/models/weights.txt" ||
             r.path ==
                 "/api/2.0/mlflow-artifacts/artifacts/42/" + s.parent + "/artifacts/summary.txt"));
      CHECK((r.body == "proxied\n" || r.body == "trial-1: 0.75\ntrial-2: 0.375\n"));
      continue;
    }
    if (r.method != "POST") continue;
    json b = json::parse(r.body);
    if (contains(r.path, "/runs/create")) {
      ++creates;
      CHECK(b["experiment_id"] == "42");
      CHECK(b["start_time"].is_number_integer());
      std::map<std::string, std::string> tags;
      for (const auto& tag : b["tags"]) tags[tag["key"]] = tag["value"];
      CHECK(tags["mlflow.runName"] == b["run_name"]);
      CHECK(tags.count("mlflow.source.name") == 1);
      if (b["run_name"] != "sweep") CHECK(tags["mlflow.parentRunId"] == s.parent);
    } else if (contains(r.path, "/runs/log-metric")) {
      ++metrics;
      CHECK(b["timestamp"].is_number_integer());
      CHECK(b["step"].is_number_integer());
      if (b["key"] == "diverged")
        CHECK(b["value"] == "NaN");
      else
        CHECK(b["value"].is_number());
    } else if (contains(r.path, "/runs/update")) {
      ++updates;
      CHECK(b["status"] == "FINISHED");
      CHECK(b["end_time"].is_number_integer());
    } else if (contains(r.path, "/runs/log-parameter")) {
      CHECK(b["value"].is_string());
    }
  }
  CHECK(creates == 3);
  CHECK(metrics == 3 * 3 + 1 + 1);
  CHECK(updates == 3);
  CHECK(puts == 2);
}

TEST_CASE("a server that fails mid-way: one warning naming the call, the rest stays local") {
  fs::path dir = fresh_dir("midway");
  fs::path art = dir / "weights.txt";
  std::ofstream(art) << "midway\n";
  FakeServer server([&](const FakeServer::Request& r) -> std::pair<int, std::string> {
    if (contains(r.path, "experiments/get-by-name"))
      return {200, R"({"experiment":{"experiment_id":"7","name":"x"}})"};
    return {503, R"({"error_code":"TEMPORARILY_UNAVAILABLE","message":"database is locked"})"};
  });
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "mid-way";
  o.tracking_uri = server.uri();
  Scenario s;
  {
    CaptureStderr cap(dir / "stderr.txt");
    Tracker t(o);
    s = log_scenario(t, art);
    REQUIRE(t.warnings().size() == 1);
    CHECK(contains(t.warnings()[0], "runs/create"));
    CHECK(contains(t.warnings()[0], "HTTP 503"));
    CHECK(contains(t.warnings()[0], "database is locked"));
    CHECK(sprig::testing::count_lines(cap.text()) == 1);
  }
  CHECK(server.requests().size() == 2);  // get-by-name, the failed runs/create, nothing after
  check_local_scenario(dir / "mlruns", o.experiment_name, s, "midway\n");
}

TEST_CASE("a misbehaving server costs one warning: repeated run ids, huge replies, slowness") {
  struct Misbehaviour {
    const char* name;
    const char* warning;  // what the one warning must say
    double budget_seconds;
    std::function<std::pair<int, std::string>(const std::string& path)> answer;
  };
  auto run_reply = [](const std::string& id) {
    json info = {{"run_id", id}, {"artifact_uri", "mlflow-artifacts:/7/" + id + "/artifacts"}};
    return json{{"run", {{"info", info}}}}.dump();
  };
  const std::vector<Misbehaviour> cases = {
      // Every runs/create answers the same id: the second run would clash in the local store.
      {"same-id", "which a run in the local store already has", 30,
       [&](const std::string& path) -> std::pair<int, std::string> {
         if (contains(path, "runs/create")) return {200, run_reply(std::string(32, 'a'))};
         return {200, "{}"};
       }},
      // 17 MB for one answer: cut off at 16 MB, not buffered.
      {"huge", "larger than 16 MB", 30,
       [&](const std::string& path) -> std::pair<int, std::string> {
         if (contains(path, "runs/create")) return {200, std::string(17 << 20, ' ')};
         return {200, "{}"};
       }},
      // 50 ms a call against a 0.3 s budget: dropped after a few calls, not after all of them.
      {"slow", "past the budget", 0.3,
       [&](const std::string& path) -> std::pair<int, std::string> {
         std::this_thread::sleep_for(std::chrono::milliseconds(50));
         static int n = 0;
         if (contains(path, "runs/create"))
           return {200, run_reply("0123456789abcdef0123456789abc" + std::to_string(100 + n++))};
         return {200, "{}"};
       }},
  };
  for (const Misbehaviour& m : cases) {
    CAPTURE(m.name);
    fs::path dir = fresh_dir(std::string("misbehaving-") + m.name);
    fs::path art = dir / "weights.txt";
    std::ofstream(art) << m.name << "\n";
    FakeServer server([&](const FakeServer::Request& r) -> std::pair<int, std::string> {
      if (contains(r.path, "experiments/get-by-name"))
        return {200, R"({"experiment":{"experiment_id":"7","name":"x"}})"};
      return m.answer(r.path);
    });
    TrackerOptions o;
    o.local_dir = (dir / "mlruns").string();
    o.experiment_name = std::string("misbehaving ") + m.name;
    o.tracking_uri = server.uri();
    o.server_budget_seconds = m.budget_seconds;
    Scenario s;
    {
      CaptureStderr cap(dir / "stderr.txt");
      Tracker t(o);
      s = log_scenario(t, art);
      REQUIRE(t.warnings().size() == 1);
      CHECK_MESSAGE(contains(t.warnings()[0], m.warning), t.warnings()[0]);
      CHECK(sprig::testing::count_lines(cap.text()) == 1);
    }
    CHECK(server.requests().size() < 12);  // the server is dropped early, not called on and on
    check_local_scenario(dir / "mlruns", o.experiment_name, s, std::string(m.name) + "\n");
  }
}

TEST_CASE("bad input: one clear error, nothing damaged") {
  fs::path dir = fresh_dir("bad");
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "bad input";
  Tracker t(o);
  std::string r = t.start_run("r");
  t.log_param(r, "lr", "0.1");

  CHECK(contains(error_of([&] { t.log_param(r, "", "x"); }), "empty param key"));
  CHECK(contains(error_of([&] { t.log_metric(r, "", 1.0); }), "empty metric key"));
  CHECK(contains(error_of([&] { t.set_tag(r, "", "x"); }), "empty tag key"));
  std::string e = error_of([&] { t.log_param(r, "notes", std::string(6001, 'a')); });
  CHECK(contains(e, "notes"));
  CHECK(contains(e, "6001"));
  CHECK(contains(e, "6000"));
  CHECK(contains(error_of([&] { t.set_tag(r, "t", std::string(8001, 'a')); }), "8000"));
  CHECK(contains(error_of([&] { t.log_metric(r, std::string(251, 'k'), 1.0); }), "250"));
  for (const char* key : {"../up", "a//b", "/abs", "a/", ".", "bad*char", "tab\tkey"})
    CHECK(contains(error_of([&] { t.log_param(r, key, "x"); }), "param key"));
  CHECK(contains(error_of([&] { t.log_param(r, "u", "\xff\xfe"); }), "UTF-8"));

  // Params are immutable, as in MLflow; the logged value stays.
  e = error_of([&] { t.log_param(r, "lr", "0.2"); });
  CHECK(contains(e, "'lr'"));
  CHECK(contains(e, "0.1"));
  CHECK(contains(e, "0.2"));
  CHECK(slurp(fs::path(t.run_dir(r)) / "params" / "lr") == "0.1");

  CHECK(
      contains(error_of([&] { t.log_metric("feedface", "m", 1.0); }), "unknown run id 'feedface'"));
  CHECK(contains(error_of([&] { t.start_run("child", "nope"); }), "unknown run id 'nope'"));
  CHECK(contains(error_of([&] { t.end_run(r, "DONE"); }), "DONE"));
  CHECK(contains(error_of([&] { t.log_artifact(r, (dir / "missing.txt").string()); }),
                 "missing.txt"));
  CHECK(contains(error_of([&] { t.log_artifact(r, dir.string()); }), "not a readable file"));
  std::ofstream(dir / "a.txt") << "a";
  CHECK(contains(error_of([&] { t.log_artifact(r, (dir / "a.txt").string(), "../out"); }),
                 "artifact path"));
  CHECK(contains(error_of([&] { t.log_text(r, "../escape.txt", "x"); }), "artifact path"));
  CHECK(contains(error_of([&] { t.log_text(r, "", "x"); }), "empty artifact path"));
  CHECK_FALSE(fs::exists(dir / "mlruns" / t.experiment_id() / "escape.txt"));

  TrackerOptions bad = o;
  bad.tracking_uri = "ftp://example.org";
  CHECK(contains(error_of([&] { Tracker x(bad); }), "ftp://example.org"));
  bad = o;
  bad.experiment_name = "";
  CHECK(contains(error_of([&] { Tracker x(bad); }), "experiment name is empty"));
  bad = o;
  bad.local_dir = (dir / "a.txt").string();
  CHECK(contains(error_of([&] { Tracker x(bad); }), "not a directory"));
  CHECK(slurp(dir / "a.txt") == "a");
}

TEST_CASE("concurrent trackers agree on one experiment per name") {
  fs::path dir = fresh_dir("concurrent");
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "shared";
  std::vector<std::string> ids(4), runs(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      Tracker t(o);
      ids[i] = t.experiment_id();
      runs[i] = t.start_run("worker-" + std::to_string(i));
      t.log_metric(runs[i], "x", i);
    });
  for (auto& th : threads) th.join();
  for (int i = 1; i < 4; ++i) CHECK(ids[i] == ids[0]);
  CHECK(experiment_dir_named(dir / "mlruns", "shared") == ids[0]);
  for (const auto& r : runs) CHECK(fs::exists(dir / "mlruns" / ids[0] / r / "meta.yaml"));
  // Nothing but finished files: no temporaries left behind.
  for (const auto& e : fs::recursive_directory_iterator(dir / "mlruns"))
    CHECK_MESSAGE(!contains(e.path().filename().string(), ".tmp"), e.path().string());
}

TEST_CASE("TensorBoard: one directory per run, TFRecord framing, scalar events") {
  CHECK(sprig::track::crc32c("123456789", 9) == 0xE3069283u);  // the standard check value
  CHECK(crc32c_bitwise("123456789") == 0xE3069283u);
  fs::path dir = fresh_dir("tensorboard");
  TrackerOptions o;
  o.local_dir = (dir / "mlruns").string();
  o.experiment_name = "tb";
  o.tensorboard_dir = (dir / "tb").string();
  {
    Tracker t(o);
    std::string p = t.start_run("sweep");
    std::string c = t.start_run("trial 1", p);
    std::string again = t.start_run("sweep");  // a second run with the same name
    for (int step = 0; step < 4; ++step) t.log_metric(c, "test_accuracy", 0.25 * step, step);
    t.log_metric(p, "best", 0.75, 1);
    t.end_run(c);
    t.end_run(p);
    t.end_run(again);
  }
  CHECK(fs::is_directory(dir / "tb" / "sweep" / "trial_1"));
  int sweeps = 0;
  for (const auto& e : fs::directory_iterator(dir / "tb"))
    sweeps += contains(e.path().filename().string(), "sweep");
  CHECK(sweeps == 2);
  auto events = read_events(only_event_file(dir / "tb" / "sweep" / "trial_1"));
  REQUIRE(events.size() == 5);
  namespace pb = sprig::testing::pb;
  pb::Message first(events[0]);
  CHECK(first.str(3) == "brain.Event:2");
  CHECK(first.one(1).as_double() > 1.6e9);
  for (int step = 0; step < 4; ++step) {
    pb::Message ev(events[step + 1]);
    CHECK(ev.one(1).wire_type == 1);  // wall_time: double
    CHECK(ev.i64(2) == step);
    pb::Message value = ev.msg(5).msg(1);
    CHECK(value.str(1) == "test_accuracy");
    CHECK(value.one(2).wire_type == 5);  // simple_value: float
    CHECK(value.one(2).as_float() == doctest::Approx(0.25 * step));
  }
  auto parent_events = read_events(only_event_file(dir / "tb" / "sweep"));
  REQUIRE(parent_events.size() == 2);
  CHECK(pb::Message(parent_events[1]).msg(5).msg(1).str(1) == "best");
}

// Run by tests/mlflow_check.py against a live `mlflow server`: it sets SPRIG_MLFLOW_URI,
// SPRIG_MLFLOW_LOCAL_STORE and SPRIG_MLFLOW_EXPERIMENT, then checks both stores with MLflow.
TEST_CASE("server round trip (under tests/mlflow_check.py)") {
  const char* uri = std::getenv("SPRIG_MLFLOW_URI");
  if (!uri || !*uri) return;
  const char* store = std::getenv("SPRIG_MLFLOW_LOCAL_STORE");
  const char* name = std::getenv("SPRIG_MLFLOW_EXPERIMENT");
  REQUIRE(store);
  REQUIRE(name);
  fs::path dir = fresh_dir("roundtrip");
  fs::path art = dir / "weights.txt";
  std::ofstream(art) << "round trip\n";
  TrackerOptions o;
  o.tracking_uri = uri;
  o.local_dir = store;
  o.experiment_name = name;
  Tracker t(o);
  Scenario s = log_scenario(t, art);
  CHECK(t.warnings().empty());
  CHECK(t.server_ok());
  check_local_scenario(store, name, s, "round trip\n");
}
