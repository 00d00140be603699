// Devices, errors, the stream and handles, and the caching device allocator.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/runtime.cuh"

namespace sprig::cuda {

namespace detail {

static std::string where(const char* file, int line) {
  std::string f = file;
  size_t k = f.find("kernels/cuda/");
  return " (" + (k == std::string::npos ? f : f.substr(k)) + ":" + std::to_string(line) + ")";
}

void throw_cuda(cudaError_t err, const char* call, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw Error(std::string(call) + " failed: " + cudaGetErrorName(err) + ": " +
              cudaGetErrorString(err) + where(file, line));
}

void throw_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
  throw Error(std::string(call) + " failed: " + cublasGetStatusName(st) + ": " +
              cublasGetStatusString(st) + where(file, line));
}

void throw_cusparse(cusparseStatus_t st, const char* call, const char* file, int line) {
  throw Error(std::string(call) + " failed: " + cusparseGetErrorName(st) + ": " +
              cusparseGetErrorString(st) + where(file, line));
}

void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(std::string("launch of CUDA kernel ") + kernel + " failed: " +
                cudaGetErrorName(err) + ": " + cudaGetErrorString(err) + where(file, line));
}

// Per-device state, created on first use of the device.
struct DeviceState {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cusparseHandle_t cusparse = nullptr;
};
static std::mutex g_mu;
static std::map<int, DeviceState>& states() {
  static auto* s = new std::map<int, DeviceState>();  // leaked: outlives static tensors
  return *s;
}
static thread_local int t_device = -1;

static int current_device() {
  if (t_device < 0) use_device(0);
  return t_device;
}

static DeviceState& state() {
  const int dev = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceState& s = states()[dev];
  if (!s.stream) {
    SPRIG_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    SPRIG_CUBLAS_CHECK(cublasCreate(&s.cublas));
    SPRIG_CUBLAS_CHECK(cublasSetStream(s.cublas, s.stream));
    // Plain FP32 products, as the CPU path computes (no TF32 rounding of the inputs).
    SPRIG_CUBLAS_CHECK(cublasSetMathMode(s.cublas, CUBLAS_DEFAULT_MATH));
    SPRIG_CUSPARSE_CHECK(cusparseCreate(&s.cusparse));
    SPRIG_CUSPARSE_CHECK(cusparseSetStream(s.cusparse, s.stream));
  }
  return s;
}

cudaStream_t stream() {
  return state().stream;
}
cublasHandle_t cublas() {
  return state().cublas;
}
cusparseHandle_t cusparse() {
  return state().cusparse;
}

}  // namespace detail

using namespace detail;

int device_count(std::string* why) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) {
      *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
      if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice)
        *why += " (no NVIDIA GPU with a working driver on this machine)";
    }
    cudaGetLastError();
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device found";
  return n;
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  SPRIG_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ")";
}

void use_device(int index) {
  if (index == t_device) return;
  std::string why;
  const int n = device_count(&why);
  if (n == 0) throw Error("CUDA is not available: " + why);
  if (index < 0 || index >= n)
    throw Error("CUDA device " + std::to_string(index) + " does not exist (this machine has " +
                std::to_string(n) + ")");
  SPRIG_CUDA_CHECK(cudaSetDevice(index));
  t_device = index;
}

// ---- caching allocator ---------------------------------------------------------------------
namespace {
struct Cache {
  std::mutex mu;
  std::unordered_multimap<size_t, void*> free_blocks[64];  // per device index
  DeviceAllocatorStats stats;
};
Cache& cache() {
  static Cache* c = new Cache();  // leaked on purpose: outlives static tensors
  return *c;
}
// Small sizes round to 512 bytes, larger ones to 1/8 of their power of two (at most 12.5%
// waste), so slightly different sizes (batch remainders) share blocks.
size_t round_size(size_t bytes) {
  if (bytes <= 512) return 512;
  size_t p = 1;
  while (p < bytes) p <<= 1;
  size_t step = p >= 8 * 512 ? p / 8 : 512;
  return (bytes + step - 1) / step * step;
}
// Tells the CPU emulator (kernels/cuda/emulator, -DSPRIG_CUDA=EMULATE) how many bytes of block p
// are in use (0: back in the cache), so that it reports accesses past them; a no-op otherwise.
void note_use(void* p, size_t bytes) {
#ifdef SPRIG_CUDA_EMULATOR
  ::sprig_emu::note_device_use(p, bytes);
#else
  (void)p;
  (void)bytes;
#endif
}
int device_slot() {
  const int d = current_device();
  if (d >= 64) throw Error("sprig supports CUDA devices 0-63");
  return d;
}
}  // namespace

void* device_alloc(size_t bytes) {
  const size_t rounded = round_size(bytes);
  const int dev = device_slot();
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks[dev].find(rounded);
    if (it != c.free_blocks[dev].end()) {
      void* p = it->second;
      c.free_blocks[dev].erase(it);
      ++c.stats.reuses;
      c.stats.cached_bytes -= int64_t(rounded);
      c.stats.in_use_bytes += int64_t(rounded);
      note_use(p, bytes);
      return p;
    }
  }
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, rounded);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    empty_cache();
    err = cudaMalloc(&p, rounded);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error("out of GPU memory allocating " + std::to_string(bytes) +
                " bytes on cuda:" + std::to_string(dev) + " (cudaMalloc)");
  }
  SPRIG_CUDA_CHECK(err);
  std::lock_guard<std::mutex> lock(c.mu);
  ++c.stats.system_allocs;
  c.stats.in_use_bytes += int64_t(rounded);
  note_use(p, bytes);
  return p;
}

void device_free(void* p, size_t bytes) {
  if (!p) return;
  const size_t rounded = round_size(bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  note_use(p, 0);
  c.free_blocks[current_device()].emplace(rounded, p);
  c.stats.cached_bytes += int64_t(rounded);
  c.stats.in_use_bytes -= int64_t(rounded);
}

void empty_cache() {
  if (t_device < 0) return;  // nothing was ever allocated on this thread's device
  // Queued kernels may still read blocks that were freed after they were launched.
  SPRIG_CUDA_CHECK(cudaStreamSynchronize(stream()));
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& kv : c.free_blocks[t_device]) {
    cudaFree(kv.second);
    c.stats.cached_bytes -= int64_t(kv.first);
  }
  c.free_blocks[t_device].clear();
}

DeviceAllocatorStats device_allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

// ---- copies ----------------------------------------------------------------------------------
void copy_to_host(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  SPRIG_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  SPRIG_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

// ---- pinned staging for host-to-device copies ----------------------------------------------
// A copy from pageable memory may wait for the whole stream before it starts, which would
// make every training step wait for the previous one. So batch-sized copies go through
// page-locked buffers: the host copies into a free one and queues the DMA; an event recorded
// after the DMA says when the buffer is free again.
namespace {
constexpr size_t kMaxStaged = size_t(16) << 20;  // larger copies (whole models) go direct
constexpr size_t kMaxStagingBuffers = 8;
struct StagingBuffer {
  void* host = nullptr;
  size_t bytes = 0;
  cudaEvent_t free_again = nullptr;  // recorded after the last copy out of it
};
std::mutex g_staging_mu;
std::map<int, std::vector<StagingBuffer>>& staging_pools() {
  static auto* pools = new std::map<int, std::vector<StagingBuffer>>();  // leaked, as states()
  return *pools;
}

// A buffer of at least `bytes` whose last copy has finished (waiting for one when all are
// busy). Call with g_staging_mu held.
StagingBuffer& staging_buffer(size_t bytes) {
  std::vector<StagingBuffer>& pool = staging_pools()[current_device()];
  for (StagingBuffer& b : pool)
    if (b.bytes >= bytes && cudaEventQuery(b.free_again) == cudaSuccess) return b;
  if (pool.size() < kMaxStagingBuffers) {
    StagingBuffer b;
    b.bytes = std::max(bytes, size_t(1) << 20);
    SPRIG_CUDA_CHECK(cudaMallocHost(&b.host, b.bytes));
    SPRIG_CUDA_CHECK(cudaEventCreateWithFlags(&b.free_again, cudaEventDisableTiming));
    pool.push_back(b);
    return pool.back();
  }
  // All busy or too small: wait for the first, and grow it if needed.
  StagingBuffer& b = pool.front();
  SPRIG_CUDA_CHECK(cudaEventSynchronize(b.free_again));
  if (b.bytes < bytes) {
    SPRIG_CUDA_CHECK(cudaFreeHost(b.host));
    b.host = nullptr;
    SPRIG_CUDA_CHECK(cudaMallocHost(&b.host, bytes));
    b.bytes = bytes;
  }
  return b;
}
}  // namespace

void copy_from_host(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  if (bytes > kMaxStaged) {
    // The call returns once the source has been staged, so the caller may reuse it at once.
    SPRIG_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream()));
    return;
  }
  std::lock_guard<std::mutex> lock(g_staging_mu);
  StagingBuffer& b = staging_buffer(bytes);
  std::memcpy(b.host, host_src, bytes);
  SPRIG_CUDA_CHECK(cudaMemcpyAsync(dst, b.host, bytes, cudaMemcpyHostToDevice, stream()));
  SPRIG_CUDA_CHECK(cudaEventRecord(b.free_again, stream()));
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  SPRIG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void zero(void* p, size_t bytes) {
  if (bytes == 0) return;
  SPRIG_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream()));
}

void synchronize() {
  SPRIG_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

}  // namespace sprig::cuda
