// The sprig command end to end: help, training with --json and --out, eval, summary, and bad
// input giving one-line errors with a non-zero exit and no damage to existing files.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace fs = std::filesystem;

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

static Result run(const std::string& args) {
  std::string cmd = std::string(SPRIG_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

static std::string last_line(const std::string& s) {
  size_t end = s.find_last_not_of('\n');
  size_t start = s.rfind('\n', end);
  return s.substr(start == std::string::npos ? 0 : start + 1,
                  end - (start == std::string::npos ? 0 : start + 1) + 1);
}

static int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

static fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("sprig_test_cli_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

TEST_CASE("--help works for every command") {
  for (const char* sub : {"", "train", "eval", "summary"}) {
    Result r = run(std::string(sub) + " --help");
    CAPTURE(sub);
    CHECK(r.code == 0);
    CHECK(r.out.find("Usage") != std::string::npos);
  }
}

TEST_CASE("train --json --out, then eval and summary of the checkpoint") {
  fs::path dir = temp_dir();
  std::string ck = (dir / "mlp.safetensors").string();
  Result r =
      run("train --model mlp --epochs 1 --limit-train 2000 --batch-size 50 --threads 2 "
          "--json --out " +
          ck);
  REQUIRE_MESSAGE(r.code == 0, r.out);
  auto j = nlohmann::json::parse(last_line(r.out));
  CHECK(j["epochs"] == 1);
  CHECK(j["params"] == 266610);
  CHECK(j["train_samples"] == 2000);
  CHECK(j["test_accuracy"].get<double>() > 0.6);
  CHECK(j["train_seconds"].get<double>() > 0.0);
  REQUIRE(fs::exists(ck));

  Result e = run("eval --in " + ck + " --json");
  REQUIRE_MESSAGE(e.code == 0, e.out);
  auto je = nlohmann::json::parse(last_line(e.out));
  // The checkpoint reproduces the accuracy measured at the end of training exactly.
  CHECK(je["test_accuracy"].get<double>() == j["test_accuracy"].get<double>());

  Result s = run("summary --in " + ck + " --json");
  REQUIRE_MESSAGE(s.code == 0, s.out);
  auto js = nlohmann::json::parse(last_line(s.out));
  CHECK(js["params"] == 266610);
  CHECK(js["nonzero"] == 266610);
  CHECK(js["layers"].size() == 6);

  Result t = run("summary --model cnn2");
  CHECK(t.code == 0);
  CHECK(t.out.find("126,698") != std::string::npos);
}

TEST_CASE("bad input: one line, non-zero exit, existing files untouched") {
  fs::path dir = temp_dir();
  std::string keep = (dir / "keep.safetensors").string();
  {
    std::ofstream f(keep);
    f << "precious";
  }
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {
           Case{"train --epochs -1", "--epochs"},
           Case{"train --batch-size 0", "--batch-size"},
           Case{"train --optimizer rmsprop", "rmsprop"},
           Case{"train --dataset cifar", "cifar"},
           Case{"train --lr nan", "--lr"},
           Case{"train --model 'conv(8,3) wobble' --epochs 1 --limit-train 10", "wobble"},
           Case{"train --dataset mnist --data-dir /nonexistent", "/nonexistent"},
           Case{"train --dataset fashion-mnist --data-dir " + dir.string(), dir.string()},
           Case{"eval --in " + keep, "keep.safetensors"},
           Case{"eval --in /no/such/file.safetensors", "/no/such/file.safetensors"},
           Case{"summary", "exactly one of"},
           Case{"summary --model cnn2 --input-shape 1,x,28", "--input-shape"},
           Case{"frobnicate", "frobnicate"},
       }) {
    CAPTURE(c.args);
    Result r = run(c.args);
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK_MESSAGE(r.out.find(c.expect) != std::string::npos, r.out);
  }
  // A run that fails before writing leaves the existing --out file as it was.
  Result r = run("train --model 'flatten linear(0)' --epochs 1 --out " + keep);
  CHECK(r.code != 0);
  std::ifstream f(keep);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(content == "precious");
}
