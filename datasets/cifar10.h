#pragma once
// CIFAR-10, binary version (cifar-10-binary.tar.gz, which extracts to cifar-10-batches-bin/):
// data_batch_1.bin .. data_batch_5.bin hold the 50,000 training images, test_batch.bin the
// 10,000 test images. Each file is a sequence of 3073-byte records: one label byte (0..9), then
// 3072 pixel bytes: the 32x32 red plane, then the green, then the blue, each row-major.
// Nothing is downloaded: the files must already be on disk.
#include <string>

#include "datasets/mnist.h"

namespace sprig::data {

constexpr int64_t kCifar10Side = 32;
constexpr int64_t kCifar10PixelBytes = 3 * kCifar10Side * kCifar10Side;  // 3072
constexpr int64_t kCifar10RecordBytes = 1 + kCifar10PixelBytes;          // 3073

// Per-channel (R, G, B) statistics of the training set after x / 255 (the usual constants).
constexpr float kCifar10Mean[3] = {0.4914f, 0.4822f, 0.4465f};
constexpr float kCifar10Std[3] = {0.2470f, 0.2435f, 0.2616f};

// Where `--dataset cifar10` looks without --data-dir: beside Debian's Fashion-MNIST, under the
// name the official archive extracts to.
constexpr const char* kCifar10DefaultDir = "/usr/share/datasets/cifar-10-batches-bin";

// One batch file: images (N, 3, 32, 32) float32 as x / 255, labels (N) int32 in 0..9. An empty
// file, a size that is not a whole number of records, or a label above 9 is a sprig::Error
// naming the file (and the record and byte offset).
Dataset read_cifar10_batch(const std::string& path, const std::string& name = "cifar10");

// The six files from `dir` (kCifar10DefaultDir when empty), pixels as x / 255 (not yet
// normalised). Names "cifar10/train" and "cifar10/test". Missing files are one error naming
// every file that is missing and the directory.
TrainTest load_cifar10(const std::string& dir = "");

}  // namespace sprig::data
