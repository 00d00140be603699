// The emulator's NCCL (nccl.h): MPI_Allreduce on the world communicator, checking the buffers
// as the emulator checks copies. Compiled only where the build has MPI.
#include "nccl.h"

#include <mpi.h>

#include <climits>
#include <cstring>
#include <string>

#include "internal.h"

using namespace sprig_emu;

struct ncclComm {
  int ranks = 1, rank = 0;
};

namespace {
// MPI_COMM_WORLD's size and rank, or a group of one where MPI was not started.
void world(int& ranks, int& rank) {
  int started = 0;
  MPI_Initialized(&started);
  ranks = 1;
  rank = 0;
  if (!started) return;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
}
}  // namespace

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclSystemError:
      return "unhandled system error";
    default:
      return "internal error";
  }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return ncclInvalidArgument;
  std::memset(id->internal, 0, sizeof id->internal);
  std::strcpy(id->internal, "sprig-emulated-nccl");
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  int ranks = 1, me = 0;
  world(ranks, me);
  if (!comm || std::strcmp(id.internal, "sprig-emulated-nccl") != 0) return ncclInvalidArgument;
  if (nranks != ranks || rank != me) {
    report("ncclCommInitRank: rank " + std::to_string(rank) + " of " + std::to_string(nranks) +
           ", but MPI's world is rank " + std::to_string(me) + " of " + std::to_string(ranks));
    return ncclInvalidUsage;
  }
  *comm = new ncclComm{nranks, rank};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t) {
  if (!comm || type != ncclFloat32 || op != ncclSum || count > size_t(INT_MAX))
    return ncclInvalidArgument;
  {
    Lock lock(g_mu);
    const size_t bytes = count * sizeof(float);
    if (!check_range("ncclAllReduce", "the send buffer", send, bytes, true) ||
        !check_range("ncclAllReduce", "the receive buffer", recv, bytes, true))
      return ncclInvalidArgument;
  }
  if (comm->ranks == 1) {
    if (send != recv) std::memmove(recv, send, count * sizeof(float));
    return ncclSuccess;
  }
  const int rc = MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, int(count), MPI_FLOAT,
                               MPI_SUM, MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? ncclSuccess : ncclSystemError;
}
