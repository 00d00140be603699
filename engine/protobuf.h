#pragma once
// A minimal protocol-buffers wire-format writer (https://protobuf.dev/programming-guides/encoding/)
// for the few binary formats sprig emits (ONNX models, TensorBoard event files) without a
// protobuf library. The caller knows the schema: it writes fields by number in the order it
// likes (parsers accept any order) and nests messages by serialising them into their own Writer
// first. Only what those formats need: varints, zigzag, fixed32/64 (float, double),
// length-delimited bytes/strings/messages, and packed repeated int64 / float.
//
//   protobuf::Writer shape;                    // TensorShapeProto
//   shape.message(1, protobuf::Writer().string(2, "N"));
//   protobuf::Writer w;
//   w.varint(1, 8).string(2, "sprig").message(7, shape);
//   std::string bytes = w.bytes();
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sprig::protobuf {

// The wire types of https://protobuf.dev/programming-guides/encoding/#structure.
enum class WireType : uint32_t { Varint = 0, Fixed64 = 1, Len = 2, Fixed32 = 5 };

// Appends v as a base-128 varint (1..10 bytes). Negative int32/int64 values are written as their
// 64-bit two's complement (10 bytes), as protobuf does for int32/int64 fields.
void append_varint(std::string& out, uint64_t v);
// The key of a field: (field << 3) | wire type, as a varint. Throws sprig::Error on a field
// number outside 1..2^29-1 or in the range 19000..19999 that protobuf reserves.
void append_key(std::string& out, uint32_t field, WireType type);
// Zigzag encoding of sint32/sint64 values: 0, -1, 1, -2 -> 0, 1, 2, 3.
inline uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

class Writer {
 public:
  // int32, int64, uint32, uint64, bool and enum fields.
  Writer& varint(uint32_t field, uint64_t v);
  Writer& int64(uint32_t field, int64_t v) { return varint(field, static_cast<uint64_t>(v)); }
  // sint32 / sint64 fields (zigzag).
  Writer& sint64(uint32_t field, int64_t v) { return varint(field, zigzag(v)); }
  // fixed32 / sfixed32 / float: 4 bytes little-endian.
  Writer& fixed32(uint32_t field, uint32_t v);
  Writer& float32(uint32_t field, float v);
  // fixed64 / sfixed64 / double: 8 bytes little-endian.
  Writer& fixed64(uint32_t field, uint64_t v);
  Writer& float64(uint32_t field, double v);
  // Length-delimited: bytes, string (UTF-8 is the caller's business), an embedded message.
  Writer& bytes(uint32_t field, const void* data, size_t size);
  Writer& string(uint32_t field, const std::string& s) { return bytes(field, s.data(), s.size()); }
  Writer& message(uint32_t field, const Writer& sub) { return string(field, sub.bytes()); }
  // Packed repeated fields (one length-delimited record). An empty list writes nothing, as
  // protobuf does.
  Writer& packed_int64(uint32_t field, const std::vector<int64_t>& values);
  Writer& packed_float(uint32_t field, const float* values, size_t count);
  Writer& packed_float(uint32_t field, const std::vector<float>& values) {
    return packed_float(field, values.data(), values.size());
  }

  const std::string& bytes() const { return buf_; }
  size_t size() const { return buf_.size(); }
  void clear() { buf_.clear(); }

 private:
  std::string buf_;
};

}  // namespace sprig::protobuf
