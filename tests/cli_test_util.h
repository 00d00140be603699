#pragma once
// Running the sprig binary from a test: exit code and output, and the helpers the CLI suites
// share. SPRIG_BINARY is defined by tests/CMakeLists.txt.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "tests/sanitized.h"

namespace sprig::testing {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

// Runs `sprig <args>` through the shell.
inline Result run(const std::string& args) {
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

inline std::string last_line(const std::string& s) {
  size_t end = s.find_last_not_of('\n');
  size_t start = s.rfind('\n', end);
  size_t from = start == std::string::npos ? 0 : start + 1;
  return s.substr(from, end - from + 1);
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// A directory for this test process's files, named after the suite and the process id, removed
// with everything in it when the process exits (hundreds had piled up in /tmp). The first call
// in a process empties it: a process with the same id (ids are reused) killed before its exit
// may have left files there, and a test that creates a file or link that already exists would
// fail (test_cli's non-UTF-8 symlink did, once in CI and once locally).
inline std::filesystem::path temp_dir(const std::string& suite) {
  std::filesystem::path d = std::filesystem::temp_directory_path() /
                            ("sprig_" + suite + "_" + std::to_string(::getpid()));
  struct Made {  // the suites whose directory this process has emptied, removed at exit
    std::set<std::string> suites;
    std::vector<std::filesystem::path> dirs;
    ~Made() {
      std::error_code ec;
      for (const auto& dir : dirs) std::filesystem::remove_all(dir, ec);
    }
  };
  static Made made;
  if (made.suites.insert(suite).second) {
    std::filesystem::remove_all(d);
    made.dirs.push_back(d);
  }
  std::filesystem::create_directories(d);
  return d;
}

// A command's result with stdout and stderr apart, and how it ended.
struct Outcome {
  int code = -1;   // exit status; -1 when a signal ended it
  int signal = 0;  // the signal that ended it, 0 when it exited
  std::string out, err;
};

// Runs a shell command line (e.g. "ulimit -f 16; exec sprig ...") with stdout and stderr
// captured apart. A shell that reports 128 + N for a child killed by signal N counts as killed.
inline Outcome run_shell(const std::string& command) {
  char err_path[] = "/tmp/sprig_stderr_XXXXXX";
  int fd = ::mkstemp(err_path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::string cmd = "{ " + command + "\n} 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  Outcome o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) o.out.append(buf.data(), n);
  int status = pclose(p);
  if (WIFEXITED(status)) o.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
  if (o.code > 128) o.signal = o.code - 128, o.code = -1;
  FILE* e = std::fopen(err_path, "rb");
  REQUIRE(e);
  while ((n = fread(buf.data(), 1, buf.size(), e)) > 0) o.err.append(buf.data(), n);
  std::fclose(e);
  ::unlink(err_path);
  return o;
}

// Shell limits for a command that must not take more than 2 GB of address space or 60 s of
// CPU. AddressSanitizer reserves terabytes of address space for its shadow memory, so its
// builds keep only the time limit.
inline std::string resource_limits() {
  return kSanitized ? "ulimit -t 60; " : "ulimit -t 60; ulimit -v 2000000; ";
}

// Runs `sprig <args>` with stdout and stderr apart.
inline Outcome run_split(const std::string& args) {
  return run_shell(std::string(SPRIG_BINARY) + " " + args);
}

}  // namespace sprig::testing
