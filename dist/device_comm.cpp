#include "dist/device_comm.h"

#include "kernels/error.h"
#ifdef SPRIG_HAVE_CUDA
#include "kernels/cuda/collective.cuh"
#endif

namespace sprig::dist {

#ifdef SPRIG_HAVE_CUDA
bool DeviceComm::available() {
  return mpi_built() && cuda::nccl_built();
}

DeviceComm::DeviceComm(const Comm& comm) {
  SPRIG_CHECK(available(), "summing GPU gradients across processes needs NCCL and MPI; this ",
              "build has ", mpi_built() ? "no NCCL" : "no MPI");
  char id[cuda::kNcclIdBytes] = {};
  if (comm.is_root()) cuda::nccl_unique_id(id);
  comm.broadcast(id, sizeof id);
  handle_ = cuda::nccl_init(id, comm.size(), comm.rank());
}

DeviceComm::~DeviceComm() {
  cuda::nccl_destroy(handle_);
}

void DeviceComm::allreduce_sum(float* device_data, int64_t n) const {
  cuda::nccl_allreduce_sum(handle_, device_data, n);
}

#else
bool DeviceComm::available() {
  return false;
}
DeviceComm::DeviceComm(const Comm&) {
  throw Error("summing GPU gradients across processes needs a CUDA build with NCCL");
}
DeviceComm::~DeviceComm() = default;
void DeviceComm::allreduce_sum(float*, int64_t) const {
  throw Error("summing GPU gradients across processes needs a CUDA build with NCCL");
}
#endif

}  // namespace sprig::dist
