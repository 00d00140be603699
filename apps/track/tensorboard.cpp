#include "apps/track/tensorboard.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "kernels/error.h"
#include "engine/protobuf.h"

namespace sprig::track {

namespace {

// Byte-at-a-time table for the reflected Castagnoli polynomial 0x82F63B78.
const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

double wall_seconds() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count() / 1e6;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto& t = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& data) {
  std::string out;
  put_le(out, data.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create TensorBoard directory " + dir + ": " + ec.message());
  static std::atomic<unsigned> counter{0};
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  double now = wall_seconds();
  path_ = (std::filesystem::path(dir) /
           ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." + host + "." +
            std::to_string(::getpid()) + "." + std::to_string(counter++)))
              .string();
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) throw Error("cannot write " + path_ + ": " + std::strerror(errno));
  // tensorflow.Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string).
  protobuf::Writer ev;
  ev.float64(1, now).string(3, "brain.Event:2");
  write(ev.bytes());
}

EventWriter::~EventWriter() {
  close();
}

void EventWriter::close() {
  if (file_) std::fclose(file_);
  file_ = nullptr;
}

void EventWriter::write(const std::string& event) {
  if (!file_) throw Error("TensorBoard event file " + path_ + " is closed");
  std::string rec = tfrecord(event);
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0)
    throw Error("cannot write " + path_ + ": " + std::strerror(errno));
}

void EventWriter::scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  // Summary.Value: tag = 1, simple_value = 2 (float); Summary: value = 1 (repeated);
  // Event: summary = 5.
  protobuf::Writer v;
  v.string(1, tag).float32(2, static_cast<float>(value));
  protobuf::Writer summary;
  summary.message(1, v);
  protobuf::Writer ev;
  ev.float64(1, wall_time).int64(2, step).message(5, summary);
  write(ev.bytes());
}

}  // namespace sprig::track
