#pragma once
// Entry points of the collective family: sums of device buffers across processes through NCCL,
// GPU to GPU (NVLink, PCIe, InfiniBand), queued on sprig's stream like any kernel. The processes
// find each other through the caller (dist/ broadcasts NCCL's id over MPI). In a build without
// NCCL (SPRIG_HAVE_NCCL unset) each entry point but nccl_built throws sprig::Error saying so.
#include <cstdint>

namespace sprig::cuda {

// True when this build can use NCCL (a CUDA build that found it, or the emulator's stand-in).
bool nccl_built();

// NCCL's unique id: rank 0 makes one, every rank joins with the same bytes.
constexpr int kNcclIdBytes = 128;
void nccl_unique_id(char* id);  // id: (kNcclIdBytes)

// Joins communicator `id` of `ranks` processes as `rank` with the current device; returns when
// every rank has joined. The handle is opaque; nccl_destroy frees it.
void* nccl_init(const char* id, int ranks, int rank);
void nccl_destroy(void* comm);

// data[i] = sum over the ranks of data[i], n floats on the current device, in place. Queued on
// sprig's stream without waiting; every rank must queue the same calls in the same order.
void nccl_allreduce_sum(void* comm, float* data, int64_t n);

}  // namespace sprig::cuda
