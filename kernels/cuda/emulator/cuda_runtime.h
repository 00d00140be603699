#pragma once
// sprig's CUDA emulator: stands in for the CUDA runtime when the build is configured with
// -DSPRIG_CUDA=EMULATE, so kernels/cuda/*.cu (rewritten by translate.py, launch syntax only) run
// on the CPU and the CUDA suites test their logic without a GPU. Blocks run one after another;
// the threads of a block are fibers that switch at __syncthreads and at warp operations
// (emulator.cpp). Only what sprig's kernels use is here. Device memory is host memory, but the
// emulator remembers every allocation: it checks copies, kernel pointer arguments and the bytes
// around each allocation (out-of-bounds writes), and fills new memory with NaN bytes.
#include <math.h>  // exp, log, isfinite, INFINITY... in the global namespace, as in device code

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>

// ---- qualifiers ------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// translate.py rewrites __shared__ arrays (so that each block starts with NaN bytes in them);
// anything it leaves is one static: the blocks of a launch run one at a time.
#define __shared__ static

// ---- vector types ----------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __align__(8) int2 {
  int x, y;
};
struct __align__(16) int4 {
  int x, y, z, w;
};
struct __align__(8) float2 {
  float x, y;
};
struct __align__(16) float4 {
  float x, y, z, w;
};
typedef unsigned int uint;
inline int2 make_int2(int x, int y) {
  return {x, y};
}
inline int4 make_int4(int x, int y, int z, int w) {
  return {x, y, z, w};
}
inline float2 make_float2(float x, float y) {
  return {x, y};
}
inline float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}

// The running thread's coordinates; the scheduler sets them before it resumes a thread.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ---- runtime API -----------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
struct CUstream_st;
struct CUevent_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
#define cudaStreamDefault 0x0
#define cudaStreamNonBlocking 0x1
#define cudaEventDefault 0x0
#define cudaEventDisableTiming 0x2
#define cudaHostAllocDefault 0x0

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
  int regsPerBlock, warpSize, maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3];
  int major, minor, multiProcessorCount, l2CacheSize, maxThreadsPerMultiProcessor;
  int clockRate, memoryClockRate, memoryBusWidth;
};

const char* cudaGetErrorName(cudaError_t err);
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
template <class F>
cudaError_t cudaFuncSetAttribute(F*, cudaFuncAttribute, int) {
  return cudaSuccess;
}

// ---- the emulator's side (emulator.cpp) --------------------------------------------------------
namespace sprig_emu {

enum class WarpOp { Sync, Shfl, Ballot };
// Every lane of `mask` that has not exited meets here (one warp operation). Shfl returns the
// value of lane src (all ones when src did not take part); Ballot returns the lanes whose value
// was nonzero; Sync returns 0.
uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int src, const char* what);
void block_barrier(const char* file, int line);
int lane_id();
// First use of a __shared__ array in a block: fill it with NaN bytes (gen: last block that did).
void fresh_shared(void* p, size_t bytes, unsigned long long& gen);
// Called by kernels/cuda/runtime.cu's caching allocator: the block at p serves `bytes` now, so
// the bytes past them count as out of bounds and the first ones are refilled with NaN bytes.
void note_device_use(void* p, size_t bytes);

// Launches: the checks before (configuration, pointer arguments) and the run itself.
bool launch_ok(const char* name, dim3 grid, dim3 block, size_t smem);
bool pointer_arg_ok(const char* name, int index, const void* p);
void run(const char* name, dim3 grid, dim3 block, size_t smem, void (*thread)(void*), void* ctx);

template <class T>
inline T exchange(WarpOp op, unsigned mask, T v, int src, const char* what) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp op on a value > 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(op, mask, bits, src, what);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

template <class T>
bool arg_ok(const char* name, int index, const T& v) {
  if constexpr (std::is_pointer_v<T>)
    return pointer_arg_ok(name, index, (const void*)v);
  else
    return true;
}

// `translate.py` turns kernel<<<grid, block, smem, stream>>>(args) into
// sprig_emu::launch("kernel", kernel, grid, block, smem, stream)(args).
template <class... P>
struct Launch {
  const char* name;
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;
  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    std::tuple<P...> args(std::forward<A>(a)...);  // converted once, as the launch does
    if (!launch_ok(name, grid, block, smem)) return;
    bool ok = true;
    int index = 0;
    std::apply([&](const auto&... v) { ((ok = arg_ok(name, index++, v) && ok), ...); }, args);
    if (!ok) return;
    struct Ctx {
      void (*kernel)(P...);
      const std::tuple<P...>* args;
    } ctx{kernel, &args};
    run(
        name, grid, block, smem,
        [](void* c) {
          Ctx* x = static_cast<Ctx*>(c);
          std::apply(x->kernel, *x->args);  // each thread gets its own copy of the parameters
        },
        &ctx);
  }
};
template <class... P>
Launch<P...> launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0,
                    cudaStream_t = nullptr) {
  return Launch<P...>{name, kernel, grid, block, smem};
}

}  // namespace sprig_emu

// ---- device functions --------------------------------------------------------------------------
#define __syncthreads() ::sprig_emu::block_barrier(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  sprig_emu::warp_exchange(sprig_emu::WarpOp::Sync, mask, 0, -1, "__syncwarp");
}
inline void __threadfence() {}
inline void __threadfence_block() {}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return (unsigned)sprig_emu::warp_exchange(sprig_emu::WarpOp::Ballot, mask, pred != 0, -1,
                                            "__ballot_sync");
}
inline int __any_sync(unsigned mask, int pred) {
  return __ballot_sync(mask, pred) != 0;
}
inline int __all_sync(unsigned mask, int pred) {
  return __ballot_sync(mask, pred) == __ballot_sync(mask, 1);
}
// Shuffles over segments of `width` lanes, with CUDA's rules for a source outside the segment.
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = sprig_emu::lane_id(), base = lane & ~(width - 1);
  return sprig_emu::exchange(sprig_emu::WarpOp::Shfl, mask, v, base + (src & (width - 1)),
                             "__shfl_sync");
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = sprig_emu::lane_id(), base = lane & ~(width - 1);
  int src = lane ^ lane_mask;
  if (src >= base + width) src = lane;
  return sprig_emu::exchange(sprig_emu::WarpOp::Shfl, mask, v, src, "__shfl_xor_sync");
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = sprig_emu::lane_id();
  const int src = (lane & (width - 1)) + int(delta) >= width ? lane : lane + int(delta);
  return sprig_emu::exchange(sprig_emu::WarpOp::Shfl, mask, v, src, "__shfl_down_sync");
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = sprig_emu::lane_id();
  const int src = (lane & (width - 1)) < int(delta) ? lane : lane - int(delta);
  return sprig_emu::exchange(sprig_emu::WarpOp::Shfl, mask, v, src, "__shfl_up_sync");
}

// The fibers of a launch never run at the same time, so a plain update is atomic.
template <class T>
inline T atomicAdd(T* p, T v) {
  T old = *p;
  *p = old + v;
  return old;
}
template <class T>
inline T atomicSub(T* p, T v) {
  T old = *p;
  *p = old - v;
  return old;
}
template <class T>
inline T atomicOr(T* p, T v) {
  T old = *p;
  *p = old | v;
  return old;
}
template <class T>
inline T atomicAnd(T* p, T v) {
  T old = *p;
  *p = old & v;
  return old;
}
template <class T>
inline T atomicMax(T* p, T v) {
  T old = *p;
  *p = old < v ? v : old;
  return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
  T old = *p;
  *p = v < old ? v : old;
  return old;
}
template <class T>
inline T atomicExch(T* p, T v) {
  T old = *p;
  *p = v;
  return old;
}
template <class T>
inline T atomicCAS(T* p, T compare, T v) {
  T old = *p;
  if (old == compare) *p = v;
  return old;
}

template <class T>
inline T __ldg(const T* p) {
  return *p;
}
inline float __fmul_rn(float a, float b) {
  return a * b;
}
inline float __fadd_rn(float a, float b) {
  return a + b;
}
inline float __fsub_rn(float a, float b) {
  return a - b;
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
inline float __fmaf_rn(float a, float b, float c) {
  return fmaf(a, b, c);
}
inline double __dmul_rn(double a, double b) {
  return a * b;
}
inline double __dadd_rn(double a, double b) {
  return a + b;
}
inline float __expf(float x) {
  return expf(x);
}
inline float __logf(float x) {
  return logf(x);
}
inline float rsqrtf(float x) {
  return 1.0f / sqrtf(x);
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  return (unsigned)__float_as_int(f);
}
inline float __uint_as_float(unsigned u) {
  return __int_as_float((int)u);
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
  return __builtin_popcountll(x);
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz((unsigned)x);
}

// min/max as CUDA's headers give them to device code, for the argument types sprig uses.
#define SPRIG_EMU_MINMAX(T) \
  inline T min(T a, T b) {  \
    return b < a ? b : a;   \
  }                         \
  inline T max(T a, T b) {  \
    return a < b ? b : a;   \
  }
SPRIG_EMU_MINMAX(int)
SPRIG_EMU_MINMAX(unsigned)
SPRIG_EMU_MINMAX(long)
SPRIG_EMU_MINMAX(unsigned long)
SPRIG_EMU_MINMAX(long long)
SPRIG_EMU_MINMAX(unsigned long long)
#undef SPRIG_EMU_MINMAX
inline float min(float a, float b) {
  return fminf(a, b);
}
inline float max(float a, float b) {
  return fmaxf(a, b);
}
inline double min(double a, double b) {
  return fmin(a, b);
}
inline double max(double a, double b) {
  return fmax(a, b);
}
