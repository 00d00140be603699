// engine/protobuf.h: exact bytes for hand-computed encodings (protobuf.dev's encoding guide
// examples and edge cases), field-number checks, and round trips through the independent reader
// in tests/protobuf_reader.h.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "engine/protobuf.h"
#include "tests/protobuf_reader.h"

using sprig::protobuf::Writer;
namespace pb = sprig::testing::pb;

namespace {

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (!out.empty()) out += ' ';
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string varint_bytes(uint64_t v) {
  std::string s;
  sprig::protobuf::append_varint(s, v);
  return s;
}

}  // namespace

TEST_SUITE("protobuf") {
  TEST_CASE("varints as in the encoding guide") {
    CHECK(hex(varint_bytes(0)) == "00");
    CHECK(hex(varint_bytes(1)) == "01");
    CHECK(hex(varint_bytes(127)) == "7f");
    CHECK(hex(varint_bytes(128)) == "80 01");
    CHECK(hex(varint_bytes(150)) == "96 01");
    CHECK(hex(varint_bytes(300)) == "ac 02");
    CHECK(hex(varint_bytes(16384)) == "80 80 01");
    CHECK(hex(varint_bytes(UINT64_MAX)) == "ff ff ff ff ff ff ff ff ff 01");
  }

  TEST_CASE("fields: key, varint, negative int64, zigzag") {
    CHECK(hex(Writer().varint(1, 150).bytes()) == "08 96 01");
    CHECK(hex(Writer().varint(2, 1).bytes()) == "10 01");
    CHECK(hex(Writer().varint(16, 1).bytes()) == "80 01 01");  // key 16<<3 = 128 is two bytes
    // int64 -1 is ten bytes of two's complement.
    CHECK(hex(Writer().int64(1, -1).bytes()) == "08 ff ff ff ff ff ff ff ff ff 01");
    CHECK(hex(Writer().sint64(1, -1).bytes()) == "08 01");
    CHECK(hex(Writer().sint64(1, 1).bytes()) == "08 02");
    CHECK(hex(Writer().sint64(1, -2).bytes()) == "08 03");
    CHECK(sprig::protobuf::zigzag(std::numeric_limits<int64_t>::min()) == UINT64_MAX);
  }

  TEST_CASE("fixed32, float, fixed64, double are little-endian") {
    CHECK(hex(Writer().fixed32(1, 0x01020304u).bytes()) == "0d 04 03 02 01");
    CHECK(hex(Writer().float32(2, 1.0f).bytes()) == "15 00 00 80 3f");
    CHECK(hex(Writer().float32(2, -2.5f).bytes()) == "15 00 00 20 c0");
    CHECK(hex(Writer().fixed64(1, 0x0102030405060708ull).bytes()) == "09 08 07 06 05 04 03 02 01");
    CHECK(hex(Writer().float64(1, 1.0).bytes()) == "09 00 00 00 00 00 00 f0 3f");
  }

  TEST_CASE("strings, bytes and nested messages") {
    // The guide's example: field 2 string "testing".
    CHECK(hex(Writer().string(2, "testing").bytes()) == "12 07 74 65 73 74 69 6e 67");
    CHECK(hex(Writer().string(1, "").bytes()) == "0a 00");
    const char raw[3] = {0, '\xff', 1};
    CHECK(hex(Writer().bytes(4, raw, 3).bytes()) == "22 03 00 ff 01");
    // The guide's example: message Test3 { Test1 c = 3; } with c.a = 150.
    Writer inner;
    inner.varint(1, 150);
    CHECK(hex(Writer().message(3, inner).bytes()) == "1a 03 08 96 01");
    // An empty sub-message is still present (length 0).
    CHECK(hex(Writer().message(5, Writer()).bytes()) == "2a 00");
    // A 200-byte string has a two-byte length.
    std::string big(200, 'x');
    std::string enc = Writer().string(1, big).bytes();
    CHECK(hex(enc.substr(0, 3)) == "0a c8 01");
    CHECK(enc.size() == 203);
  }

  TEST_CASE("packed repeated int64 and float") {
    // The guide's example: repeated int32 f = 4 [packed] with 3, 270, 86942.
    CHECK(hex(Writer().packed_int64(4, {3, 270, 86942}).bytes()) == "22 06 03 8e 02 9e a7 05");
    CHECK(hex(Writer().packed_int64(1, {-1}).bytes()) == "0a 0a ff ff ff ff ff ff ff ff ff 01");
    CHECK(hex(Writer().packed_float(4, std::vector<float>{1.0f, -2.5f}).bytes()) ==
          "22 08 00 00 80 3f 00 00 20 c0");
    CHECK(Writer().packed_int64(1, {}).size() == 0);
    CHECK(Writer().packed_float(1, std::vector<float>{}).size() == 0);
  }

  TEST_CASE("field numbers outside the allowed range are errors") {
    Writer w;
    CHECK_THROWS_AS(w.varint(0, 1), sprig::Error);
    CHECK_THROWS_AS(w.varint(1u << 29, 1), sprig::Error);
    CHECK_THROWS_AS(w.string(19000, "x"), sprig::Error);
    CHECK_THROWS_AS(w.float32(19999, 1.0f), sprig::Error);
    CHECK(w.size() == 0);  // nothing half-written
    try {
      w.varint(19500, 1);
    } catch (const sprig::Error& e) {
      CHECK(std::string(e.what()).find("19500") != std::string::npos);
    }
    CHECK_NOTHROW(w.varint((1u << 29) - 1, 1));
    CHECK(hex(w.bytes()) == "f8 ff ff ff 0f 01");
  }

  TEST_CASE("round trip through an independent reader") {
    Writer child;
    child.string(1, "conv").packed_int64(8, {3, 3}).float32(2, 0.125f);
    Writer w;
    w.varint(1, 8)
        .int64(2, -123456789012345)
        .sint64(3, -77)
        .fixed32(4, 0xdeadbeef)
        .float64(5, -0.1)
        .message(7, child)
        .message(7, child)
        .packed_float(9, std::vector<float>{0.5f, -0.0f, std::numeric_limits<float>::infinity()})
        .string(536870911, "max field");

    pb::Message m(w.bytes());
    REQUIRE(m.fields.size() == 9);
    CHECK(m.i64(1) == 8);
    CHECK(m.i64(2) == -123456789012345);
    CHECK(m.one(3).value == 153);  // zigzag(-77) = 2*77 - 1
    CHECK(m.one(4).wire_type == 5);
    CHECK(m.one(4).value == 0xdeadbeef);
    CHECK(m.one(5).wire_type == 1);
    CHECK(m.one(5).as_double() == -0.1);
    auto children = m.msgs(7);
    REQUIRE(children.size() == 2);
    for (const pb::Message& c : children) {
      CHECK(c.str(1) == "conv");
      CHECK(pb::unpack_int64(c.str(8)) == std::vector<int64_t>{3, 3});
      CHECK(c.one(2).as_float() == 0.125f);
    }
    auto floats = pb::unpack_float(m.str(9));
    REQUIRE(floats.size() == 3);
    CHECK(floats[0] == 0.5f);
    CHECK(std::signbit(floats[1]));
    CHECK(std::isinf(floats[2]));
    CHECK(m.str(536870911) == "max field");
    // Field order is the write order.
    std::vector<uint32_t> order;
    for (const pb::Field& f : m.fields) order.push_back(f.number);
    CHECK(order == std::vector<uint32_t>{1, 2, 3, 4, 5, 7, 7, 9, 536870911});
  }

  TEST_CASE("the reader rejects truncated input (so the round trip cannot pass vacuously)") {
    std::string good = Writer().string(1, "abc").bytes();
    CHECK_THROWS(pb::parse(good.substr(0, good.size() - 1)));
    CHECK_THROWS(pb::parse(std::string("\x08\x96", 2)));
  }
}
