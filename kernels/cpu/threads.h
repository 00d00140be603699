#pragma once
// The OpenMP thread count sprig uses; 0 means OpenMP's default.
#include <cstdint>
#include <functional>

namespace sprig::cpu {
void set_num_threads(int n);
int num_threads();
int num_processors();  // the processors this process may run on

// Splits [0, n) into one contiguous shard per thread of the OpenMP team and calls
// body(shard, lo, hi) for each on its own thread, when called outside a parallel region with
// more than one thread and n >= min_per_shard x threads; else body(0, 0, n) on the calling
// thread. Returns the number of shards (<= num_threads()). The kernels a shard calls see the
// parallel region and run on its thread alone. An exception thrown by a shard is rethrown
// (the first one) after every shard has finished.
int for_each_shard(int64_t n, int64_t min_per_shard,
                   const std::function<void(int shard, int64_t lo, int64_t hi)>& body);
// The shards for_each_shard(n, min_per_shard, ...) asks for, called here: the team's threads or
// 1 (OpenMP may still grant fewer threads, and so fewer shards).
int planned_shards(int64_t n, int64_t min_per_shard);
}  // namespace sprig::cpu
