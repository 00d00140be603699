#pragma once
// TensorBoard scalar event files without TensorFlow. A file is a sequence of TFRecords
//   uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
// (little-endian), each holding a tensorflow.Event protobuf: the first one carries
// file_version "brain.Event:2", the others wall_time, step and a Summary with one
// {tag, simple_value}. TensorBoard treats each directory holding event files as one run.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace sprig::track {

// CRC-32C (Castagnoli), and TFRecord's masking of it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);
// One TFRecord around `data`.
std::string tfrecord(const std::string& data);

class EventWriter {
 public:
  // Creates `dir` and an events.out.tfevents.<seconds>.<host>.<pid>.<n> file in it.
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // Appends and flushes one scalar, so a crashed run keeps what it logged.
  void scalar(const std::string& tag, double value, int64_t step, double wall_time);
  void close();
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace sprig::track
