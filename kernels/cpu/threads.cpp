#include "kernels/cpu/threads.h"

#include <omp.h>
#include <sched.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/error.h"

namespace sprig::cpu {

void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);  // 0 leaves OpenMP's default (OMP_NUM_THREADS) alone
}

int num_threads() {
  return omp_get_max_threads();
}

int num_processors() {
  return omp_get_num_procs();
}

namespace {

thread_local bool t_in_item = false;  // this thread is running an item of run_items

// Marks the calling thread as inside an item for its lifetime.
struct InItem {
  bool was = t_in_item;
  InItem() { t_in_item = true; }
  ~InItem() { t_in_item = was; }
};

using Clock = std::chrono::steady_clock;

// One step of a spin-wait: tells an x86 core this is one (it yields the pipeline to the other
// hyperthread and saves power).
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long an idle worker spins before it sleeps. Back-to-back calls (a serving loop, a
// training step's kernels) find the workers awake. A longer spin also keeps a worker on its
// own core: one that sleeps is woken onto the caller's core as often as not, where it cannot
// help until the scheduler moves it, so under a busy second process (issue 14, bar 6) 50 us
// ran mlp at batch 64 at one thread's speed in most rounds and 2 ms mostly at two threads'
// (bench/RESULTS.md). SPRIG_SPIN_US overrides it (0: sleep at once).
// Throws sprig::Error naming a value that is not a whole number from 0 to 10^7 (10 s); the
// pool reads it before it starts a worker, so the error reaches the first caller.
std::chrono::microseconds worker_spin() {
  static const std::chrono::microseconds us = [] {
    const char* s = std::getenv("SPRIG_SPIN_US");
    if (!s || !*s) return std::chrono::microseconds(2000);  // unset or empty: the default
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s, &end, 10);
    if (*end || errno || v < 0 || v > 10000000 || !std::isdigit((unsigned char)*s))
      throw Error(std::string("SPRIG_SPIN_US='") + s +
                  "' is not a whole number of microseconds from 0 to 10000000");
    return std::chrono::microseconds(v);
  }();
  return us;
}

// How long a caller that has run every item it could claim spins on the workers' items before
// it yields its core between checks: a worker queued behind it on the same core runs then.
constexpr std::chrono::microseconds kCallerSpin{20};

// A job's generation, item count and next unclaimed item share one word, so a claim (one
// compare-and-swap) can only take an item of the job whose count it checked: a worker that
// read the word of a finished job fails its swap once the next job is published.
constexpr int kGenBits = 16, kCountBits = 24;
constexpr uint64_t kCountMask = (uint64_t(1) << kCountBits) - 1;
constexpr int64_t kMaxItems = int64_t(kCountMask);
uint64_t pack(uint64_t gen, uint64_t items, uint64_t next) {
  return (gen << (2 * kCountBits)) | (items << kCountBits) | next;
}
uint64_t gen_of(uint64_t v) {
  return v >> (2 * kCountBits);
}
uint64_t items_of(uint64_t v) {
  return (v >> kCountBits) & kCountMask;
}
uint64_t next_of(uint64_t v) {
  return v & kCountMask;
}

// Moves the calling thread (worker `index`) to a processor other than the caller's, then lets
// it run anywhere again. A new thread starts on its creator's processor as often as not, and
// with another process busy on the other core the scheduler leaves it there (two threads on
// one core against one on the other is as balanced as it can make them), so the pool ran at one
// core's speed for the process's whole life.
void move_off(int caller_cpu, int index) {
  cpu_set_t allowed;
  if (caller_cpu < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  std::vector<int> others;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (c != caller_cpu && CPU_ISSET(c, &allowed)) others.push_back(c);
  if (others.empty()) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(others[size_t(index) % others.size()], &one);
  if (sched_setaffinity(0, sizeof one, &one) == 0) sched_setaffinity(0, sizeof allowed, &allowed);
}

class Pool {
 public:
  // Runs the items with up to `threads` participants (the caller included), or returns false
  // when another thread's call holds the pool.
  bool run(int64_t items, int threads, const std::function<void(int64_t)>& body) {
    std::unique_lock<std::mutex> caller(caller_mu_, std::try_to_lock);
    if (!caller.owns_lock()) return false;
    if (int(workers_.size()) < threads - 1) worker_spin();  // a bad SPRIG_SPIN_US throws here
    while (int(workers_.size()) < threads - 1) {
      // The worker starts from the generation before this job's: read at its start, it could
      // be this job's own (a new thread may first run after the job is published), and the
      // worker would sleep through the job that made it.
      const int index = int(workers_.size());
      const uint64_t before = gen_of(state_.load());
      const int caller_cpu = sched_getcpu();
      workers_.emplace_back([this, index, before, caller_cpu] {
        move_off(caller_cpu, index);
        work(index, before);
      });
    }
    body_ = &body;
    threads_.store(threads, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    const uint64_t gen =
        (gen_of(state_.load(std::memory_order_relaxed)) + 1) & ((uint64_t(1) << kGenBits) - 1);
    state_.store(pack(gen, uint64_t(items), 0));  // seq_cst: pairs with sleepers_ below
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(sleep_mu_);
      wake_.notify_all();
    }
    claim_and_run(gen);
    // Wait only for the items a worker started (the caller claimed every other one).
    const auto start = Clock::now();
    for (int spins = 0; done_.load(std::memory_order_acquire) < items; ++spins) {
      if (spins % 64 == 63 && Clock::now() - start > kCallerSpin) {
        std::this_thread::yield();  // the worker may be waiting for this core
      } else {
        spin_pause();
      }
    }
    if (error_) std::rethrow_exception(error_);
    return true;
  }

  std::atomic<int> held{0};  // PoolWorkersHeld instances alive

 private:
  // Claims items of job `gen` until none is left, running each.
  void claim_and_run(uint64_t gen) {
    InItem in_item;
    uint64_t v = state_.load(std::memory_order_acquire);
    while (gen_of(v) == gen && next_of(v) < items_of(v)) {
      if (!state_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
        continue;  // v now holds the current word
      try {
        (*body_)(int64_t(next_of(v)));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_release);
      v = state_.load(std::memory_order_acquire);
    }
  }

  [[noreturn]] void work(int index, uint64_t seen) {
    // The spin budget counts from the last item this worker ran (or its last wake-up), so a
    // worker the current jobs leave out (a call with fewer threads) goes back to sleep.
    auto busy_until = Clock::now() + worker_spin();
    for (;;) {
      for (int spins = 0; gen_of(state_.load(std::memory_order_acquire)) == seen; ++spins) {
        if (spins % 64 == 63 && Clock::now() > busy_until) {
          std::unique_lock<std::mutex> lock(sleep_mu_);
          sleepers_.fetch_add(1);  // seq_cst: the caller sees it, or this sees its job
          wake_.wait(lock, [&] { return gen_of(state_.load()) != seen; });
          sleepers_.fetch_sub(1);
          busy_until = Clock::now() + worker_spin();
          break;
        }
        spin_pause();
      }
      seen = gen_of(state_.load(std::memory_order_acquire));
      if (index < threads_.load(std::memory_order_relaxed) - 1 &&
          held.load(std::memory_order_relaxed) == 0) {
        claim_and_run(seen);
        busy_until = Clock::now() + worker_spin();
      }
    }
  }

  std::mutex caller_mu_;  // one run at a time
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> state_{0};  // pack(generation, items, next unclaimed item)
  std::atomic<int> threads_{1};     // the current job's participants, the caller included
  std::atomic<int64_t> done_{0};    // the current job's finished items
  const std::function<void(int64_t)>* body_ = nullptr;
  std::mutex error_mu_;
  std::exception_ptr error_;
  std::mutex sleep_mu_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

// Never destroyed: its workers are blocked or spinning when the process exits, and a static
// destructor would join threads that never return.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

}  // namespace

int available_threads() {
  return t_in_item || omp_in_parallel() ? 1 : omp_get_max_threads();
}

void run_items(int64_t items, int threads, const std::function<void(int64_t item)>& body) {
  if (items > kMaxItems)
    throw Error("run_items: " + std::to_string(items) + " items, at most " +
                std::to_string(kMaxItems));
  if (threads > 1 && items > 1 && !t_in_item && pool().run(items, threads, body)) return;
  InItem in_item;  // serial: nested calls stay serial too
  std::exception_ptr error;
  for (int64_t i = 0; i < items; ++i) {
    try {
      body(i);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

int planned_shards(int64_t n, int64_t min_per_shard) {
  const int threads = available_threads();
  return threads < 2 || n < min_per_shard * threads ? 1 : threads;
}

int for_each_shard(int64_t n, int64_t min_per_shard,
                   const std::function<void(int shard, int64_t lo, int64_t hi)>& body) {
  const int64_t T = planned_shards(n, min_per_shard);
  if (T == 1) {
    body(0, 0, n);
    return 1;
  }
  run_items(T, int(T), [&](int64_t t) { body(int(t), n * t / T, n * (t + 1) / T); });
  return int(T);
}

PoolWorkersHeld::PoolWorkersHeld() {
  pool().held.fetch_add(1);
}
PoolWorkersHeld::~PoolWorkersHeld() {
  pool().held.fetch_sub(1);
}

}  // namespace sprig::cpu
