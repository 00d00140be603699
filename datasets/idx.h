#pragma once
// IDX files (the format of MNIST and Fashion-MNIST), raw or gzip-compressed.
//
// Layout: 2 zero bytes, 1 type-code byte, 1 rank byte, then `rank` big-endian uint32
// dimensions, then prod(dims) elements in big-endian byte order, and nothing after them.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace sprig::data {

enum class IdxType : uint8_t {
  U8 = 0x08,
  I8 = 0x09,
  I16 = 0x0B,
  I32 = 0x0C,
  F32 = 0x0D,
  F64 = 0x0E,
};

size_t idx_type_size(IdxType t);
const char* idx_type_name(IdxType t);

struct IdxArray {
  std::vector<int64_t> dims;  // 1 to 4 dimensions, each > 0
  IdxType type = IdxType::U8;
  std::vector<uint8_t> data;  // prod(dims) * idx_type_size(type) bytes, big-endian as on disk
  int64_t numel() const;
};

// Largest payload read_idx accepts; a header claiming more is treated as corrupt.
constexpr uint64_t kMaxIdxBytes = uint64_t(16) << 30;

// Reads an IDX file; gzip is detected by its magic bytes (0x1f 0x8b), not by the name.
// Throws sprig::Error naming the file and what is wrong: missing/unreadable file, bad magic
// or type code, rank outside 1..4, zero or oversized dimensions, truncated or over-long data,
// corrupt gzip stream.
IdxArray read_idx(const std::string& path);

// Writes an IDX file (gzip-compressed when gzip is true). `a.data` must already be
// big-endian. Used by tests and tools; throws sprig::Error when the file cannot be written.
void write_idx(const std::string& path, const IdxArray& a, bool gzip = false);

// The array as a CPU tensor of the same shape: U8 stays uint8, integer types become int32,
// float types become float32 (byte order converted).
Tensor idx_to_tensor(const IdxArray& a);

}  // namespace sprig::data
