// safetensors: bit-exact round trips, the on-disk layout, every kind of corrupt file, atomic
// writes, and interop with an independent Python reader/writer (tests/safetensors_check.py).
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "tests/temp_dir.h"

using namespace sprig;
namespace fs = std::filesystem;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A hand-made file: length field, header text as given, then data.
std::string make_file(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

// Loads path, expects sprig::Error whose message names the file and contains every word.
void expect_load_error(const std::string& path, const std::vector<std::string>& words) {
  std::string msg;
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO("message: ", msg);
  REQUIRE_FALSE(msg.empty());
  CHECK(msg.find(path) != std::string::npos);
  for (const std::string& w : words) {
    INFO("expected word: ", w);
    CHECK(msg.find(w) != std::string::npos);
  }
}

// Writes a hand-made file and expects load to reject it.
void expect_bad_file(const TempDir& dir, const std::string& header, const std::string& data,
                     const std::vector<std::string>& words) {
  std::string path = dir.file("bad.safetensors");
  write_bytes(path, make_file(header, data));
  INFO("header: ", header);
  expect_load_error(path, words);
}

Tensor f32_from_bits(const std::vector<uint32_t>& bits, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::F32);
  std::memcpy(t.data(), bits.data(), bits.size() * 4);
  return t;
}

Tensor u8_tensor(const std::vector<uint8_t>& values, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::U8);
  if (!values.empty()) std::memcpy(t.data_as<uint8_t>(), values.data(), values.size());
  return t;
}

const void* bytes_of(const Tensor& t) {
  return static_cast<const char*>(t.impl()->storage->data()) +
         t.impl()->offset * dtype_size(t.dtype());
}

void check_same(const Tensor& got, const Tensor& want) {
  REQUIRE(got.defined());
  CHECK(got.dtype() == want.dtype());
  CHECK(got.shape() == want.shape());
  CHECK(got.device().is_cpu());
  REQUIRE(got.nbytes() == want.nbytes());
  CHECK(std::memcmp(bytes_of(got), bytes_of(want), want.nbytes()) == 0);
}

// The tensors tests/safetensors_check.py expects (its expected()).
std::vector<std::pair<std::string, Tensor>> expected_tensors() {
  std::vector<float> w(12);
  for (int i = 0; i < 12; ++i) w[i] = float(i) * 0.25f - 1.5f;
  return {
      {"weight", Tensor::from_vector(w, {3, 4})},
      {"special",
       f32_from_bits({0x7FC00001u, 0xFF800000u, 0x7F800000u, 0x80000000u, 0x00000001u, 0x7F7FFFFFu},
                     {6})},
      {"labels", Tensor::from_vector_i32({INT32_MIN, -1, 0, 1, INT32_MAX}, {5})},
      {"mask", u8_tensor({0, 1, 255, 128, 7, 0}, {2, 3})},
      {"scalar", Tensor::from_vector({42.5f}, {})},
      {"empty", Tensor::empty({0, 3}, DType::F32)},
  };
}

const std::map<std::string, std::string> kExpectedMetadata = {
    {"model", "mlp"}, {"note", u8"\u00fcn\u00efcode \u2713"}, {"json", "{\"a\": [1, 2]}"}};

// A small valid file used by the corruption and truncation tests.
std::vector<std::pair<std::string, Tensor>> small_tensors() {
  return {{"a", Tensor::from_vector({1, 2, 3}, {3})},
          {"b", Tensor::from_vector_i32({-7}, {})},
          {"m", u8_tensor({1, 0, 1, 1, 0}, {5})}};
}

}  // namespace

TEST_CASE("safetensors: round trip is bit-exact for every dtype, scalars, empties and views") {
  TempDir dir;
  // A view with a non-zero element offset into a larger buffer, then reshaped.
  Tensor base = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {12});
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->offset = 5;
  impl->shape = {6};
  impl->dtype = DType::F32;
  Tensor offset_view = Tensor(impl).reshape({2, 3});

  std::vector<std::pair<std::string, Tensor>> tensors = expected_tensors();
  tensors.push_back({"view", base.reshape({3, 4})});
  tensors.push_back({"offset_view", offset_view});
  tensors.push_back({"empty_u8", u8_tensor({}, {0})});
  tensors.push_back({"empty_i32", Tensor::empty({2, 0, 5}, DType::I32)});
  tensors.push_back(
      {"odd_u8", u8_tensor({9, 8, 7}, {3})});  // makes later data unaligned if unsorted
  tensors.push_back({"after_u8", Tensor::from_vector({-0.0f, 1e-38f}, {2})});
  Tensor u16 = Tensor::empty({3}, DType::U16);  // a sparse weight's 16-bit columns
  const uint16_t u16_values[] = {0, 65535, 258};
  std::memcpy(u16.data_as<uint16_t>(), u16_values, sizeof u16_values);
  tensors.push_back({"u16", u16});
  std::map<std::string, std::string> meta = kExpectedMetadata;
  meta["empty"] = "";
  meta["quote\"and\nnewline"] = "\t\\";

  std::string path = dir.file("model.safetensors");
  save_safetensors(path, tensors, meta);
  TensorFile f = load_safetensors(path);

  REQUIRE(f.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO("tensor ", tensors[i].first);
    CHECK(f.tensors[i].first == tensors[i].first);  // header order is the given order
    check_same(f.tensors[i].second, tensors[i].second);
    check_same(f.at(tensors[i].first), tensors[i].second);
  }
  CHECK(f.metadata == meta);
  CHECK(f.path == path);
  CHECK(f.find("nope") == nullptr);
  CHECK(f.find("labels") == &f.tensors[2].second);
  CHECK_THROWS_WITH_AS(f.at("nope"), doctest::Contains("nope"), Error);
  CHECK_THROWS_WITH_AS(f.at("nope"), doctest::Contains(path.c_str()), Error);
  CHECK(f.at("offset_view").to_vector() == std::vector<float>{5, 6, 7, 8, 9, 10});
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});

  // Saving over an existing file replaces it.
  save_safetensors(path, {{"only", Tensor::from_vector({3}, {1})}});
  TensorFile g = load_safetensors(path);
  REQUIRE(g.tensors.size() == 1);
  CHECK(g.metadata.empty());
  CHECK(g.at("only").to_vector() == std::vector<float>{3});
}

TEST_CASE("safetensors: empty files (no tensors) round trip") {
  TempDir dir;
  std::string path = dir.file("empty.safetensors");
  save_safetensors(path, {});
  std::string bytes = read_bytes(path);
  CHECK(bytes.size() == 16);  // length field + "{}" padded to 8
  CHECK(bytes.substr(8) == "{}      ");
  TensorFile f = load_safetensors(path);
  CHECK(f.tensors.empty());
  CHECK(f.metadata.empty());

  save_safetensors(path, {}, {{"k", "v"}});
  CHECK(load_safetensors(path).metadata == std::map<std::string, std::string>{{"k", "v"}});
}

TEST_CASE("safetensors: file layout follows the spec") {
  TempDir dir;
  std::string path = dir.file("layout.safetensors");
  auto tensors = small_tensors();                                     // F32, I32 scalar, U8
  tensors.insert(tensors.begin(), {"u", u8_tensor({1, 2, 3}, {3})});  // U8 given first
  save_safetensors(path, tensors, {{"format", "pt"}});
  std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);

  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  CHECK((8 + n) % 8 == 0);  // data section is 8-byte aligned
  REQUIRE(8 + n <= bytes.size());
  std::string header = bytes.substr(8, n);
  CHECK(header.front() == '{');
  size_t last = header.find_last_not_of(' ');
  CHECK(header.size() - last - 1 < 8);  // only the padding follows the closing brace
  auto j = nlohmann::ordered_json::parse(header);
  REQUIRE(j.is_object());
  CHECK(j["__metadata__"] == nlohmann::ordered_json{{"format", "pt"}});
  std::vector<std::string> keys;
  for (const auto& kv : j.items()) keys.push_back(kv.key());
  CHECK(keys == std::vector<std::string>{"__metadata__", "u", "a", "b", "m"});

  CHECK(j["a"]["dtype"] == "F32");
  CHECK(j["a"]["shape"] == nlohmann::json::array({3}));
  CHECK(j["b"]["dtype"] == "I32");
  CHECK(j["b"]["shape"] == nlohmann::json::array());
  CHECK(j["m"]["dtype"] == "U8");
  // 4-byte dtypes come first in the data section, so every tensor is aligned to its size.
  CHECK(j["a"]["data_offsets"] == nlohmann::json::array({0, 12}));
  CHECK(j["b"]["data_offsets"] == nlohmann::json::array({12, 16}));
  CHECK(j["u"]["data_offsets"] == nlohmann::json::array({16, 19}));
  CHECK(j["m"]["data_offsets"] == nlohmann::json::array({19, 24}));
  CHECK(bytes.size() == 8 + n + 24);
  float a[3];
  std::memcpy(a, bytes.data() + 8 + n, 12);
  CHECK(a[0] == 1.0f);
  CHECK(a[2] == 3.0f);
  CHECK(bytes.substr(8 + n + 16, 3) == std::string("\x01\x02\x03", 3));
}

TEST_CASE("safetensors: unreadable, short and mis-sized files are rejected") {
  TempDir dir;
  expect_load_error(dir.file("missing.safetensors"), {"cannot open", "No such file"});
  expect_load_error(dir.path, {"not a regular file"});

  std::string path = dir.file("bad.safetensors");
  for (size_t len = 0; len < 8; ++len) {
    write_bytes(path, std::string(len, '\0'));
    expect_load_error(path, {"shorter", std::to_string(len) + " bytes"});
  }
  // Header length larger than the file: both byte counts are named.
  write_bytes(path, u64_le(100) + "{}");
  expect_load_error(path, {"larger", "100", "2 bytes", "10 bytes"});
  write_bytes(path, u64_le(uint64_t(1) << 40) + "{}");
  expect_load_error(path, {"absurd", "1099511627776"});
  write_bytes(path, u64_le(~uint64_t(0)) + "{}");
  expect_load_error(path, {"absurd"});
}

TEST_CASE("safetensors: malformed headers are rejected with a precise message") {
  TempDir dir;
  const std::string f4(4, '\0');  // data for one F32 element
  expect_bad_file(dir, "{\"a\": ", "", {"not valid JSON", "byte"});
  expect_bad_file(dir, "{\"a\": {}} x", "", {"not valid JSON"});
  expect_bad_file(dir, "{\"\xff\": {}}", "", {"not valid JSON"});  // not UTF-8
  expect_bad_file(dir, "", "", {"not valid JSON"});
  expect_bad_file(dir, "[1, 2]", "", {"not an object", "array"});
  expect_bad_file(dir, "42", "", {"not an object"});
  expect_bad_file(dir, "{\"a\": 5}", "", {"tensor 'a'", "not an object"});
  expect_bad_file(dir, std::string(100, '[') + std::string(100, ']'), "", {"nests deeper"});

  // Missing or mistyped fields.
  expect_bad_file(dir, R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", f4,
                  {"tensor 'a'", "missing", "dtype"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", f4,
                  {"missing", "shape"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": [1]}})", f4, {"missing", "data_offsets"});
  expect_bad_file(dir, R"({"a": {"dtype": 1, "shape": [1], "data_offsets": [0, 4]}})", f4,
                  {"dtype", "not a string"});
  expect_bad_file(dir, R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", f4 + f4,
                  {"unsupported dtype", "F64", "F32, I32, U8, U16"});
  expect_bad_file(dir, R"({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}})", f4,
                  {"unsupported dtype", "BF16"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", f4,
                  {"shape", "not an array"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", f4,
                  {"non-integer"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}})", f4,
                  {"non-integer"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", f4,
                  {"negative dimension", "-1"});
  expect_bad_file(
      dir, R"({"a": {"dtype": "F32", "shape": [9223372036854775808], "data_offsets": [0, 4]}})", f4,
      {"too large"});
  expect_bad_file(
      dir, R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})",
      f4, {"too many elements"});
  expect_bad_file(
      dir,
      R"({"a": {"dtype": "U8", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 4]}})", f4,
      {"too many elements"});

  // Offsets.
  for (const char* offsets : {"[0]", "[0, 4, 8]", "\"0-4\"", "[-1, 4]", "[0.0, 4]", "null"}) {
    expect_bad_file(
        dir,
        std::string(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": )") + offsets + "}}",
        f4, {"tensor 'a'", "data_offsets", "[begin, end]"});
  }
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", f4,
                  {"begin > end"});
  const std::string two = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  expect_bad_file(dir, two, f4,
                  {"truncated", "expected at least " + std::to_string(8 + two.size() + 8),
                   "actual size " + std::to_string(8 + two.size() + 4)});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", f4,
                  {"size mismatch", "needs 8 bytes"});
  expect_bad_file(dir, R"({"a": {"dtype": "U8", "shape": [], "data_offsets": [0, 0]}})", "",
                  {"size mismatch"});

  // Ranges must tile the data section exactly.
  expect_bad_file(dir,
                  R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                  std::string(12, '\0'), {"overlaps", "'a'", "'b'"});
  expect_bad_file(dir,
                  R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                  f4, {"overlaps"});
  expect_bad_file(dir,
                  R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                  std::string(12, '\0'), {"gap", "[4, 8)"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                  std::string(8, '\0'), {"gap"});
  expect_bad_file(dir, R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                  std::string(8, '\0'), {"trailing", "4"});
  expect_bad_file(dir, "{}", "x", {"trailing"});

  // Names and metadata.
  expect_bad_file(dir,
                  R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                  std::string(8, '\0'), {"duplicate tensor name 'a'"});
  expect_bad_file(dir, R"({"__metadata__": {"k": "1", "k": "2"}})", "", {"duplicate key 'k'"});
  expect_bad_file(dir, R"({"__metadata__": {"k": 1}})", "",
                  {"__metadata__", "'k'", "not a string"});
  expect_bad_file(dir, R"({"__metadata__": {"k": {"x": "y"}}})", "", {"not a string"});
  expect_bad_file(dir, R"({"__metadata__": ["k"]})", "", {"__metadata__", "not an object"});
}

TEST_CASE("safetensors: valid hand-written files are accepted") {
  TempDir dir;
  std::string path = dir.file("ok.safetensors");
  // No padding, extra fields, null metadata, zero-size tensors sharing an offset.
  write_bytes(path, make_file(R"({"__metadata__": null, "z": {"dtype": "U8", "shape": [0],
      "data_offsets": [3, 3]}, "x": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3],
      "extra": 1}, "y": {"dtype": "I32", "shape": [0, 2], "data_offsets": [3, 3]}})",
                              "abc"));
  TensorFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 3);
  CHECK(f.tensors[0].first == "z");  // header order
  CHECK(f.at("x").shape() == Shape{3});
  CHECK(std::memcmp(f.at("x").data_as<uint8_t>(), "abc", 3) == 0);
  CHECK(f.at("y").shape() == Shape{0, 2});
  CHECK(f.at("y").dtype() == DType::I32);
  CHECK(f.metadata.empty());
}

TEST_CASE("safetensors: skip_suffixes leaves out tensors of any dtype, still validated") {
  TempDir dir;
  std::string path = dir.file("torch.safetensors");
  // A PyTorch BatchNorm's state: an I64 counter beside F32 statistics.
  const std::string header =
      R"({"bn.num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
          "bn.running_mean": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})";
  write_bytes(path, make_file(header, u64_le(3) + std::string(4, '\0')));
  expect_load_error(path, {"bn.num_batches_tracked", "unsupported dtype 'I64'"});
  TensorFile f = load_safetensors(path, {".num_batches_tracked"});
  REQUIRE(f.tensors.size() == 1);
  CHECK(f.tensors[0].first == "bn.running_mean");
  REQUIRE(f.skipped.size() == 1);
  CHECK(f.skipped[0].name == "bn.num_batches_tracked");
  CHECK(f.skipped[0].dtype == "I64");
  CHECK(f.skipped[0].shape == Shape{});
  CHECK(f.find("bn.num_batches_tracked") == nullptr);

  // Skipped or not, the size must fit the dtype and the data section, and the dtype must exist.
  for (const char* bad :
       {R"({"a.num_batches_tracked": {"dtype": "I64", "shape": [2], "data_offsets": [0, 8]}})",
        R"({"a.num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [0, 16]}})",
        R"({"a.num_batches_tracked": {"dtype": "Q7", "shape": [], "data_offsets": [0, 8]}})"}) {
    write_bytes(path, make_file(bad, u64_le(3)));
    INFO(bad);
    CHECK_THROWS_AS(load_safetensors(path, {".num_batches_tracked"}), Error);
  }
}

TEST_CASE("safetensors: every truncation of a valid file is rejected") {
  TempDir dir;
  std::string good = dir.file("good.safetensors");
  save_safetensors(good, small_tensors(), {{"k", "v"}});
  std::string bytes = read_bytes(good);
  REQUIRE(bytes.size() > 40);
  std::string path = dir.file("cut.safetensors");
  for (size_t len = 0; len < bytes.size(); ++len) {
    write_bytes(path, bytes.substr(0, len));
    INFO("prefix length ", len);
    CHECK_THROWS_AS(load_safetensors(path), Error);
  }
  write_bytes(path, bytes);
  CHECK(load_safetensors(path).tensors.size() == 3);
  // One extra byte is rejected too: the data must be fully indexed.
  write_bytes(path, bytes + std::string(1, '\0'));
  CHECK_THROWS_AS(load_safetensors(path), Error);
}

TEST_CASE("safetensors: single-byte corruptions load or throw sprig::Error, nothing else") {
  TempDir dir;
  std::string good = dir.file("good.safetensors");
  save_safetensors(good, small_tensors(), {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  std::string path = dir.file("mutated.safetensors");
  int rejected = 0;
  for (size_t pos = 0; pos < bytes.size(); ++pos) {
    for (char c : {'\0', '\xff', '"', '9', '-', '[', '}', ' '}) {
      if (bytes[pos] == c) continue;
      std::string mutated = bytes;
      mutated[pos] = c;
      write_bytes(path, mutated);
      INFO("byte ", pos, " set to ", int(uint8_t(c)));
      try {
        load_safetensors(path);  // e.g. a changed data byte is still a valid file
      } catch (const Error&) {
        ++rejected;
      } catch (...) {
        FAIL("an exception other than sprig::Error escaped");
      }
    }
  }
  CHECK(rejected > 0);
}

TEST_CASE("safetensors: bad arguments to save throw before touching the file") {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  save_safetensors(path, small_tensors(), {{"k", "v"}});
  const std::string before = read_bytes(path);

  Tensor x = Tensor::from_vector({1, 2}, {2});
  struct Case {
    std::vector<std::pair<std::string, Tensor>> tensors;
    std::map<std::string, std::string> meta;
    const char* word;
  };
  std::vector<Case> cases = {
      {{{"", x}}, {}, "empty name"},
      {{{"a", x}, {"a", x}}, {}, "duplicate tensor name 'a'"},
      {{{"__metadata__", x}}, {}, "reserved"},
      {{{"a", x}, {"u", Tensor()}}, {}, "'u' is undefined"},
      {{{"a\xff", x}}, {}, "header"},            // not UTF-8
      {{{"a", x}}, {{"k", "\xc3("}}, "header"},  // not UTF-8
  };
  for (const Case& c : cases) {
    INFO("expect: ", c.word);
    std::string msg;
    try {
      save_safetensors(path, c.tensors, c.meta);
    } catch (const Error& e) {
      msg = e.what();
    }
    INFO("message: ", msg);
    CHECK(msg.find(c.word) != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(read_bytes(path) == before);
    CHECK_FALSE(dir.has_temp_files());
  }
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: saving into a missing directory or over a directory fails cleanly") {
  TempDir dir;
  std::string path = dir.file("no/such/dir/model.safetensors");
  std::string msg;
  try {
    save_safetensors(path, small_tensors());
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO("message: ", msg);
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("No such file or directory") != std::string::npos);
  CHECK(dir.names().empty());

  // A directory is refused before any temp file exists, and left as it was.
  fs::create_directory(dir.file("target"));
  CHECK_THROWS_WITH_AS(save_safetensors(dir.file("target"), small_tensors()),
                       doctest::Contains("it exists and is a directory"), Error);
  CHECK(dir.names() == std::vector<std::string>{"target"});
  CHECK(fs::is_empty(dir.file("target")));
}

TEST_CASE("safetensors: a write that fails midway leaves the old file intact") {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  save_safetensors(path, small_tensors(), {{"k", "v"}});
  const std::string before = read_bytes(path);

  // 64 KiB of data; the child may write at most 4 KiB per file, so write() fails with EFBIG.
  Tensor big = Tensor::empty({16384}, DType::F32);
  std::memset(big.data(), 0x3f, big.nbytes());
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: no doctest macros here, report through the exit code.
    ::signal(SIGXFSZ, SIG_IGN);  // else the kernel kills the process instead of failing write
    struct rlimit lim = {4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    try {
      save_safetensors(path, {{"big", big}});
    } catch (const Error& e) {
      std::string msg = e.what();
      bool ok = msg.find(path) != std::string::npos &&
                msg.find(std::strerror(EFBIG)) != std::string::npos;
      ::_exit(ok ? 0 : 11);
    } catch (...) {
      ::_exit(12);
    }
    ::_exit(13);  // the save should not have succeeded
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(read_bytes(path) == before);
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});
  CHECK(load_safetensors(path).metadata.at("k") == "v");
}

// ---- interop with an independent Python implementation -------------------------------------

namespace {

std::string script_path() {
#ifdef SPRIG_SOURCE_DIR
  return std::string(SPRIG_SOURCE_DIR) + "/tests/safetensors_check.py";
#else
  return (fs::path(__FILE__).parent_path() / "safetensors_check.py").string();
#endif
}

// A Python interpreter that has numpy: $SPRIG_PYTHON, python3 on PATH, or Debian's.
// Empty when none is found.
std::string python_with_numpy() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SPRIG_PYTHON")) candidates.push_back(env);
  candidates.push_back("python3");
  candidates.push_back("/usr/bin/python3");
  for (const std::string& py : candidates) {
    std::string cmd = "'" + py + "' -c 'import numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

}  // namespace

TEST_CASE("safetensors: files agree with an independent Python reader and writer") {
  std::string py = python_with_numpy();
  if (py.empty()) {
    MESSAGE("skipped: no python3 with numpy found (set SPRIG_PYTHON to one)");
    return;
  }
  REQUIRE(fs::exists(script_path()));
  TempDir dir;

  SUBCASE("sprig writes, python reads") {
    std::string path = dir.file("from_sprig.safetensors");
    save_safetensors(path, expected_tensors(), kExpectedMetadata);
    std::string cmd = "'" + py + "' '" + script_path() + "' verify '" + path + "'";
    CHECK(std::system(cmd.c_str()) == 0);
  }
  SUBCASE("python writes, sprig reads") {
    std::string path = dir.file("from_python.safetensors");
    std::string cmd = "'" + py + "' '" + script_path() + "' write '" + path + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    TensorFile f = load_safetensors(path);
    auto want = expected_tensors();
    REQUIRE(f.tensors.size() == want.size());
    for (const auto& [name, t] : want) {
      INFO("tensor ", name);
      REQUIRE(f.find(name) != nullptr);
      check_same(f.at(name), t);
    }
    CHECK(f.tensors.front().first == "mask");  // python's header order
    CHECK(f.metadata == kExpectedMetadata);
  }
}
