// sprig bench sparse-gpu: one random CSR Linear W (rows, cols) on the GPU at several sparsities
// and batch sizes, timed four ways side by side in one process: cuBLAS dense, cusparseSpMM and
// sprig's row-split and column-tiled SpMMs (kernels/cuda/sparse.cuh), each with its bias. Prints
// the GPU, the medians and the speedups over dense, or one JSON object with --json.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "apps/commands.h"
#include "infer/pack.h"

namespace sprig::app {

namespace {

struct GpuSparseArgs {
  int64_t rows = 4096, cols = 4096;
  std::vector<double> sparsities = {0.5, 0.7, 0.8, 0.9, 0.95, 0.99};
  std::vector<int64_t> batches = {64, 256, 1024, 4096};
  int repeats = 10;
  uint64_t seed = 0;
  bool json = false;
};

int run_bench_sparse_gpu(const GpuSparseArgs& a) {
  const std::string gpu = infer::cuda_device_description();  // no GPU: one clear error
  std::vector<infer::CudaSpmmTiming> all;
  for (double s : a.sparsities) {
    auto rows = infer::time_csr_linear_cuda(a.rows, a.cols, s, a.batches, a.repeats, a.seed);
    all.insert(all.end(), rows.begin(), rows.end());
  }
  if (a.json) {
    nlohmann::json runs = nlohmann::json::array();
    for (auto& t : all)
      runs.push_back({{"rows", t.rows},
                      {"cols", t.cols},
                      {"batch", t.batch},
                      {"sparsity", t.sparsity},
                      {"nnz", t.nnz},
                      {"dense_ms", t.dense_ms},
                      {"cusparse_ms", t.cusparse_ms},
                      {"rowsplit_ms", t.rowsplit_ms},
                      {"coltile_ms", t.coltile_ms},
                      {"cusparse_rel_diff", t.cusparse_rel_diff},
                      {"rowsplit_rel_diff", t.rowsplit_rel_diff},
                      {"coltile_rel_diff", t.coltile_rel_diff}});
    nlohmann::json j = {{"gpu", gpu}, {"repeats", a.repeats}, {"seed", a.seed}, {"runs", runs}};
    print_json_line(j);
    return 0;
  }
  std::printf(
      "W %lldx%lld (out x in) + bias on %s, median ms of %d runs\n"
      "speedups: dense ms / kernel ms; best/cuSP: cuSPARSE ms / the faster sprig kernel's ms\n",
      (long long)a.rows, (long long)a.cols, gpu.c_str(), a.repeats);
  std::printf("%8s %6s %9s  %9s %9s %9s %9s  %8s %8s %8s %10s  %8s\n", "sparsity", "batch", "nnz",
              "cuBLAS", "cuSPARSE", "rowsplit", "coltile", "x cuSP", "x rowspl", "x coltile",
              "best/cuSP", "max diff");
  for (auto& t : all) {
    auto ratio = [](double num, double den) { return den > 0 ? num / den : 0.0; };
    const double best = std::min(t.rowsplit_ms, t.coltile_ms);
    std::printf(
        "%7.1f%% %6lld %9lld  %9.4f %9.4f %9.4f %9.4f  %7.2fx %7.2fx %8.2fx %9.2fx  %8.1e\n",
        100.0 * t.sparsity, (long long)t.batch, (long long)t.nnz, t.dense_ms, t.cusparse_ms,
        t.rowsplit_ms, t.coltile_ms, ratio(t.dense_ms, t.cusparse_ms),
        ratio(t.dense_ms, t.rowsplit_ms), ratio(t.dense_ms, t.coltile_ms),
        ratio(t.cusparse_ms, best),
        std::max({t.cusparse_rel_diff, t.rowsplit_rel_diff, t.coltile_rel_diff}));
  }
  return 0;
}

}  // namespace

Command add_bench_sparse_gpu_command(CLI::App& app) {
  auto a = std::make_shared<GpuSparseArgs>();
  app.add_option("--rows", a->rows, "output features (rows of W)")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--cols", a->cols, "input features (columns of W)")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--sparsity", a->sparsities, "fractions of zero weights, comma-separated")
      ->delimiter(',')
      ->check(FiniteNumber & CLI::Range(0.0, 0.9999))
      ->capture_default_str();
  app.add_option("--batch", a->batches, "batch sizes, comma-separated")
      ->delimiter(',')
      ->check(IntRange(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--repeats", a->repeats, "timed runs (median)")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  app.add_option("--seed", a->seed, "weights, mask and input")
      ->check(SeedNumber)
      ->capture_default_str();
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_bench_sparse_gpu(*a); };
}

}  // namespace sprig::app
