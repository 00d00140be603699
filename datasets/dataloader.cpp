#include "datasets/dataloader.h"

#include <algorithm>
#include <cstring>

#include "engine/rng.h"

namespace sprig::data {

uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  SPRIG_CHECK(n >= 0, "permutation: n must be >= 0, got ", n);
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng.below(uint64_t(i) + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

DataLoader::DataLoader(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed,
                       bool drop_last)
    : data_(data), batch_size_(batch_size), shuffle_(shuffle), seed_(seed), drop_last_(drop_last) {
  SPRIG_CHECK(batch_size > 0, "DataLoader: batch size must be > 0, got ", batch_size);
  check_dataset(data, "DataLoader");
  SPRIG_CHECK(data.images.dtype() == DType::F32, "DataLoader: inputs of dataset '", data.name,
              "' must be float32, got ", dtype_name(data.images.dtype()));
  DType yt = data.labels.dtype();
  SPRIG_CHECK(yt == DType::F32 || (yt == DType::I32 && data.labels.dim() == 1),
              "DataLoader: targets of dataset '", data.name,
              "' must be (N) int32 labels or (N, ...) float32 values, got ", dtype_name(yt), " ",
              to_string(data.labels.shape()));
  n_ = data.images.size(0);
}

size_t DataLoader::num_batches() const {
  if (drop_last_) return static_cast<size_t>(n_ / batch_size_);
  return static_cast<size_t>((n_ + batch_size_ - 1) / batch_size_);
}

void DataLoader::set_shard(int rank, int ranks) {
  SPRIG_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "DataLoader: shard ", rank, " of ", ranks,
              " does not exist");
  shard_ = rank;
  shards_ = ranks;
}

void DataLoader::start_epoch() {
  start_epoch(epoch_ + 1);
}

void DataLoader::start_epoch(int64_t epoch) {
  SPRIG_CHECK(epoch >= 0, "DataLoader: epoch must be >= 0, got ", epoch);
  epoch_ = epoch;
  cursor_ = 0;
  if (shuffle_) {
    order_ = permutation(n_, mix64(seed_ ^ mix64(uint64_t(epoch))));
  } else {
    order_.resize(n_);
    for (int64_t i = 0; i < n_; ++i) order_[i] = i;
  }
}

// Copies rows[0..b) of src into a new (b, ...) tensor, one memcpy per row.
static Tensor gather(const Tensor& src, const int64_t* rows, int64_t b) {
  Shape shape = src.shape();
  const int64_t n = shape[0];
  shape[0] = b;
  Tensor out = Tensor::empty(shape, src.dtype());
  const size_t row = n > 0 ? src.nbytes() / n : 0;
  const uint8_t* s = static_cast<const uint8_t*>(src.impl()->storage->data()) +
                     src.impl()->offset * dtype_size(src.dtype());
  uint8_t* d = static_cast<uint8_t*>(out.impl()->storage->data());
  for (int64_t i = 0; i < b; ++i) std::memcpy(d + i * row, s + rows[i] * row, row);
  return out;
}

bool DataLoader::next(Batch& out) {
  if (epoch_ < 0) start_epoch();
  int64_t left = n_ - cursor_;
  if (left <= 0 || (drop_last_ && left < batch_size_)) return false;
  int64_t b = std::min(batch_size_, left);
  const int64_t first = b * shard_ / shards_, last = b * (shard_ + 1) / shards_;
  const int64_t* rows = order_.data() + cursor_ + first;
  // Fresh tensors (cheap: the CPU allocator caches blocks), so a batch the caller still
  // holds is never overwritten by the next one.
  out.x = gather(data_.images, rows, last - first);
  out.y = gather(data_.labels, rows, last - first);
  out.total = b;
  out.first = first;
  cursor_ += b;
  return true;
}

}  // namespace sprig::data
