#pragma once
// sprig's CUDA emulator (see cuda_runtime.h): the part of NCCL sprig uses. It stands in over
// MPI's world communicator, which the process has started (dist::Comm::world()): device memory
// is host memory here and the emulator runs each call when it is made, so summing with
// MPI_Allreduce at the call is what NCCL would have queued on the stream. Without MPI (or
// without a launcher) it is a group of one. The names and values follow NCCL 2's nccl.h.
#include "cuda_runtime.h"

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
} ncclResult_t;
typedef struct {
  char internal[128];
} ncclUniqueId;
struct ncclComm;
typedef ncclComm* ncclComm_t;
typedef enum { ncclFloat32 = 7 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;

const char* ncclGetErrorString(ncclResult_t r);
ncclResult_t ncclGetUniqueId(ncclUniqueId* id);
// nranks and rank must be MPI's world size and rank.
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
