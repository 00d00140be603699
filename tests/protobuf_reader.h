#pragma once
// A tiny protobuf wire-format reader for the tests: it decodes what engine/protobuf.h writes
// independently of the writer's code, so the suites can check bytes by field number.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace sprig::testing::pb {

struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;  // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  uint64_t value = 0;      // varint / fixed32 / fixed64 payload
  std::string bytes;       // length-delimited payload

  int64_t as_int64() const { return static_cast<int64_t>(value); }
  float as_float() const {
    uint32_t u = static_cast<uint32_t>(value);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  double as_double() const {
    double d;
    std::memcpy(&d, &value, 8);
    return d;
  }
};

// Reads a varint at pos (advancing it); throws on truncation or more than 10 bytes.
inline uint64_t read_varint(const std::string& s, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (pos >= s.size()) throw std::runtime_error("truncated varint");
    uint8_t b = static_cast<uint8_t>(s[pos++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  throw std::runtime_error("varint longer than 10 bytes");
}

inline uint64_t read_le(const std::string& s, size_t& pos, int n) {
  if (pos + n > s.size()) throw std::runtime_error("truncated fixed-width field");
  uint64_t v = 0;
  for (int i = 0; i < n; ++i)
    v |= static_cast<uint64_t>(static_cast<uint8_t>(s[pos + i])) << (8 * i);
  pos += n;
  return v;
}

// All top-level fields of a message, in order. Throws std::runtime_error on malformed input.
inline std::vector<Field> parse(const std::string& s) {
  std::vector<Field> out;
  size_t pos = 0;
  while (pos < s.size()) {
    uint64_t key = read_varint(s, pos);
    Field f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire_type = static_cast<uint32_t>(key & 7);
    if (f.number == 0) throw std::runtime_error("field number 0");
    switch (f.wire_type) {
      case 0:
        f.value = read_varint(s, pos);
        break;
      case 1:
        f.value = read_le(s, pos, 8);
        break;
      case 5:
        f.value = read_le(s, pos, 4);
        break;
      case 2: {
        uint64_t n = read_varint(s, pos);
        if (n > s.size() - pos) throw std::runtime_error("length-delimited field past the end");
        f.bytes = s.substr(pos, n);
        pos += n;
        break;
      }
      default:
        throw std::runtime_error("unknown wire type " + std::to_string(f.wire_type));
    }
    out.push_back(std::move(f));
  }
  return out;
}

// A parsed message with lookups by field number.
struct Message {
  std::vector<Field> fields;
  Message() = default;
  explicit Message(const std::string& bytes) : fields(parse(bytes)) {}

  std::vector<const Field*> all(uint32_t number) const {
    std::vector<const Field*> r;
    for (const Field& f : fields)
      if (f.number == number) r.push_back(&f);
    return r;
  }
  size_t count(uint32_t number) const { return all(number).size(); }
  // The only occurrence of a field; throws when it is absent or repeated.
  const Field& one(uint32_t number) const {
    auto r = all(number);
    if (r.size() != 1)
      throw std::runtime_error("field " + std::to_string(number) + " occurs " +
                               std::to_string(r.size()) + " times, expected once");
    return *r.front();
  }
  std::string str(uint32_t number) const { return one(number).bytes; }
  int64_t i64(uint32_t number) const { return one(number).as_int64(); }
  Message msg(uint32_t number) const { return Message(one(number).bytes); }
  std::vector<Message> msgs(uint32_t number) const {
    std::vector<Message> r;
    for (const Field* f : all(number)) r.emplace_back(f->bytes);
    return r;
  }
  std::vector<std::string> strs(uint32_t number) const {
    std::vector<std::string> r;
    for (const Field* f : all(number)) r.push_back(f->bytes);
    return r;
  }
};

// Decodes a packed repeated varint payload (int64).
inline std::vector<int64_t> unpack_int64(const std::string& payload) {
  std::vector<int64_t> r;
  size_t pos = 0;
  while (pos < payload.size()) r.push_back(static_cast<int64_t>(read_varint(payload, pos)));
  return r;
}

// Decodes a packed repeated float payload (4 bytes little-endian each).
inline std::vector<float> unpack_float(const std::string& payload) {
  if (payload.size() % 4) throw std::runtime_error("packed float payload not a multiple of 4");
  std::vector<float> r;
  size_t pos = 0;
  while (pos < payload.size()) {
    Field f;
    f.value = read_le(payload, pos, 4);
    r.push_back(f.as_float());
  }
  return r;
}

}  // namespace sprig::testing::pb
