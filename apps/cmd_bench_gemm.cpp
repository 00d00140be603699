// sprig bench gemm: times cpu::gemm on random matrices and prints the median GFLOP/s of
// repeated runs after a warm-up, so anyone can compare sprig with their own BLAS.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "apps/commands.h"
#include "kernels/error.h"
#include "engine/rng.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threads.h"

namespace sprig::app {

namespace {

// Each dimension is capped so the three matrices stay under 1 GiB together even at the
// limits (A, B and C of 8192^2 floats are 256 MiB each).
constexpr int64_t kMaxDim = 8192;

struct BenchGemmArgs {
  int64_t m = 512, n = 512, k = 512;
  bool trans_a = false, trans_b = false, json = false;
  int threads = 0, repeats = 10;
};

int run_bench_gemm(const BenchGemmArgs& a) {
  for (auto [flag, v] : {std::pair{"--m", a.m}, std::pair{"--n", a.n}, std::pair{"--k", a.k}})
    SPRIG_CHECK(v >= 1 && v <= kMaxDim, "bench gemm: ", flag, " must be in [1, ", kMaxDim,
                "], got ", v);
  use_threads(a.threads);

  // Stored shapes: A (M, K) or (K, M) with --trans-a; B (K, N) or (N, K) with --trans-b.
  const int64_t lda = a.trans_a ? a.m : a.k, ldb = a.trans_b ? a.k : a.n, ldc = a.n;
  std::vector<float> A(a.m * a.k), B(a.k * a.n), C(a.m * a.n);
  Rng rng(1);
  for (float& v : A) v = rng.uniform(-1.0f, 1.0f);
  for (float& v : B) v = rng.uniform(-1.0f, 1.0f);
  auto once = [&] {
    cpu::gemm(a.trans_a, a.trans_b, a.m, a.n, a.k, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
              C.data(), ldc);
  };
  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::time_point t0) {
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  // Warm-up: packing buffers, OpenMP team, caches. Then batch tiny products so that each
  // timed sample lasts >= 1 ms and the clock's resolution does not matter.
  once();
  auto t0 = clock::now();
  once();
  int inner = (int)std::clamp(std::ceil(1e-3 / std::max(seconds(t0), 1e-9)), 1.0, 1e6);
  std::vector<double> ms;
  for (int r = 0; r < a.repeats; r++) {
    t0 = clock::now();
    for (int i = 0; i < inner; i++) once();
    ms.push_back(seconds(t0) * 1e3 / inner);
  }
  std::sort(ms.begin(), ms.end());
  double median =
      ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  double gflops = 2.0 * double(a.m) * double(a.n) * double(a.k) / (median * 1e-3) * 1e-9;

  if (a.json) {
    nlohmann::json j = {{"kernel", "gemm"},
                        {"isa", cpu::isa_name(cpu::gemm_isa())},
                        {"m", a.m},
                        {"n", a.n},
                        {"k", a.k},
                        {"trans_a", a.trans_a},
                        {"trans_b", a.trans_b},
                        {"threads", cpu::num_threads()},
                        {"repeats", a.repeats},
                        {"ms", median},
                        {"min_ms", ms.front()},
                        {"gflops", gflops}};
    print_json_line(j);
  } else {
    std::printf(
        "gemm %s%s M=%lld N=%lld K=%lld, %d threads: %.3f ms median (min %.3f) of %d, "
        "%.1f GFLOP/s\n",
        a.trans_a ? "T" : "N", a.trans_b ? "T" : "N", (long long)a.m, (long long)a.n,
        (long long)a.k, cpu::num_threads(), median, ms.front(), a.repeats, gflops);
  }
  return 0;
}

}  // namespace

Command add_bench_gemm_command(CLI::App& app) {
  auto a = std::make_shared<BenchGemmArgs>();
  auto dim = IntRange(int64_t(1), kMaxDim);
  app.add_option("--m", a->m, "rows of op(A) and C")->check(dim)->capture_default_str();
  app.add_option("--n", a->n, "columns of op(B) and C")->check(dim)->capture_default_str();
  app.add_option("--k", a->k, "columns of op(A), rows of op(B)")->check(dim)->capture_default_str();
  app.add_flag("--trans-a", a->trans_a, "A is stored (K, M) and used transposed");
  app.add_flag("--trans-b", a->trans_b, "B is stored (N, K) and used transposed");
  app.add_option("--threads", a->threads, "OpenMP threads (0: OpenMP's default)")
      ->check(IntRange(0, 1024))
      ->capture_default_str();
  app.add_option("--repeats", a->repeats, "timed runs after the warm-up; the median is reported")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  app.add_flag("--json", a->json, "print one JSON object (m, n, k, threads, ms, gflops)");
  return [a] { return run_bench_gemm(*a); };
}

}  // namespace sprig::app
