#pragma once
// Data-parallel training over the ranks of a dist::Comm (mpirun -np N sprig train ...): every
// rank holds the same model and runs forward and backward on its shard of each global batch;
// GradientReducer sums the shards' gradients as backward produces them, so that every rank
// steps with the gradient of the whole batch and the replicas stay identical.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/comm.h"
#include "dist/device_comm.h"
#include "nn/model.h"
#include "nn/optim.h"

namespace sprig::train {

class GradientReducer {
 public:
  // Gradients travel in buckets of about bucket_bytes, filled in reverse parameter order (the
  // order in which backward finishes a chain of layers); a bucket starts its non-blocking
  // all-reduce as soon as it and every bucket before it are complete, so the reduction of the
  // last layers overlaps the backward of the first. Buckets start in the same order on every
  // rank, which MPI requires and which makes a run reproducible for a fixed number of ranks.
  // Gradients on a GPU are summed there through NCCL where the build has it (dist::DeviceComm:
  // device buckets, no trip through the host; on sprig's one stream the sums queue between
  // backward's kernels instead of overlapping them), else through host buckets and MPI.
  static constexpr int64_t kDefaultBucketBytes = 256 << 10;
  GradientReducer(const dist::Comm& comm, std::vector<nn::ParameterPtr> params,
                  int64_t bucket_bytes = kDefaultBucketBytes);
  ~GradientReducer();

  // Back-propagates `loss`, this rank's share of the global batch's mean loss (its shard's mean
  // x n_r / b, so that its gradients, and the dy every layer sees, are those of the whole batch
  // restricted to the shard), and returns once every parameter's gradient is the sum over the
  // ranks: the whole batch's mean gradient.
  void backward(const Tensor& loss);

  int buckets() const { return int(buckets_.size()); }
  // True when the sums run on the GPU (NCCL), false when they go through the host (MPI).
  bool on_device() const { return device_comm_ != nullptr; }

 private:
  struct Bucket {
    std::vector<int> params;      // indices into params_
    std::vector<int64_t> offset;  // where each one starts in values
    std::vector<float> values;    // (sum of numel) the bucket's gradients, flattened (host)
    Tensor device_values;         // (sum of numel) the same on the parameters' GPU (NCCL)
    int ready = 0;                // gradients copied in this step
    dist::Request request;
  };
  void on_ready(const TensorImpl* leaf);
  void start_ready_buckets();
  float* slot(int param);  // where parameter `param`'s gradient sits in its bucket

  const dist::Comm& comm_;
  std::unique_ptr<dist::DeviceComm> device_comm_;  // null: host buckets and MPI
  std::vector<nn::ParameterPtr> params_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;             // per parameter
  std::vector<int> slot_of_;               // per parameter: its index within its bucket
  std::vector<const TensorImpl*> leaves_;  // per parameter: its value's TensorImpl
  std::vector<bool> copied_;               // per parameter, this step
  int next_bucket_ = 0;
};

// Copies rank root's parameters, masks, optimizer state and step count, and buffers to every
// rank, after checking that every rank holds a model of the same structure.
void broadcast_model(const dist::Comm& comm, nn::Model& model, nn::Optimizer* opt, int root = 0);
// Copies rank 0's buffers (BatchNorm running statistics: each rank's follow its own shards)
// to every rank, as PyTorch's DistributedDataParallel does before evaluation.
void broadcast_buffers(const dist::Comm& comm, nn::Model& model);

// A hash of each parameter, mask, optimizer state buffer and buffer of the model, by name
// ("0.weight", "0.weight.mask", "0.weight.exp_avg", "1.running_mean"), and of the step count.
std::vector<std::pair<std::string, uint64_t>> replica_digests(const nn::Model& model,
                                                              const nn::Optimizer* opt);
// Compares every rank's digests with rank 0's; throws sprig::Error on every rank naming the
// first tensor that differs, the ranks it differs on and `when` (e.g. "after epoch 3").
void check_replicas(const dist::Comm& comm, const nn::Model& model, const nn::Optimizer* opt,
                    const std::string& when);

}  // namespace sprig::train
