#include "datasets/cifar10.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace sprig::data {

namespace fs = std::filesystem;

static const char* const kTrainFiles[] = {"data_batch_1.bin", "data_batch_2.bin",
                                          "data_batch_3.bin", "data_batch_4.bin",
                                          "data_batch_5.bin"};
static const char* const kTestFile = "test_batch.bin";

// Records in the file at `path`: its size over 3073, checked to be a whole, non-zero number.
static int64_t count_records(const std::string& path) {
  std::error_code ec;
  SPRIG_CHECK(fs::is_regular_file(path, ec), path, ": not a regular file");
  const int64_t size = int64_t(fs::file_size(path, ec));
  SPRIG_CHECK(!ec, path, ": ", ec.message());
  SPRIG_CHECK(size > 0, path, ": empty file (expected CIFAR-10 records of ", kCifar10RecordBytes,
              " bytes: a label byte and 3072 pixel bytes)");
  SPRIG_CHECK(size % kCifar10RecordBytes == 0, path, ": ", size, " bytes is not a whole number of ",
              kCifar10RecordBytes, "-byte CIFAR-10 records (truncated? record ",
              size / kCifar10RecordBytes, " starts at byte ",
              size / kCifar10RecordBytes * kCifar10RecordBytes, " and has only ",
              size % kCifar10RecordBytes, " bytes)");
  return size / kCifar10RecordBytes;
}

// Decodes the n records of `path` into images (n, 3, 32, 32) and labels (n).
static void read_records(const std::string& path, int64_t n, float* images, int32_t* labels) {
  std::ifstream f(path, std::ios::binary);
  SPRIG_CHECK(f.good(), path, ": cannot open: ", std::strerror(errno));
  std::vector<uint8_t> record(kCifar10RecordBytes);  // (3073): label, then R, G, B planes
  for (int64_t i = 0; i < n; ++i) {
    f.read(reinterpret_cast<char*>(record.data()), kCifar10RecordBytes);
    SPRIG_CHECK(f.gcount() == kCifar10RecordBytes, path, ": file ended inside record ", i,
                " (byte offset ", i * kCifar10RecordBytes, "); was it changed while reading?");
    SPRIG_CHECK(record[0] <= 9, path, ": record ", i, " (byte offset ", i * kCifar10RecordBytes,
                ") has label ", int(record[0]), ", outside 0..9");
    labels[i] = record[0];
    // The record's planes are already in (C, H, W) order. Divide (not multiply by 1/255) so
    // 255 maps to exactly 1, as in the MNIST loader.
    float* image = images + i * kCifar10PixelBytes;
    for (int64_t k = 0; k < kCifar10PixelBytes; ++k) image[k] = record[1 + k] / 255.0f;
  }
}

// The records of `paths` concatenated in order, in one allocation.
static Dataset read_files(const std::vector<std::string>& paths, const std::string& name) {
  std::vector<int64_t> counts;
  int64_t n = 0;
  for (const std::string& p : paths) n += counts.emplace_back(count_records(p));
  Dataset ds;
  ds.name = name;
  ds.images = Tensor::empty({n, 3, kCifar10Side, kCifar10Side});  // (N, 3, 32, 32)
  ds.labels = Tensor::empty({n}, DType::I32);                     // (N)
  int64_t at = 0;
  for (size_t k = 0; k < paths.size(); ++k) {
    read_records(paths[k], counts[k], ds.images.data() + at * kCifar10PixelBytes,
                 ds.labels.data_as<int32_t>() + at);
    at += counts[k];
  }
  return ds;
}

Dataset read_cifar10_batch(const std::string& path, const std::string& name) {
  return read_files({path}, name);
}

TrainTest load_cifar10(const std::string& dir_given) {
  const std::string dir = dir_given.empty() ? std::string(kCifar10DefaultDir) : dir_given;
  const std::string expected =
      "data_batch_1.bin .. data_batch_5.bin and test_batch.bin, CIFAR-10's binary version "
      "(extract cifar-10-binary.tar.gz and pass its cifar-10-batches-bin directory as "
      "--data-dir)";
  std::error_code ec;
  SPRIG_CHECK(fs::is_directory(dir, ec), "CIFAR-10 not found: ", dir,
              " is not a directory (expected ", expected, ")");
  std::vector<std::string> names(std::begin(kTrainFiles), std::end(kTrainFiles));
  names.push_back(kTestFile);
  std::string missing;
  for (const std::string& f : names)
    if (!fs::exists(fs::path(dir) / f, ec)) missing += (missing.empty() ? "" : ", ") + f;
  SPRIG_CHECK(missing.empty(), "CIFAR-10 not found: ", dir, " lacks ", missing, " (expected ",
              expected, ")");
  std::vector<std::string> train_paths;
  for (const char* f : kTrainFiles) train_paths.push_back((fs::path(dir) / f).string());
  TrainTest tt;
  tt.train = read_files(train_paths, "cifar10/train");
  tt.test = read_cifar10_batch((fs::path(dir) / kTestFile).string(), "cifar10/test");
  return tt;
}

}  // namespace sprig::data
