#pragma once
// Sums of GPU buffers across the ranks of a Comm through NCCL (kernels/cuda/collective.cuh), so
// that gradients living on GPUs go GPU to GPU and never through the host. NCCL's id travels
// over the Comm (MPI); each rank drives one GPU, its current CUDA device.
#include <cstdint>

#include "dist/comm.h"

namespace sprig::dist {

class DeviceComm {
 public:
  // True when this build has CUDA and NCCL (or the CUDA emulator's stand-in) and MPI.
  static bool available();
  // Collective over comm: rank 0 makes NCCL's id, comm broadcasts it, every rank joins with its
  // current CUDA device. Throws sprig::Error where !available(), or when NCCL fails (e.g. two
  // ranks on one GPU).
  explicit DeviceComm(const Comm& comm);
  ~DeviceComm();
  DeviceComm(const DeviceComm&) = delete;
  DeviceComm& operator=(const DeviceComm&) = delete;

  // data[i] = sum over the ranks of data[i]: n floats on the current device, in place, queued
  // on sprig's CUDA stream after the work already there (the caller does not wait). Every rank
  // must make the same calls in the same order.
  void allreduce_sum(float* device_data, int64_t n) const;

 private:
  void* handle_ = nullptr;  // ncclComm_t
};

}  // namespace sprig::dist
