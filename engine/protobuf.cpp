#include "engine/protobuf.h"

#include <cstring>

#include "kernels/error.h"

namespace sprig::protobuf {

namespace {

// Little-endian whatever the host's byte order.
void append_le(std::string& out, uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

}  // namespace

void append_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void append_key(std::string& out, uint32_t field, WireType type) {
  SPRIG_CHECK(field >= 1 && field <= (1u << 29) - 1, "protobuf field number ", field,
              " is outside 1..536870911");
  SPRIG_CHECK(field < 19000 || field > 19999, "protobuf field number ", field,
              " is in the reserved range 19000..19999");
  append_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint32_t>(type));
}

Writer& Writer::varint(uint32_t field, uint64_t v) {
  append_key(buf_, field, WireType::Varint);
  append_varint(buf_, v);
  return *this;
}

Writer& Writer::fixed32(uint32_t field, uint32_t v) {
  append_key(buf_, field, WireType::Fixed32);
  append_le(buf_, v, 4);
  return *this;
}

Writer& Writer::float32(uint32_t field, float v) {
  return fixed32(field, float_bits(v));
}

Writer& Writer::fixed64(uint32_t field, uint64_t v) {
  append_key(buf_, field, WireType::Fixed64);
  append_le(buf_, v, 8);
  return *this;
}

Writer& Writer::float64(uint32_t field, double v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return fixed64(field, u);
}

Writer& Writer::bytes(uint32_t field, const void* data, size_t size) {
  append_key(buf_, field, WireType::Len);
  append_varint(buf_, size);
  buf_.append(static_cast<const char*>(data), size);
  return *this;
}

Writer& Writer::packed_int64(uint32_t field, const std::vector<int64_t>& values) {
  if (values.empty()) return *this;
  std::string payload;
  for (int64_t v : values) append_varint(payload, static_cast<uint64_t>(v));
  return string(field, payload);
}

Writer& Writer::packed_float(uint32_t field, const float* values, size_t count) {
  if (count == 0) return *this;
  append_key(buf_, field, WireType::Len);
  append_varint(buf_, 4 * static_cast<uint64_t>(count));
  buf_.reserve(buf_.size() + 4 * count);
  for (size_t i = 0; i < count; ++i) append_le(buf_, float_bits(values[i]), 4);
  return *this;
}

}  // namespace sprig::protobuf
