#include "train/data_parallel.h"

#include <cstring>

#include "engine/autograd.h"
#include "engine/backend.h"

namespace sprig::train {

GradientReducer::GradientReducer(const dist::Comm& comm, std::vector<nn::ParameterPtr> params,
                                 int64_t bucket_bytes)
    : comm_(comm), params_(std::move(params)) {
  const int n = int(params_.size());
  bucket_of_.assign(size_t(n), -1);
  slot_of_.assign(size_t(n), -1);
  copied_.assign(size_t(n), false);
  for (auto& p : params_) leaves_.push_back(p->value.impl());
  int64_t bytes = 0;  // in the bucket being filled
  for (int i = n - 1; i >= 0; --i) {
    const int64_t size = params_[size_t(i)]->numel();
    if (buckets_.empty() || (bytes > 0 && bytes + size * 4 > bucket_bytes)) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[size_t(i)] = int(buckets_.size()) - 1;
    slot_of_[size_t(i)] = int(b.params.size());
    b.params.push_back(i);
    b.offset.push_back(int64_t(b.values.size()));
    b.values.resize(b.values.size() + size_t(size));
    bytes += size * 4;
  }
  // Every rank decides the same way (the same build, the same --device), so either every rank
  // joins the NCCL communicator or none does.
  const Device dev = params_.empty() ? Device::cpu() : params_.front()->device();
  if (comm_.size() > 1 && !dev.is_cpu() && dist::DeviceComm::available()) {
    device_comm_ = std::make_unique<dist::DeviceComm>(comm_);
    for (Bucket& b : buckets_) {
      b.device_values = Tensor::zeros({int64_t(b.values.size())}, DType::F32, dev);
      b.values = {};
    }
  }
}

GradientReducer::~GradientReducer() = default;

float* GradientReducer::slot(int param) {
  Bucket& b = buckets_[size_t(bucket_of_[size_t(param)])];
  const int64_t offset = b.offset[size_t(slot_of_[size_t(param)])];
  return (on_device() ? b.device_values.ptr() : b.values.data()) + offset;
}

void GradientReducer::backward(const Tensor& loss) {
  for (Bucket& b : buckets_) b.ready = 0;
  copied_.assign(copied_.size(), false);
  next_bucket_ = 0;
  {
    GradReadyHook hook([this](const TensorImpl* leaf) { on_ready(leaf); });
    loss.backward();
  }
  // A parameter that got no gradient this step (unused by the graph) goes in as zeros: every
  // rank runs the same graph, so every rank leaves it out the same way.
  for (size_t i = 0; i < params_.size(); ++i) {
    if (copied_[i]) continue;
    const size_t bytes = size_t(params_[i]->numel()) * sizeof(float);
    if (on_device())
      backend_for(params_[i]->device()).zero(slot(int(i)), bytes);
    else
      std::memset(slot(int(i)), 0, bytes);
    ++buckets_[size_t(bucket_of_[i])].ready;
  }
  start_ready_buckets();
  for (Bucket& b : buckets_) b.request.wait();
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i]->grad();
    if (!copied_[i] || !g.defined()) continue;
    const size_t bytes = size_t(g.numel()) * sizeof(float);
    if (on_device())
      backend_for(g.device()).copy(g.ptr(), slot(int(i)), bytes);  // queued after the sums
    else
      backend_for(g.device()).copy_from_host(g.ptr(), slot(int(i)), bytes);
  }
}

void GradientReducer::on_ready(const TensorImpl* leaf) {
  // Leaves that are not parameters (inputs with requires_grad) are none of ours.
  size_t i = 0;
  while (i < leaves_.size() && leaves_[i] != leaf) ++i;
  if (i == leaves_.size() || copied_[i]) return;
  const Tensor g = params_[i]->grad();
  const size_t bytes = size_t(g.numel()) * sizeof(float);
  if (on_device())
    backend_for(g.device()).copy(slot(int(i)), g.ptr(), bytes);
  else
    backend_for(g.device()).copy_to_host(slot(int(i)), g.ptr(), bytes);
  copied_[i] = true;
  ++buckets_[size_t(bucket_of_[i])].ready;
  start_ready_buckets();
  // MPI progresses a non-blocking collective only inside MPI calls: poke the ones in flight.
  for (int k = 0; k < next_bucket_; ++k) buckets_[size_t(k)].request.test();
}

void GradientReducer::start_ready_buckets() {
  while (next_bucket_ < int(buckets_.size())) {
    Bucket& b = buckets_[size_t(next_bucket_)];
    if (b.ready < int(b.params.size())) return;
    if (on_device())
      device_comm_->allreduce_sum(b.device_values.ptr(), b.device_values.numel());
    else
      b.request = comm_.iallreduce_sum(b.values.data(), int64_t(b.values.size()));
    ++next_bucket_;
  }
}

namespace {
// Every tensor that must be equal on every rank, by name.
std::vector<std::pair<std::string, Tensor>> replicated_tensors(const nn::Model& model,
                                                               const nn::Optimizer* opt) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, p] : model.named_parameters()) {
    out.push_back({name, p->value});
    if (p->mask) out.push_back({name + ".mask", p->mask->keep});
    if (opt)
      for (auto& [key, t] : p->state) out.push_back({name + "." + key, t});
  }
  for (auto& [name, b] : model.named_buffers()) out.push_back({name, *b});
  return out;
}

// The names, shapes and types of replicated_tensors, which must agree before bytes are copied.
std::string structure_of(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::string s;
  for (auto& [name, t] : tensors)
    s += name + " " + to_string(t.shape()) + " " + dtype_name(t.dtype()) + "\n";
  return s;
}

// The first byte of t's values, whatever their type (t on the CPU).
uint8_t* bytes_of(const Tensor& t) {
  return static_cast<uint8_t*>(t.impl()->storage->data()) +
         t.impl()->offset * dtype_size(t.dtype());
}

uint64_t fnv1a(const void* data, size_t bytes, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

void broadcast_tensor(const dist::Comm& comm, Tensor& t, int root) {
  if (t.device().is_cpu()) {
    comm.broadcast(bytes_of(t), int64_t(t.nbytes()), root);
    return;
  }
  Tensor host = t.to(Device::cpu());
  comm.broadcast(bytes_of(host), int64_t(host.nbytes()), root);
  t.copy_(host);
}

void check_same_structure(const dist::Comm& comm, const std::string& mine, const char* what,
                          int root) {
  const std::vector<std::string> all = comm.allgather(mine);
  for (int r = 0; r < comm.size(); ++r)
    SPRIG_CHECK(all[size_t(r)] == all[size_t(root)], "data-parallel run: rank ", r, " holds ", what,
                " that differ from rank ", root,
                "'s (every rank must build the same model from the same flags and files)");
}
}  // namespace

void broadcast_model(const dist::Comm& comm, nn::Model& model, nn::Optimizer* opt, int root) {
  if (comm.size() == 1) return;
  auto tensors = replicated_tensors(model, opt);
  check_same_structure(comm, structure_of(tensors), "parameters, masks, optimizer state or buffers",
                       root);
  for (auto& [name, t] : tensors) broadcast_tensor(comm, t, root);
  if (opt) comm.broadcast_value(opt->steps, root);
}

void broadcast_buffers(const dist::Comm& comm, nn::Model& model) {
  if (comm.size() == 1) return;
  for (auto& [name, b] : model.named_buffers()) broadcast_tensor(comm, *b, 0);
}

std::vector<std::pair<std::string, uint64_t>> replica_digests(const nn::Model& model,
                                                              const nn::Optimizer* opt) {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (auto& [name, t] : replicated_tensors(model, opt)) {
    const Tensor host = t.to(Device::cpu());
    out.push_back({name, fnv1a(bytes_of(host), host.nbytes())});
  }
  if (opt) out.push_back({"optimizer steps", fnv1a(&opt->steps, sizeof(opt->steps))});
  return out;
}

void check_replicas(const dist::Comm& comm, const nn::Model& model, const nn::Optimizer* opt,
                    const std::string& when) {
  if (comm.size() == 1) return;
  const auto digests = replica_digests(model, opt);
  std::string mine;
  for (auto& [name, h] : digests) mine += std::to_string(h) + "\n";
  const std::vector<std::string> all = comm.allgather(mine);
  for (size_t k = 0; k < digests.size(); ++k) {
    std::string ranks;
    for (int r = 1; r < comm.size(); ++r) {
      // Line k of each rank's digests (the structure is the same on every rank).
      auto line = [&](const std::string& s) {
        size_t pos = 0;
        for (size_t j = 0; j < k; ++j) pos = s.find('\n', pos) + 1;
        return s.substr(pos, s.find('\n', pos) - pos);
      };
      if (line(all[size_t(r)]) != line(all[0]))
        ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    }
    SPRIG_CHECK(ranks.empty(), "replicas diverged ", when, ": '", digests[k].first, "' on rank(s) ",
                ranks, " differs from rank 0's (--check-replicas)");
  }
}

}  // namespace sprig::train
