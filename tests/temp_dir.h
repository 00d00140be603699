#pragma once
// A fresh directory under the system temp dir for one test, removed with everything in it at
// scope exit, and the byte-level file helpers the file-format tests share.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

namespace sprig::test {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix = "sprig_test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    REQUIRE(::mkdtemp(&tmpl[0]) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
  // The names of the entries directly in it.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path))
      out.push_back(e.path().filename().string());
    return out;
  }
  // Whether an atomic write left its temporary file (".tmp.") behind, at any depth.
  bool has_temp_files() const {
    for (const auto& e : std::filesystem::recursive_directory_iterator(path))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
    return false;
  }
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_bytes(path, std::string(bytes.begin(), bytes.end()));
}

// write_bytes(path, {0x1f, 0x8b}): a literal list is bytes, not characters.
inline void write_bytes(const std::string& path, std::initializer_list<uint8_t> bytes) {
  write_bytes(path, std::vector<uint8_t>(bytes));
}

}  // namespace sprig::test
