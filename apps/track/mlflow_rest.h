#pragma once
// A client for MLflow's tracking REST API 2.0 (https://mlflow.org/docs/latest/api_reference/
// rest-api.html) over libcurl, covering what the Tracker logs. Every call throws RestError
// naming the call and the reason (connection refused, timeout, HTTP status with MLflow's
// error_code and message); the Tracker turns the first one into a warning.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sprig::track {

class RestError : public std::runtime_error {
 public:
  explicit RestError(const std::string& what) : std::runtime_error(what) {}
};

class RestClient {
 public:
  // base_url: "http://host:port" (or https); a trailing slash is ignored. MLflow's own client
  // variables are honoured: MLFLOW_TRACKING_TOKEN (bearer) or MLFLOW_TRACKING_USERNAME and
  // MLFLOW_TRACKING_PASSWORD (basic auth).
  explicit RestClient(std::string base_url);
  ~RestClient();
  RestClient(const RestClient&) = delete;
  RestClient& operator=(const RestClient&) = delete;

  // The id of the experiment called `name`, created when the server has none.
  std::string experiment_id(const std::string& name);

  struct Run {
    std::string run_id, artifact_uri;
  };
  Run create_run(const std::string& experiment_id, const std::string& run_name, int64_t start_ms,
                 const std::vector<std::pair<std::string, std::string>>& tags,
                 const std::string& user);
  void log_param(const std::string& run_id, const std::string& key, const std::string& value);
  void log_metric(const std::string& run_id, const std::string& key, double value,
                  int64_t timestamp_ms, int64_t step);
  void set_tag(const std::string& run_id, const std::string& key, const std::string& value);
  void update_run(const std::string& run_id, const std::string& status, int64_t end_ms);

  // Whether artifacts under this run artifact_uri can go through the server's artifact proxy
  // (`mlflow-artifacts:` URIs, what `mlflow server` hands out when it serves artifacts).
  static bool proxied(const std::string& artifact_uri);
  // Uploads to <artifact_uri>/<rel_path> through the proxy: the file at local_path, or `data`.
  void upload_file(const std::string& artifact_uri, const std::string& rel_path,
                   const std::string& local_path);
  void upload_data(const std::string& artifact_uri, const std::string& rel_path,
                   const std::string& data);

  const std::string& base_url() const { return base_; }

 private:
  struct Response {
    long status = 0;
    std::string body;
  };
  struct Payload {
    const char* data;  // POST body or PUT bytes, or
    size_t size;
    void* file;  // a FILE* to stream a PUT from
  };
  // One HTTP exchange; throws RestError on transport errors and non-2xx answers unless
  // `allow_status` names the status.
  Response perform(const std::string& method, const std::string& path, const Payload& payload,
                   long timeout_ms, const std::string& what, long allow_status);
  Response request(const std::string& method, const std::string& path, const std::string& body,
                   const std::string& what, long allow_status = 0);
  std::string artifact_url(const std::string& artifact_uri, const std::string& rel_path);

  std::string base_;
  void* curl_ = nullptr;  // CURL*, reused so requests share one keep-alive connection
  std::vector<std::string> auth_headers_;
  std::string noproxy_;  // CURLOPT_NOPROXY
};

}  // namespace sprig::track
