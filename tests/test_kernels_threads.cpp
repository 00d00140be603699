// sprig's thread pool (kernels/cpu/threads.h): run_items runs every item once, in parallel where
// it can, passes errors on, keeps kernels called inside an item on one thread, and never waits
// for a worker that has not started: with every worker held back, the caller runs the items.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"

using namespace sprig;

namespace {
// Restores the thread count a test changed.
struct ThreadsRestored {
  int before = cpu::num_threads();
  ~ThreadsRestored() { cpu::set_num_threads(before); }
};
}  // namespace

TEST_CASE("run_items runs every item once, and inside an item kernels see one thread") {
  ThreadsRestored restored;
  for (int threads : {1, 2, 3}) {
    for (int64_t items : {0, 1, 2, 7, 1000}) {
      CAPTURE(threads);
      CAPTURE(items);
      cpu::set_num_threads(threads);
      std::vector<std::atomic<int>> ran(static_cast<size_t>(items));
      std::atomic<int> nested_threads_max{0};
      cpu::run_items(items, threads, [&](int64_t i) {
        ran[size_t(i)].fetch_add(1);
        int seen = cpu::available_threads();
        // A nested call runs serially on this thread, every item once.
        std::vector<int> inner(3, 0);
        const auto id = std::this_thread::get_id();
        bool same_thread = true;
        cpu::run_items(3, threads, [&](int64_t k) {
          ++inner[size_t(k)];
          same_thread = same_thread && std::this_thread::get_id() == id;
        });
        CHECK((inner == std::vector<int>{1, 1, 1}));
        CHECK(same_thread);
        int prev = nested_threads_max.load();
        while (seen > prev && !nested_threads_max.compare_exchange_weak(prev, seen)) {
        }
      });
      for (int64_t i = 0; i < items; ++i) CHECK(ran[size_t(i)].load() == 1);
      // Kernels called inside an item run on its thread alone (1 item runs inline, with the
      // thread's own count).
      if (items > 1 && threads > 1) CHECK(nested_threads_max.load() == 1);
      CHECK(cpu::available_threads() == threads);  // restored after the call
    }
  }
}

TEST_CASE("run_items uses the pool's workers when they are free") {
  ThreadsRestored restored;
  cpu::set_num_threads(2);
  // Each item waits for the other to start: the thread that claimed one cannot claim the
  // other, so both finish only if a worker took one. A machine too busy to give the worker a
  // core within 10 s fails the test; the wait is not a measure of speed.
  std::atomic<int> started{0};
  std::vector<std::thread::id> who(2);
  cpu::run_items(2, 2, [&](int64_t i) {
    who[size_t(i)] = std::this_thread::get_id();
    started.fetch_add(1);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 2 && std::chrono::steady_clock::now() < give_up)
      std::this_thread::yield();
  });
  CHECK(started.load() == 2);
  CHECK(who[0] != who[1]);
}

TEST_CASE(
    "run_items never waits for a worker that took no item: held workers leave it all to "
    "the caller") {
  ThreadsRestored restored;
  cpu::set_num_threads(3);
  cpu::run_items(3, 3, [](int64_t) {});  // the workers exist and are spinning or asleep
  {
    cpu::PoolWorkersHeld held;
    const auto caller = std::this_thread::get_id();
    for (int round = 0; round < 50; ++round) {
      std::vector<int> ran(64, 0);
      bool on_caller = true;
      cpu::run_items(64, 3, [&](int64_t i) {
        ++ran[size_t(i)];
        on_caller = on_caller && std::this_thread::get_id() == caller;
      });
      CHECK(on_caller);
      CHECK(ran == std::vector<int>(64, 1));
    }
    // for_each_shard and the kernels' loops too.
    std::vector<int> seen(37, 0);
    CHECK(cpu::for_each_shard(37, 2, [&](int, int64_t lo, int64_t hi) {
            for (int64_t i = lo; i < hi; ++i) ++seen[size_t(i)];
          }) == 3);
    CHECK(seen == std::vector<int>(37, 1));
    std::vector<int> covered(100000, 0);
    cpu::parallel_range(100000, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) ++covered[size_t(i)];
    });
    CHECK(covered == std::vector<int>(100000, 1));
  }
  // Released, the workers take items again.
  std::vector<std::atomic<int>> ran(256);
  cpu::run_items(256, 3, [&](int64_t i) { ran[size_t(i)].fetch_add(1); });
  for (auto& r : ran) CHECK(r.load() == 1);
}

TEST_CASE(
    "run_items rethrows the first error after every item ran, and refuses too many "
    "items") {
  ThreadsRestored restored;
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    std::vector<std::atomic<int>> ran(40);
    CHECK_THROWS_WITH(cpu::run_items(40, threads,
                                     [&](int64_t i) {
                                       ran[size_t(i)].fetch_add(1);
                                       if (i == 3) throw std::runtime_error("item 3");
                                     }),
                      "item 3");
    for (auto& r : ran) CHECK(r.load() == 1);
    // The pool works on after an error.
    std::atomic<int> count{0};
    cpu::run_items(10, threads, [&](int64_t) { count.fetch_add(1); });
    CHECK(count.load() == 10);
  }
  CHECK_THROWS_AS(cpu::run_items(int64_t(1) << 30, 2, [](int64_t) {}), Error);
}

TEST_CASE("run_items from two threads at once: both finish, every item once") {
  ThreadsRestored restored;
  cpu::set_num_threads(2);
  std::vector<std::atomic<int>> a(5000), b(5000);
  std::thread other([&] {
    for (int r = 0; r < 20; ++r)
      cpu::run_items(250, 2, [&](int64_t i) { a[size_t(r * 250 + i)].fetch_add(1); });
  });
  for (int r = 0; r < 20; ++r)
    cpu::run_items(250, 2, [&](int64_t i) { b[size_t(r * 250 + i)].fetch_add(1); });
  other.join();
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].load() == 1);
    CHECK(b[i].load() == 1);
  }
}

TEST_CASE("for_each_shard covers every item once, in order, as planned, and passes errors on") {
  ThreadsRestored restored;
  for (int threads : {1, 2, 3}) {
    for (int64_t n : {0, 5, 6, 37}) {
      CAPTURE(threads);
      CAPTURE(n);
      cpu::set_num_threads(threads);
      std::vector<int> seen(size_t(n), 0), owner(size_t(n), -1);
      std::vector<int> inside(size_t(threads), -1);
      const int shards = cpu::for_each_shard(n, 2, [&](int s, int64_t lo, int64_t hi) {
        inside[size_t(s)] = cpu::planned_shards(1000, 1);  // a shard's kernels: one thread
        for (int64_t i = lo; i < hi; ++i) ++seen[size_t(i)], owner[size_t(i)] = s;
      });
      // Split only where every thread gets at least 2 items, as planned_shards says beforehand.
      CHECK(shards == (threads > 1 && n >= 2 * threads ? threads : 1));
      CHECK(cpu::planned_shards(n, 2) == shards);
      for (int64_t i = 0; i < n; ++i) CHECK(seen[size_t(i)] == 1);
      for (int64_t i = 1; i < n; ++i) CHECK(owner[size_t(i)] >= owner[size_t(i - 1)]);  // in order
      if (shards > 1)
        for (int s = 0; s < shards; ++s) CHECK(inside[size_t(s)] == 1);
    }
    // A shard's exception reaches the caller after all shards ran.
    cpu::set_num_threads(threads);
    std::vector<std::atomic<int>> ran(static_cast<size_t>(threads));
    CHECK_THROWS_WITH(cpu::for_each_shard(12, 2,
                                          [&](int s, int64_t, int64_t) {
                                            ran[size_t(s)].fetch_add(1);
                                            if (s == threads - 1) throw std::runtime_error("shard");
                                          }),
                      "shard");
    for (int s = 0; s < threads; ++s) CHECK(ran[size_t(s)].load() == 1);
  }
}
