#include "apps/track/mlflow_rest.h"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

namespace sprig::track {

namespace {

using json = nlohmann::json;

// A dead or unreachable server must not stall training: connecting gets 2 s, a call 15 s and an
// artifact upload 120 s.
constexpr long kConnectTimeoutMs = 2000;
constexpr long kCallTimeoutMs = 15000;
constexpr long kUploadTimeoutMs = 120000;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// MLflow's answers are small JSON objects; a server that sends more than this is broken or
// hostile, and is cut off rather than buffered (a 1.5 GB reply once took 3.3 GB of memory).
constexpr size_t kMaxReplyBytes = size_t(16) << 20;

size_t append_body(char* ptr, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > kMaxReplyBytes) return 0;  // libcurl stops: CURLE_WRITE_ERROR
  body->append(ptr, size * n);
  return size * n;
}

struct MemoryReader {
  const char* data;
  size_t left;
};
size_t read_memory(char* out, size_t size, size_t n, void* user) {
  auto* r = static_cast<MemoryReader*>(user);
  size_t k = std::min(size * n, r->left);
  std::memcpy(out, r->data, k);
  r->data += k;
  r->left -= k;
  return k;
}

// MLflow answers errors with {"error_code": ..., "message": ...}; keep the warning one line.
std::string describe_error(const std::string& body) {
  std::string text = body;
  try {
    json j = json::parse(body);
    if (j.is_object() && j.contains("error_code"))
      text = j.value("error_code", "") + ": " + j.value("message", "");
  } catch (const json::exception&) {
  }
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  if (text.size() > 300) text = text.substr(0, 300) + "...";
  return text;
}

std::string error_code(const std::string& body) {
  try {
    json j = json::parse(body);
    if (j.is_object()) return j.value("error_code", "");
  } catch (const json::exception&) {
  }
  return "";
}

json parse_json(const std::string& body, const std::string& what) {
  try {
    return json::parse(body);
  } catch (const json::exception&) {
    throw RestError(what + ": the answer is not JSON: " + describe_error(body));
  }
}

// Protobuf's JSON mapping spells non-finite doubles as strings; MLflow accepts them.
json number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

}  // namespace

RestClient::RestClient(std::string base_url) : base_(std::move(base_url)) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
  global_init();
  curl_ = curl_easy_init();
  if (!curl_) throw RestError("libcurl could not create a handle");
  // A server on this machine is never reached through an http_proxy.
  noproxy_ = "localhost,127.0.0.1,::1";
  for (const char* v : {"no_proxy", "NO_PROXY"})
    if (const char* e = std::getenv(v); e && *e) noproxy_ += std::string(",") + e;
  if (const char* token = std::getenv("MLFLOW_TRACKING_TOKEN"); token && *token)
    auth_headers_.push_back(std::string("Authorization: Bearer ") + token);
}

RestClient::~RestClient() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

RestClient::Response RestClient::perform(const std::string& method, const std::string& path,
                                         const Payload& payload, long timeout_ms,
                                         const std::string& what, long allow_status) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);
  Response r;
  char errbuf[CURL_ERROR_SIZE] = {0};
  std::string url = base_ + path;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, method == "PUT" ? "Content-Type: application/octet-stream"
                                                       : "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip on uploads
  for (const auto& h : auth_headers_) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_NOPROXY, noproxy_.c_str());
  const char* user = std::getenv("MLFLOW_TRACKING_USERNAME");
  const char* pass = std::getenv("MLFLOW_TRACKING_PASSWORD");
  if (user && *user && auth_headers_.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, user);
    curl_easy_setopt(c, CURLOPT_PASSWORD, pass ? pass : "");
  }
  MemoryReader mem{payload.data, payload.size};
  if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size));
  } else if (method == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(payload.size));
    if (payload.file) {
      curl_easy_setopt(c, CURLOPT_READDATA, payload.file);  // libcurl's default reader fread()s
    } else {
      curl_easy_setopt(c, CURLOPT_READFUNCTION, read_memory);
      curl_easy_setopt(c, CURLOPT_READDATA, &mem);
    }
  }
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  std::string call = method + " " + path + " (" + what + ")";
  if (rc == CURLE_WRITE_ERROR)
    throw RestError(call + ": the reply is larger than " + std::to_string(kMaxReplyBytes >> 20) +
                    " MB");
  if (rc != CURLE_OK) throw RestError(call + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(rc)));
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  if ((r.status < 200 || r.status >= 300) && r.status != allow_status)
    throw RestError(call + ": HTTP " + std::to_string(r.status) + " " + describe_error(r.body));
  return r;
}

RestClient::Response RestClient::request(const std::string& method, const std::string& path,
                                         const std::string& body, const std::string& what,
                                         long allow_status) {
  Payload p{body.c_str(), body.size(), nullptr};
  return perform(method, path, p, kCallTimeoutMs, what, allow_status);
}

std::string RestClient::experiment_id(const std::string& name) {
  CURL* c = static_cast<CURL*>(curl_);
  auto get = [&]() -> std::string {
    char* esc = curl_easy_escape(c, name.c_str(), static_cast<int>(name.size()));
    std::string q = esc ? esc : "";
    curl_free(esc);
    Response r = request("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=" + q, "",
                         "experiment '" + name + "'", 404);
    if (r.status == 404) return "";
    json j = parse_json(r.body, "experiments/get-by-name");
    std::string id = j.value("experiment", json::object()).value("experiment_id", "");
    if (id.empty()) throw RestError("experiments/get-by-name: no experiment_id in the answer");
    return id;
  };
  if (std::string id = get(); !id.empty()) return id;
  Response r = request("POST", "/api/2.0/mlflow/experiments/create", json{{"name", name}}.dump(),
                       "experiment '" + name + "'", 400);
  if (r.status == 400) {
    // Another process created it between our two calls.
    if (error_code(r.body) == "RESOURCE_ALREADY_EXISTS")
      if (std::string id = get(); !id.empty()) return id;
    throw RestError("POST /api/2.0/mlflow/experiments/create: HTTP 400 " + describe_error(r.body));
  }
  std::string id = parse_json(r.body, "experiments/create").value("experiment_id", "");
  if (id.empty()) throw RestError("experiments/create: no experiment_id in the answer");
  return id;
}

RestClient::Run RestClient::create_run(const std::string& experiment_id,
                                       const std::string& run_name, int64_t start_ms,
                                       const std::vector<std::pair<std::string, std::string>>& tags,
                                       const std::string& user) {
  json t = json::array();
  for (const auto& [k, v] : tags) t.push_back({{"key", k}, {"value", v}});
  json body = {{"experiment_id", experiment_id},
               {"run_name", run_name},
               {"start_time", start_ms},
               {"user_id", user},
               {"tags", t}};
  Response r =
      request("POST", "/api/2.0/mlflow/runs/create", body.dump(), "run '" + run_name + "'");
  json info =
      parse_json(r.body, "runs/create").value("run", json::object()).value("info", json::object());
  Run run{info.value("run_id", ""), info.value("artifact_uri", "")};
  if (run.run_id.empty()) throw RestError("runs/create: no run_id in the answer");
  return run;
}

void RestClient::log_param(const std::string& run_id, const std::string& key,
                           const std::string& value) {
  request("POST", "/api/2.0/mlflow/runs/log-parameter",
          json{{"run_id", run_id}, {"key", key}, {"value", value}}.dump(), "param '" + key + "'");
}

void RestClient::log_metric(const std::string& run_id, const std::string& key, double value,
                            int64_t timestamp_ms, int64_t step) {
  json body = {{"run_id", run_id},
               {"key", key},
               {"value", number(value)},
               {"timestamp", timestamp_ms},
               {"step", step}};
  request("POST", "/api/2.0/mlflow/runs/log-metric", body.dump(), "metric '" + key + "'");
}

void RestClient::set_tag(const std::string& run_id, const std::string& key,
                         const std::string& value) {
  request("POST", "/api/2.0/mlflow/runs/set-tag",
          json{{"run_id", run_id}, {"key", key}, {"value", value}}.dump(), "tag '" + key + "'");
}

void RestClient::update_run(const std::string& run_id, const std::string& status, int64_t end_ms) {
  request("POST", "/api/2.0/mlflow/runs/update",
          json{{"run_id", run_id}, {"status", status}, {"end_time", end_ms}}.dump(),
          "status " + status);
}

bool RestClient::proxied(const std::string& artifact_uri) {
  return artifact_uri.rfind("mlflow-artifacts:", 0) == 0;
}

// mlflow-artifacts:/1/<run>/artifacts (or mlflow-artifacts://host:port/1/...) names the path
// under the proxy's root: /api/2.0/mlflow-artifacts/artifacts/1/<run>/artifacts/<rel_path>.
std::string RestClient::artifact_url(const std::string& artifact_uri, const std::string& rel_path) {
  if (!proxied(artifact_uri))
    throw RestError("artifact upload: the server keeps this run's artifacts at '" + artifact_uri +
                    "', not behind its artifact proxy (start mlflow server with artifact "
                    "serving on, the default)");
  std::string path = artifact_uri.substr(std::strlen("mlflow-artifacts:"));
  if (path.rfind("//", 0) == 0) {
    size_t slash = path.find('/', 2);
    path = slash == std::string::npos ? "" : path.substr(slash);
  }
  while (!path.empty() && path.front() == '/') path.erase(path.begin());
  while (!path.empty() && path.back() == '/') path.pop_back();
  std::string full = path.empty() ? rel_path : path + "/" + rel_path;
  CURL* c = static_cast<CURL*>(curl_);
  std::string url = "/api/2.0/mlflow-artifacts/artifacts";
  size_t start = 0;
  while (start <= full.size()) {
    size_t end = full.find('/', start);
    if (end == std::string::npos) end = full.size();
    std::string seg = full.substr(start, end - start);
    char* esc = curl_easy_escape(c, seg.c_str(), static_cast<int>(seg.size()));
    url += "/" + std::string(esc ? esc : "");
    curl_free(esc);
    start = end + 1;
  }
  return url;
}

void RestClient::upload_file(const std::string& artifact_uri, const std::string& rel_path,
                             const std::string& local_path) {
  FILE* f = std::fopen(local_path.c_str(), "rb");
  if (!f) throw RestError("artifact upload: cannot open " + local_path);
  std::fseek(f, 0, SEEK_END);
  long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  try {
    Payload p{nullptr, static_cast<size_t>(size < 0 ? 0 : size), f};
    perform("PUT", artifact_url(artifact_uri, rel_path), p, kUploadTimeoutMs,
            "artifact " + rel_path, 0);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
}

void RestClient::upload_data(const std::string& artifact_uri, const std::string& rel_path,
                             const std::string& data) {
  Payload p{data.data(), data.size(), nullptr};
  perform("PUT", artifact_url(artifact_uri, rel_path), p, kUploadTimeoutMs, "artifact " + rel_path,
          0);
}

}  // namespace sprig::track
