// Self-test of the CUDA emulator (built and run only with -DSPRIG_CUDA=EMULATE, `ctest -L cuda`):
// warp operations give CUDA's results, and each kind of bug it is meant to catch is reported as
// a launch error. Plain asserts: this is the emulator's own check, not a sprig suite.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/asan.h"

#define EXPECT(cond)                                                          \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                           \
    }                                                                         \
  } while (0)

// out (64 * 6): per lane, the results of each shuffle kind and a ballot.
__global__ void warp_ops_kernel(int* out) {
  const int lane = threadIdx.x % 32, i = threadIdx.x;
  out[i * 6 + 0] = __shfl_sync(0xffffffffu, i, 3);          // lane 3 of its warp
  out[i * 6 + 1] = __shfl_xor_sync(0xffffffffu, i, 1);      // neighbour
  out[i * 6 + 2] = __shfl_down_sync(0xffffffffu, i, 4, 8);  // within groups of 8
  out[i * 6 + 3] = __shfl_up_sync(0xffffffffu, i, 2);
  out[i * 6 + 4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
  __syncthreads();
  out[i * 6 + 5] = __shfl_sync(0xffffffffu, i, lane + 1, 16);  // wraps inside 16
}

// Sum of 256 values through shared memory; `barrier` false drops the first __syncthreads.
__global__ void block_sum_kernel(const float* x, float* out, bool barrier) {
  __shared__ float s[256];
  s[threadIdx.x] = x[threadIdx.x];
  if (barrier) __syncthreads();
  for (unsigned h = 128; h > 0; h >>= 1) {
    if (threadIdx.x < h) s[threadIdx.x] += s[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    __syncthreads();
}

__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x < 16)
    out[0] = __shfl_sync(0xffffffffu, 1, 0);  // lanes 16-31 never come
  else
    __syncthreads();
}

__global__ void write_kernel(float* p, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) p[i] = 1.0f;
}

int main() {
  int* out = nullptr;
  EXPECT(cudaMalloc((void**)&out, 64 * 6 * sizeof(int)) == cudaSuccess);
  warp_ops_kernel<<<1, 64>>>(out);
  EXPECT(cudaGetLastError() == cudaSuccess);
  for (int i = 0; i < 64; ++i) {
    const int lane = i % 32, base = i - lane;
    unsigned ballot = 0;
    for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
    EXPECT(out[i * 6 + 0] == base + 3);
    EXPECT(out[i * 6 + 1] == (i ^ 1));
    EXPECT(out[i * 6 + 2] == (lane % 8 + 4 < 8 ? i + 4 : i));
    EXPECT(out[i * 6 + 3] == (lane < 2 ? i : i - 2));
    EXPECT(out[i * 6 + 4] == (int)ballot);
    EXPECT(out[i * 6 + 5] == base + (lane & ~15) + ((lane + 1) & 15));
  }

  float *x = nullptr, *sum = nullptr;
  EXPECT(cudaMalloc((void**)&x, 256 * sizeof(float)) == cudaSuccess);
  EXPECT(cudaMalloc((void**)&sum, 2 * sizeof(float)) == cudaSuccess);
  std::vector<float> ones(256, 1.0f);
  EXPECT(cudaMemcpy(x, ones.data(), 256 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  block_sum_kernel<<<2, 256>>>(x, sum, true);
  EXPECT(cudaGetLastError() == cudaSuccess && sum[0] == 256.0f && sum[1] == 256.0f);
  // Without the barrier, a thread adds a slot another has not written yet (NaN bytes), in one
  // of the two blocks whichever order they run in.
  block_sum_kernel<<<2, 256>>>(x, sum, false);
  EXPECT(sum[0] != 256.0f || sum[1] != 256.0f);

  std::fprintf(stderr, "-- the emulator reports below are expected --\n");
  divergent_barrier_kernel<<<1, 32>>>();
  EXPECT(cudaGetLastError() == cudaErrorLaunchFailure);
  deadlock_kernel<<<1, 32>>>(out);
  EXPECT(cudaGetLastError() == cudaErrorLaunchFailure);
#if !SPRIG_ASAN                    // ASan stops the process at such a write, in the kernel
  write_kernel<<<1, 32>>>(sum, 3);  // one float past the end
  EXPECT(cudaGetLastError() == cudaErrorIllegalAddress);
#endif
  write_kernel<<<1, 32>>>(ones.data(), 3);  // a host pointer
  EXPECT(cudaGetLastError() == cudaErrorIllegalAddress);
  write_kernel<<<1, 2048>>>(x, 3);  // too many threads per block
  EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
  EXPECT(cudaMemcpy(ones.data(), x, 512 * sizeof(float), cudaMemcpyDeviceToHost) ==
         cudaErrorInvalidValue);  // past the end
  EXPECT(cudaGetLastError() == cudaErrorInvalidValue);
#if !SPRIG_ASAN
  sprig_emu::note_device_use(x, 0);  // as the caching allocator does when it frees a block
  write_kernel<<<1, 32>>>(x, 3);
  EXPECT(cudaGetLastError() == cudaErrorIllegalAddress);
#endif
  for (void* p : {(void*)out, (void*)x, (void*)sum}) EXPECT(cudaFree(p) == cudaSuccess);
  std::printf("CUDA emulator self-test passed\n");
  return 0;
}
