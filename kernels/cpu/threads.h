#pragma once
// sprig's CPU threads: the thread count (OpenMP's setting, OMP_NUM_THREADS) and the one pool
// every kernel's parallel work runs on.
#include <cstdint>
#include <functional>

namespace sprig::cpu {
void set_num_threads(int n);  // n > 0; 0 leaves the count alone
int num_threads();
int num_processors();  // the processors this process may run on

// The threads a kernel called here may use: 1 inside an item of run_items (or inside an OpenMP
// parallel region), else num_threads().
int available_threads();

// Runs body(item) once for every item in [0, items), on the calling thread and up to
// threads - 1 workers of sprig's pool. Items are claimed one at a time from a shared counter,
// and the caller claims too, so an item no worker has started is run by the caller: a worker
// that lost its core to another process (a busy machine) holds the call up only if it took an
// item before it was descheduled, never merely by being late, as an OpenMP team's join does.
// Returns when every item has finished, then rethrows the first exception an item threw.
// Kernels called inside an item see available_threads() == 1. With threads <= 1, one item, or
// called inside an item, the items run in order on the calling thread.
void run_items(int64_t items, int threads, const std::function<void(int64_t item)>& body);

// Splits [0, n) into one contiguous shard per available thread and runs body(shard, lo, hi)
// for each as an item of run_items, when n >= min_per_shard x available_threads() and more
// than one thread is available; else body(0, 0, n) on the calling thread. Returns the number
// of shards.
int for_each_shard(int64_t n, int64_t min_per_shard,
                   const std::function<void(int shard, int64_t lo, int64_t hi)>& body);
// The shards for_each_shard(n, min_per_shard, ...) makes, called here.
int planned_shards(int64_t n, int64_t min_per_shard);

// For tests: while one of these lives, the pool's workers claim no item, as if every one of
// them had lost its core; run_items' caller must then run every item itself.
class PoolWorkersHeld {
 public:
  PoolWorkersHeld();
  ~PoolWorkersHeld();
  PoolWorkersHeld(const PoolWorkersHeld&) = delete;
  PoolWorkersHeld& operator=(const PoolWorkersHeld&) = delete;
};
}  // namespace sprig::cpu
