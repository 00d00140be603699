#pragma once
// Shared by the libFuzzer targets: an in-memory file for readers that take a path, and the
// size cap that keeps valid but huge model specs from exhausting memory.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/shape.h"
#include "engine/tensor.h"

namespace sprig::fuzz {

// The readers take a path; a memfd reopened through /proc/self/fd/N lets them read the fuzz
// input without touching the disk. One file is reused for every input (truncated, rewritten).
class MemFile {
 public:
  MemFile() {
    fd_ = ::memfd_create("sprig-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  // Replaces the contents with data and returns the path to read them from.
  const std::string& write(const void* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    const char* p = static_cast<const char*>(data);
    size_t off = 0;
    while (off < size) {
      ssize_t put = ::pwrite(fd_, p + off, size - off, off_t(off));
      if (put <= 0) std::abort();
      off += size_t(put);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

// Returns the caching allocator's blocks to the system when an input is done: every input
// has new sizes, so the cache would otherwise only grow (and hide nothing from ASan either way,
// as cached blocks are poisoned).
struct ReleaseCache {
  ~ReleaseCache() { sprig::release_cached_memory(); }
};

// Upper bounds on what a spec can allocate, from its text alone: every integer is at most M
// and spatial sizes grow at most by 2 x pad per layer, so the flat features of a sample are at
// most max(M, input) x S x S, a layer holds at most M x features + M^4 weights, and a conv's
// im2col buffer at most M^2 x features. Specs over the budget are valid input that the library
// would build (slowly, with gigabytes), so the targets skip them instead of reporting an
// out-of-memory; the library itself puts no cap on model size.
struct SpecBound {
  double features = 0;  // floats of one sample's largest activation
  double params = 0;    // floats of all weights
  double im2col = 0;    // floats of one sample's largest conv scratch buffer
};

inline SpecBound spec_bound(const std::string& spec, const Shape& input_shape) {
  double max_int = 1, pads = 0, layers = 1, max_in = 1;  // layers: an upper bound
  for (int64_t d : input_shape) max_in = std::max(max_in, double(d));
  for (size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] == '(') layers += 1;  // every layer with weights has arguments
    if (!std::isdigit(static_cast<unsigned char>(spec[i]))) continue;
    double v = 0;
    size_t j = i;
    while (j < spec.size() && std::isdigit(static_cast<unsigned char>(spec[j])))
      v = v * 10 + (spec[j++] - '0');
    max_int = std::max(max_int, v);
    // "pad" (any case, spaces around '=') before this number grows the spatial size.
    size_t k = i;
    while (k > 0 && (std::isspace(static_cast<unsigned char>(spec[k - 1])) || spec[k - 1] == '='))
      --k;
    if (k >= 3) {
      std::string key = spec.substr(k - 3, 3);
      for (char& c : key) c = char(std::tolower(static_cast<unsigned char>(c)));
      if (key == "pad") pads += v;
    }
    i = j - 1;
  }
  const double side = max_in + 2 * pads;
  SpecBound b;
  b.features = std::max(max_int, max_in) * side * side;
  b.params = layers * (max_int * b.features + max_int * max_int * max_int * max_int);
  b.im2col = max_int * max_int * b.features;
  return b;
}

}  // namespace sprig::fuzz
