#pragma once
// In-memory datasets, MNIST-style loaders and the small helpers around them.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace sprig::data {

// A labelled dataset held in memory on the CPU. For MNIST-style images, `images` is
// (N, 1, H, W) float32 and `labels` is (N) int32; other datasets use (N, ...) float32 inputs
// and either (N) int32 class labels or (N, ...) float32 regression targets.
struct Dataset {
  Tensor images;
  Tensor labels;
  std::string name;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

struct TrainTest {
  Dataset train, test;
};

// Per-pixel statistics of the training sets after scaling to [0, 1] (the usual constants).
constexpr float kMnistMean = 0.1307f;
constexpr float kMnistStd = 0.3081f;
constexpr float kFashionMnistMean = 0.2860f;
constexpr float kFashionMnistStd = 0.3530f;

constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

// Loads the four standard files from `dir`, each either raw or gzip:
//   train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
//   t10k-images-idx3-ubyte[.gz],  t10k-labels-idx1-ubyte[.gz]
// Pixels become float32 in [0, 1] (x / 255), shape (N, 1, H, W); labels int32 in 0..9.
// Dataset names are name + "/train" and name + "/test".
TrainTest load_mnist_dir(const std::string& dir, const std::string& name = "mnist");

// Fashion-MNIST from `dir`, by default kFashionMnistDefaultDir (Debian's
// dataset-fashion-mnist package). Names are "fashion-mnist/train" and "fashion-mnist/test".
TrainTest load_fashion_mnist(const std::string& dir = "");

// Replaces ds.images with (images - mean) / std in a new buffer (tensors that shared the old
// buffer keep the old values). std must be > 0.
void normalize(Dataset& ds, float mean, float std);

// Per channel: images (N, C, ...) become (images - mean[c]) / std[c] in a new buffer, as
// torchvision's Normalize. mean and std hold C values; every std must be > 0.
void normalize_channels(Dataset& ds, const std::vector<float>& mean, const std::vector<float>& std);

// The samples at `indices`, in that order, copied into new tensors (same name).
Dataset subset(const Dataset& ds, const std::vector<int64_t>& indices);

// The first min(n, size) samples, copied. n < 0 is an error.
Dataset take(const Dataset& ds, int64_t n);

// Checks that images and labels are defined CPU tensors with the same first dimension;
// `what` names the caller in the message.
void check_dataset(const Dataset& ds, const char* what);

}  // namespace sprig::data
