#pragma once
// DataLoader: iterates over a Dataset in (optionally shuffled) mini-batches.
//
//   DataLoader loader(train, 128, /*shuffle=*/true, /*seed=*/0);
//   for (int e = 0; e < epochs; ++e) {
//     loader.start_epoch();
//     Batch b;
//     while (loader.next(b)) { ... b.x, b.y ... }
//   }
#include <cstdint>
#include <vector>

#include "datasets/mnist.h"

namespace sprig::data {

struct Batch {
  Tensor x;  // (b, ...) float32: rows of the dataset's images
  Tensor y;  // (b) int32 labels or (b, ...) float32 targets: rows of the dataset's labels
  // The whole batch has `total` samples; x and y are its rows [first, first + b): all of it,
  // or one rank's shard in data-parallel training (set_shard).
  int64_t total = 0, first = 0;
};

class DataLoader {
 public:
  // images: (N, ...) float32; labels: (N) int32 or (N, ...) float32. batch_size must be > 0.
  // The loader keeps a reference to the dataset's tensors (not a copy).
  DataLoader(const Dataset& data, int64_t batch_size, bool shuffle = false, uint64_t seed = 0,
             bool drop_last = false);

  // Batches per epoch: ceil(N / B), or floor(N / B) with drop_last.
  size_t num_batches() const;
  int64_t num_samples() const { return n_; }
  int64_t batch_size() const { return batch_size_; }

  // Begins the next epoch (0 for the first call). With shuffle, epoch e visits the samples in
  // a permutation drawn from a stream derived from (seed, e): the same seed gives the same
  // orders on every run and platform, and different epochs give different orders.
  void start_epoch();
  // Begins epoch `epoch` explicitly (e.g. when resuming from a checkpoint).
  void start_epoch(int64_t epoch);
  // The epoch in progress, -1 before the first start_epoch().
  int64_t epoch() const { return epoch_; }

  // Fills `out` with the next batch (fresh tensors each call, so earlier batches stay valid)
  // and returns true; returns false at the end of the epoch. Calling next() before any
  // start_epoch() starts epoch 0.
  bool next(Batch& out);

  // Data-parallel training: each batch is the same as before, but next() hands out only the
  // contiguous share [floor(b r / n), floor(b (r + 1) / n)) of rank r of n (possibly empty).
  void set_shard(int rank, int ranks);

  // The sample order of the current epoch.
  const std::vector<int64_t>& order() const { return order_; }

 private:
  Dataset data_;
  int64_t n_ = 0;
  int64_t batch_size_ = 1;
  bool shuffle_ = false;
  uint64_t seed_ = 0;
  bool drop_last_ = false;
  int64_t epoch_ = -1;
  int64_t cursor_ = 0;          // position in order_ of the next sample
  std::vector<int64_t> order_;  // (N) sample indices for this epoch
  int shard_ = 0, shards_ = 1;
};

// A well-mixed 64-bit hash (splitmix64's finaliser), so that nearby (seed, epoch) pairs give
// unrelated streams.
uint64_t mix64(uint64_t z);

// Fisher-Yates permutation of 0..n-1 from Rng(seed), drawing with Rng::below.
std::vector<int64_t> permutation(int64_t n, uint64_t seed);

}  // namespace sprig::data
