#include "kernels/cuda/collective.cuh"
#include "kernels/cuda/common.cuh"

#if SPRIG_HAVE_NCCL
#include <nccl.h>

#include <cstring>
#endif

namespace sprig::cuda {

#if SPRIG_HAVE_NCCL
namespace {
void check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) throw Error(std::string(call) + " failed: " + ncclGetErrorString(r));
}
}  // namespace

bool nccl_built() {
  return true;
}

void nccl_unique_id(char* id) {
  static_assert(sizeof(ncclUniqueId) == kNcclIdBytes, "NCCL's unique id changed size");
  ncclUniqueId u;
  check(ncclGetUniqueId(&u), "ncclGetUniqueId");
  std::memcpy(id, &u, sizeof u);
}

void* nccl_init(const char* id, int ranks, int rank) {
  ncclUniqueId u;
  std::memcpy(&u, id, sizeof u);
  ncclComm_t comm = nullptr;
  check(ncclCommInitRank(&comm, ranks, u, rank), "ncclCommInitRank");
  return comm;
}

void nccl_destroy(void* comm) {
  if (comm) ncclCommDestroy(static_cast<ncclComm_t>(comm));
}

void nccl_allreduce_sum(void* comm, float* data, int64_t n) {
  check(ncclAllReduce(data, data, size_t(n), ncclFloat32, ncclSum, static_cast<ncclComm_t>(comm),
                      detail::stream()),
        "ncclAllReduce");
}

#else
namespace {
[[noreturn]] void no_nccl() {
  throw Error(
      "this build has no NCCL: gradients on GPUs cannot be summed across processes (rebuild "
      "with CUDA's NCCL, or the nvidia-nccl wheel, where CMake finds it)");
}
}  // namespace

bool nccl_built() {
  return false;
}
void nccl_unique_id(char*) {
  no_nccl();
}
void* nccl_init(const char*, int, int) {
  no_nccl();
}
void nccl_destroy(void*) {}
void nccl_allreduce_sum(void*, float*, int64_t) {
  no_nccl();
}
#endif

}  // namespace sprig::cuda
