// sprig's CUDA emulator (see cuda_runtime.h): device memory bookkeeping, the runtime API, the
// block scheduler (one fiber per thread), and reference cuBLAS / cuSPARSE products.
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "internal.h"
#include "kernels/asan.h"

#if SPRIG_ASAN
#include <sanitizer/asan_interface.h>  // the canary bytes are poisoned: ASan sees reads there too
#include <sanitizer/common_interface_defs.h>  // and is told about each switch of stacks
#endif
#if defined(__x86_64__)
#define SPRIG_EMU_ASM_SWITCH 1  // a few instructions instead of swapcontext's system call
#else
#include <ucontext.h>
#endif

struct CUstream_st {};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};

namespace sprig_emu {

std::recursive_mutex g_mu;

void report(const std::string& msg) {
  std::fprintf(stderr, "sprig CUDA emulator: %s\n", msg.c_str());
  if (std::getenv("SPRIG_EMU_ABORT")) std::abort();  // stop in a debugger at the first report
}

namespace {
cudaError_t g_last_error = cudaSuccess;

// ---- device memory ------------------------------------------------------------------------------
// Each allocation has canary bytes before it and after the bytes in use; a kernel or library
// call that changes them wrote out of bounds. `used` shrinks below `size` when the caching
// allocator hands out a block for fewer bytes, and is 0 while the block sits in its cache.
constexpr size_t kRedzone = 256, kChecked = 256;
// New memory is 0xFF bytes (a NaN float or double, -1 as an integer). The canaries are NaN too,
// but another one (0x7fffffff per 4 bytes: also INT_MAX), so a read just past the end spoils
// the result while a write of a poison value past it still shows.
constexpr unsigned char kPoison = 0xFF;
unsigned char canary(uintptr_t address) {
  return (address & 3) == 3 ? 0x7F : 0xFF;
}
void fill_canaries(uintptr_t from, size_t bytes) {
  std::memset(reinterpret_cast<void*>(from), 0xFF, bytes);
  for (uintptr_t a = from | 3; a < from + bytes; a += 4)
    *reinterpret_cast<unsigned char*>(a) = 0x7F;
}
struct Alloc {
  size_t size, used;
  bool device;  // else page-locked host memory (which device code may read too)
};
std::map<uintptr_t, Alloc> g_allocs;  // by the address handed out

size_t capacity(size_t size) {
  return (size + 255) / 256 * 256;
}

void poison(uintptr_t p, size_t bytes, bool on) {
#if SPRIG_ASAN
  if (on)
    ASAN_POISON_MEMORY_REGION(reinterpret_cast<void*>(p), bytes);
  else
    ASAN_UNPOISON_MEMORY_REGION(reinterpret_cast<void*>(p), bytes);
#else
  (void)p, (void)bytes, (void)on;
#endif
}

void arm(uintptr_t p, Alloc& a) {  // canaries around [p, p + used)
  const size_t tail = capacity(a.size) + 64 - a.used;
  poison(p - 64, 64 + a.used + tail, false);
  fill_canaries(p - 64, 64);
  fill_canaries(p + a.used, tail);
  poison(p - 64, 64, true);
  poison(p + a.used, tail, true);
}

// The first canary byte that changed (offset from p), or -1.
int64_t damaged(uintptr_t p, const Alloc& a) {
#if SPRIG_ASAN
  return -1;  // ASan stops at the access itself
#endif
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  for (int64_t i = -64; i < 0; ++i)
    if (b[i] != canary(p + i)) return i;
  const size_t end = std::min(a.used + kChecked, capacity(a.size) + 64);
  for (size_t i = a.used; i < end; ++i)
    if (b[i] != canary(p + i)) return int64_t(i);
  return -1;
}

}  // namespace

bool check_canaries(const char* after) {
  bool ok = true;
  for (auto& [p, a] : g_allocs) {
    const int64_t off = damaged(p, a);
    if (off < 0) continue;
    report(std::string(after) + " wrote out of bounds: byte " + std::to_string(off) +
           " of a device allocation whose " + std::to_string(a.used) + " bytes are in use" +
           (a.used == 0 ? " (a freed block)" : ""));
    arm(p, a);
    ok = false;
  }
  if (!ok) g_last_error = cudaErrorIllegalAddress;
  return ok;
}

namespace {
// The allocation holding p (device or page-locked), or null.
std::pair<const uintptr_t, Alloc>* find(const void* p) {
  auto it = g_allocs.upper_bound(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocs.begin()) return nullptr;
  --it;
  if (reinterpret_cast<uintptr_t>(p) >= it->first + capacity(it->second.size) + kRedzone)
    return nullptr;
  return &*it;
}

// [p, p + bytes) lies in the bytes in use of one allocation (device, or page-locked host).
bool in_use(const void* p, size_t bytes, bool pinned_ok) {
  auto* a = find(p);
  if (!a || (!a->second.device && !pinned_ok)) return false;
  return reinterpret_cast<uintptr_t>(p) >= a->first &&
         reinterpret_cast<uintptr_t>(p) + bytes <= a->first + a->second.used;
}

}  // namespace

bool check_range(const char* call, const char* what, const void* p, size_t bytes, bool device) {
  if (bytes == 0) return true;
  if (device ? in_use(p, bytes, false) : find(p) == nullptr || !find(p)->second.device) return true;
  report(std::string(call) + ": " + what + " [" + std::to_string(uintptr_t(p)) + ", +" +
         std::to_string(bytes) + ") is " +
         (device ? "not inside the bytes in use of one device allocation"
                 : "device memory, where host memory is expected"));
  g_last_error = cudaErrorInvalidValue;
  return false;
}

namespace {
cudaError_t allocate(void** out, size_t bytes, bool device) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  auto* base = static_cast<char*>(std::aligned_alloc(256, kRedzone + capacity(bytes) + kRedzone));
  if (!base) return g_last_error = cudaErrorMemoryAllocation;
  const uintptr_t p = reinterpret_cast<uintptr_t>(base + kRedzone);
  Alloc& a = g_allocs[p] = Alloc{bytes, bytes, device};
  std::memset(base + kRedzone, kPoison, bytes);  // uninitialised memory reads as NaN
  arm(p, a);
  *out = base + kRedzone;
  return cudaSuccess;
}

cudaError_t release(void* p, bool device) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!p) return cudaSuccess;
  auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocs.end() || it->second.device != device) {
    report(std::string(device ? "cudaFree" : "cudaFreeHost") + " of a pointer it did not allocate");
    return g_last_error = cudaErrorInvalidValue;
  }
  check_canaries(device ? "cudaFree" : "cudaFreeHost");
  poison(it->first - kRedzone, kRedzone + capacity(it->second.size) + kRedzone, false);
  g_allocs.erase(it);
  std::free(static_cast<char*>(p) - kRedzone);
  return cudaSuccess;
}

// ---- the block scheduler ------------------------------------------------------------------------
// The threads of a block run on "runner" fibers: a runner takes the next thread that has not
// started and runs it; when the thread finishes, the runner takes the next one. A thread that
// waits (__syncthreads, a warp operation) keeps its runner, and the scheduler starts another
// for the threads after it. So a kernel without barriers runs its block on one stack, thread
// after thread, and one with barriers gets a fiber per thread. When every live thread waits,
// the scheduler releases the barriers whose threads have all arrived, and resumes them in order.
enum class St : unsigned char { NotStarted, Running, Ready, AtBarrier, AtWarpOp, Done };
struct Thread {
  uint3 tid;
  int lane = 0, ctx = -1;
  St st = St::NotStarted;
  const char* file = nullptr;  // __syncthreads: where
  int line = 0;
  WarpOp op = WarpOp::Sync;  // warp operation: what, with which lanes and values
  const char* what = "";
  unsigned mask = 0;
  int src = -1;
  uint64_t value = 0, result = 0;
};
struct Context {                // a runner fiber's stack and saved registers
  const void* stack = nullptr;  // lowest address, for ASan; the scheduler's comes from ASan
  size_t stack_bytes = 0;
#ifdef SPRIG_EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

constexpr size_t kStack = 64 << 10, kGuard = 4096, kMaxThreads = 1024;
constexpr size_t kContexts = kMaxThreads + 1;  // all threads waiting, plus one finishing
struct Scheduler {
  std::vector<Thread> threads = std::vector<Thread>(kMaxThreads);
  std::vector<Context> contexts = std::vector<Context>(kContexts);
  std::vector<int> free_contexts;
  char* stacks = nullptr;  // kContexts stacks, each above a guard page
  Thread* cur = nullptr;   // the thread running now
  int cur_ctx = -1;
  Context main;  // the scheduler's own
  int n = 0, next = 0, done = 0;
  void (*thread)(void*) = nullptr;
  void* ctx = nullptr;
  const char* kernel = "";
  bool failed = false;
  unsigned long long block_serial = 0;
} g;

#ifdef SPRIG_EMU_ASM_SWITCH
// sprig_emu_switch(&save, load): saves the callee-saved registers and the stack pointer in save,
// then continues where load was saved.
extern "C" void sprig_emu_switch(void** save, void* load);
asm(R"(
  .text
  .globl sprig_emu_switch
  .type sprig_emu_switch, @function
sprig_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size sprig_emu_switch, .-sprig_emu_switch
)");
void save_and_load(Context& from, Context& to) {
  sprig_emu_switch(&from.sp, to.sp);
}
#else
void save_and_load(Context& from, Context& to) {
  swapcontext(&from.uc, &to.uc);
}
#endif
void switch_context(Context& from, Context& to) {
#if SPRIG_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, to.stack, to.stack_bytes);
  save_and_load(from, to);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);  // back in `from`
#else
  save_and_load(from, to);
#endif
}
void to_scheduler() {
  switch_context(g.contexts[size_t(g.cur_ctx)], g.main);
}
void resume(int ctx) {
  g.cur_ctx = ctx;
  switch_context(g.main, g.contexts[size_t(ctx)]);
}

void fail(const std::string& msg) {
  if (!g.failed)
    report("kernel " + std::string(g.kernel) + ", block (" + std::to_string(blockIdx.x) + "," +
           std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + "): " + msg);
  g.failed = true;
  g_last_error = cudaErrorLaunchFailure;
}

std::string thread_name(const Thread& t) {
  return "thread (" + std::to_string(t.tid.x) + "," + std::to_string(t.tid.y) + "," +
         std::to_string(t.tid.z) + ")";
}

void runner_main() {
#if SPRIG_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g.main.stack, &g.main.stack_bytes);
#endif
  while (g.next < g.n && !g.failed) {
    // Every other block runs its threads last to first, so that a read of another thread's
    // write without a barrier between them finds NaN bytes whichever thread reads.
    const int i = g.block_serial & 1 ? g.n - 1 - g.next++ : g.next++;
    Thread& t = g.threads[size_t(i)];
    if (blockDim.y == 1 && blockDim.z == 1)  // the usual case, without divisions
      t.tid = uint3{unsigned(i), 0, 0};
    else
      t.tid = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    t.lane = i & 31;
    t.ctx = g.cur_ctx;
    t.st = St::Running;
    g.cur = &t;
    threadIdx = t.tid;
    g.thread(g.ctx);
    g.cur->st = St::Done;
    ++g.done;
  }
  g.free_contexts.push_back(g.cur_ctx);
  to_scheduler();
  std::abort();  // a runner that gave its context back is never resumed
}

int start_runner() {
  const int c = g.free_contexts.back();
  g.free_contexts.pop_back();
  char* stack = g.stacks + size_t(c) * (kStack + kGuard) + kGuard;
  Context& x = g.contexts[size_t(c)];
  x.stack = stack;
  x.stack_bytes = kStack;
#ifdef SPRIG_EMU_ASM_SWITCH
  // The frame sprig_emu_switch pops: six registers, then runner_main as the return address, whose
  // own (never used) return address keeps the stack aligned as after a call.
  void** sp = reinterpret_cast<void**>(stack + kStack);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(&runner_main);
  for (int r = 0; r < 6; ++r) *--sp = nullptr;
  x.sp = sp;
#else
  getcontext(&x.uc);
  x.uc.uc_stack.ss_sp = stack;
  x.uc.uc_stack.ss_size = kStack;
  x.uc.uc_link = nullptr;
  makecontext(&x.uc, &runner_main, 0);
#endif
  return c;
}

// Releases the lanes of each warp whose warp operation every named, live lane has reached.
bool release_warps() {
  bool released = false;
  for (int w = 0; w * 32 < g.n; ++w) {
    Thread* lanes = &g.threads[size_t(w) * 32];
    const int count = std::min(32, g.n - w * 32);
    unsigned waiting = 0, alive = 0, named = 0;
    for (int l = 0; l < count; ++l) {
      if (lanes[l].st != St::Done) alive |= 1u << l;
      if (lanes[l].st == St::AtWarpOp) waiting |= 1u << l, named |= lanes[l].mask;
    }
    if (!waiting || (named & alive & ~waiting)) continue;
    const Thread& first = lanes[__builtin_ctz(waiting)];
    uint64_t ballot = 0;
    for (int l = 0; l < count; ++l) {
      if (!(waiting >> l & 1)) continue;
      if (lanes[l].op != first.op || lanes[l].mask != first.mask) {
        fail("lanes of warp " + std::to_string(w) + " meet at different warp operations: lane " +
             std::to_string(first.lane) + " at " + first.what + " (mask " +
             std::to_string(first.mask) + "), lane " + std::to_string(l) + " at " + lanes[l].what +
             " (mask " + std::to_string(lanes[l].mask) + ")");
        return false;
      }
      if (lanes[l].value) ballot |= 1ull << l;
    }
    for (int l = 0; l < count; ++l) {
      if (!(waiting >> l & 1)) continue;
      Thread& t = lanes[l];
      if (t.op == WarpOp::Ballot) t.result = ballot;
      if (t.op == WarpOp::Shfl)  // a lane that did not take part gives all ones bits
        t.result = t.src >= 0 && t.src < count && (waiting >> t.src & 1) ? lanes[t.src].value
                                                                         : ~uint64_t(0);
      t.st = St::Ready;
    }
    released = true;
  }
  return released;
}

// Releases the block when every live thread waits at the same __syncthreads.
bool release_block() {
  const Thread* first = nullptr;
  for (int i = 0; i < g.n; ++i) {
    const Thread& t = g.threads[size_t(i)];
    if (t.st == St::Done) continue;
    if (t.st != St::AtBarrier) return false;
    if (!first) first = &t;
    if (t.line != first->line || std::strcmp(t.file, first->file) != 0) {
      fail("divergent __syncthreads: " + thread_name(*first) + " waits at " + first->file + ":" +
           std::to_string(first->line) + ", " + thread_name(t) + " at " + t.file + ":" +
           std::to_string(t.line));
      return false;
    }
  }
  if (!first) return false;
  for (int i = 0; i < g.n; ++i)
    if (g.threads[size_t(i)].st == St::AtBarrier) g.threads[size_t(i)].st = St::Ready;
  return true;
}

void run_block() {
  ++g.block_serial;
  g.next = g.done = 0;
  for (;;) {
    while (g.next < g.n && !g.failed) resume(start_runner());
    for (int k = 0; k < g.n && !g.failed; ++k) {
      Thread& t = g.threads[size_t(g.block_serial & 1 ? g.n - 1 - k : k)];
      if (t.st != St::Ready) continue;
      t.st = St::Running;
      g.cur = &t;
      threadIdx = t.tid;
      resume(t.ctx);
    }
    g.cur = nullptr;
    if (g.failed || g.done == g.n) return;
    if (release_warps() || g.failed || release_block() || g.failed) continue;
    std::string where;
    for (int i = 0; i < g.n && where.size() < 400; ++i) {
      const Thread& t = g.threads[size_t(i)];
      if (t.st == St::AtBarrier && (i == 0 || g.threads[size_t(i) - 1].st != St::AtBarrier))
        where += " " + thread_name(t) + "+ at __syncthreads " + t.file + ":" +
                 std::to_string(t.line) + ";";
      if (t.st == St::AtWarpOp) where += " " + thread_name(t) + " at " + t.what + ";";
    }
    fail("deadlock: no thread can go on:" + where);
    return;
  }
}

Thread& current(const char* what) {
  if (!g.cur) {
    report(std::string(what) + " called outside a kernel");
    std::abort();
  }
  return *g.cur;
}

}  // namespace

// ---- device side --------------------------------------------------------------------------------
void block_barrier(const char* file, int line) {
  Thread& t = current("__syncthreads");
  t.st = St::AtBarrier;
  t.file = file;
  t.line = line;
  to_scheduler();
}

uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int src, const char* what) {
  Thread& t = current(what);
  if (!(mask >> t.lane & 1)) {
    fail(thread_name(t) + " calls " + what + " with a mask without its own lane");
    t.st = St::Done;  // the launch is abandoned
  } else {
    t.st = St::AtWarpOp;
    t.op = op;
    t.what = what;
    t.mask = mask;
    t.value = value;
    t.src = src;
  }
  to_scheduler();
  return t.result;
}

int lane_id() {
  return current("lane_id").lane;
}

void fresh_shared(void* p, size_t bytes, unsigned long long& gen) {
  if (gen == g.block_serial) return;
  gen = g.block_serial;
  std::memset(p, kPoison, bytes);
}

void note_device_use(void* p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocs.end() || bytes > it->second.size) {
    report("note_device_use: not a device allocation of at least " + std::to_string(bytes));
    std::abort();
  }
  check_canaries("an earlier call");  // before the canaries move
  it->second.used = bytes;
  arm(it->first, it->second);
  std::memset(p, kPoison, bytes);
}

// ---- launches -----------------------------------------------------------------------------------
bool launch_ok(const char* name, dim3 grid, dim3 block, size_t smem) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  const bool ok = threads >= 1 && threads <= kMaxThreads && block.x <= 1024 && block.y <= 1024 &&
                  block.z <= 64 && grid.x >= 1 && grid.x <= 0x7fffffffu && grid.y >= 1 &&
                  grid.y <= 65535 && grid.z >= 1 && grid.z <= 65535 && smem <= (227u << 10);
  if (!ok) {
    std::lock_guard<std::recursive_mutex> lock(g_mu);
    report(std::string("launch of ") + name + ": invalid configuration grid (" +
           std::to_string(grid.x) + "," + std::to_string(grid.y) + "," + std::to_string(grid.z) +
           "), block (" + std::to_string(block.x) + "," + std::to_string(block.y) + "," +
           std::to_string(block.z) + "), " + std::to_string(smem) + " bytes shared");
    g_last_error = cudaErrorInvalidConfiguration;
  }
  return ok;
}

bool pointer_arg_ok(const char* name, int index, const void* p) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!p) return true;
  auto* a = find(p);
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  // One past the end is fine (an empty slice); further is not.
  if (a && u >= a->first && u <= a->first + a->second.used) return true;
  report(std::string("launch of ") + name + ": pointer argument " + std::to_string(index) +
         (!a                    ? " is not device memory (a host pointer?)"
          : a->second.used == 0 ? " points into a freed block"
                                : " points past the bytes in use of its allocation"));
  g_last_error = cudaErrorIllegalAddress;
  return false;
}

void run(const char* name, dim3 grid, dim3 block, size_t smem, void (*thread)(void*), void* ctx) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!g.stacks) {
    const size_t bytes = kContexts * (kStack + kGuard);
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      report("cannot map the fiber stacks");
      std::abort();
    }
    g.stacks = static_cast<char*>(m);
    for (size_t i = 0; i < kContexts; ++i)  // a stack overflow faults instead of corrupting
      mprotect(g.stacks + i * (kStack + kGuard), kGuard, PROT_NONE);
  }
  g.free_contexts.clear();  // a failed launch may have left some taken
  for (int c = int(kContexts) - 1; c >= 0; --c) g.free_contexts.push_back(c);
  static const bool trace = std::getenv("SPRIG_EMU_TRACE") != nullptr;  // every launch, to stderr
  if (trace)
    std::fprintf(stderr, "sprig-emu trace: %s grid (%u,%u,%u) block (%u,%u,%u)\n", name, grid.x,
                 grid.y, grid.z, block.x, block.y, block.z);
  g.thread = thread;
  g.ctx = ctx;
  g.kernel = name;
  g.failed = false;
  gridDim = grid;
  blockDim = block;
  g.n = int(block.x * block.y * block.z);
  for (unsigned z = 0; z < grid.z && !g.failed; ++z)
    for (unsigned y = 0; y < grid.y && !g.failed; ++y)
      for (unsigned x = 0; x < grid.x && !g.failed; ++x) {
        blockIdx = uint3{x, y, z};
        run_block();
      }
  check_canaries((std::string("kernel ") + name).c_str());
}

}  // namespace sprig_emu

using namespace sprig_emu;

// ---- runtime API --------------------------------------------------------------------------------
const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInsufficientDriver:
      return "cudaErrorInsufficientDriver";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t err) {
  return err == cudaSuccess ? "no error" : "reported by the sprig CUDA emulator (see stderr)";
}
cudaError_t cudaGetLastError() {
  Lock lock(g_mu);
  cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() {
  return g_last_error;
}
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : (g_last_error = cudaErrorInvalidDevice);
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return g_last_error = cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "sprig CUDA emulator");
  prop->totalGlobalMem = size_t(80) << 30;
  prop->sharedMemPerBlock = 48 << 10;
  prop->sharedMemPerBlockOptin = 227 << 10;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->l2CacheSize = 50 << 20;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->clockRate = 1980000;
  prop->memoryClockRate = 2619000;
  prop->memoryBusWidth = 5120;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  return allocate(p, bytes, true);
}
cudaError_t cudaFree(void* p) {
  return release(p, true);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  return allocate(p, bytes, false);
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  return allocate(p, bytes, false);
}
cudaError_t cudaFreeHost(void* p) {
  return release(p, false);
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = size_t(64) << 30;
  *total_bytes = size_t(80) << 30;
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  Lock lock(g_mu);
  if (kind != cudaMemcpyDefault &&
      (!check_range("cudaMemcpy", "the destination", dst, bytes,
                    kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) ||
       !check_range("cudaMemcpy", "the source", src, bytes,
                    kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice)))
    return cudaErrorInvalidValue;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  return cudaMemsetAsync(p, value, bytes, nullptr);
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  Lock lock(g_mu);
  if (!check_range("cudaMemset", "the destination", p, bytes, true)) return cudaErrorInvalidValue;
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  return cudaStreamCreate(s);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;
}  // work runs at once
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) {
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st{std::chrono::steady_clock::now()};
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  return cudaEventCreate(e);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t) {
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(end->t - start->t).count();
  return cudaSuccess;
}
