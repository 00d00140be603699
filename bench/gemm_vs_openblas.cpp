// sprig's cpu::gemm against OpenBLAS's cblas_sgemm, in the same process, on the same
// matrices, with the same thread count. Each case is warmed up, then timed `repeats` times
// per library; the table shows the median GFLOP/s of each and the ratio sprig / OpenBLAS.
//
// Usage: gemm_vs_openblas [--threads T] [--repeats R] [--max-size S]
// Built only when CMake finds OpenBLAS (see bench/CMakeLists.txt); OpenBLAS is never linked
// into the engine or the tests.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"

// OpenBLAS's own introspection and thread control (declared in its cblas.h on most builds;
// repeated here so the program also compiles against headers that leave them out).
extern "C" {
char* openblas_get_config(void);
char* openblas_get_corename(void);
void openblas_set_num_threads(int num_threads);
}

namespace {

struct Case {
  const char* what;  // where the shape comes from
  bool ta, tb;
  int64_t m, n, k;
};

double now_s() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// Median seconds of `repeats` calls of f after two warm-up calls; a call is repeated inside
// one timing until it lasts >= 1 ms, so tiny shapes are not timer noise.
template <class F>
double median_seconds(F f, int repeats) {
  f();
  f();
  double t0 = now_s();
  f();
  double once = std::max(now_s() - t0, 1e-7);
  int inner = std::max(1, (int)std::ceil(1e-3 / once));
  std::vector<double> ts;
  for (int r = 0; r < repeats; r++) {
    double s = now_s();
    for (int i = 0; i < inner; i++) f();
    ts.push_back((now_s() - s) / inner);
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 9;
  int64_t max_size = 2048;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](const char* flag) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs a value\n", flag);
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (a == "--threads")
      threads = (int)value("--threads");
    else if (a == "--repeats")
      repeats = (int)value("--repeats");
    else if (a == "--max-size")
      max_size = value("--max-size");
    else {
      std::fprintf(stderr, "usage: %s [--threads T] [--repeats R] [--max-size S]\n", argv[0]);
      return 2;
    }
  }
  if (threads < 1 || repeats < 1 || max_size < 1) {
    std::fprintf(stderr, "error: --threads, --repeats and --max-size must be >= 1\n");
    return 2;
  }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);

  std::vector<Case> cases;
  for (int64_t s : {64, 128, 256, 512, 1024, 2048})
    if (s <= max_size) cases.push_back({"square", false, false, s, s, s});
  for (int64_t s : {512, 1024})
    if (s <= max_size)
      for (int t = 1; t < 4; t++) cases.push_back({"square", bool(t & 1), bool(t & 2), s, s, s});
  // The shapes a cnn2 / mlp training step runs (batch 64; conv per sample as W x im2col).
  cases.push_back({"conv2 fwd  W x col", false, false, 16, 784, 72});
  cases.push_back({"conv1 fwd  W x col", false, false, 8, 784, 9});
  cases.push_back({"conv2 dW   dy x col^T", false, true, 16, 72, 784});
  cases.push_back({"conv2 dcol W^T x dy", true, false, 72, 784, 16});
  cases.push_back({"cnn2 linear fwd", false, true, 64, 10, 12544});
  cases.push_back({"cnn2 linear dW", true, false, 10, 12544, 64});
  cases.push_back({"cnn2 linear dx", false, false, 64, 12544, 10});
  cases.push_back({"mlp fc1 fwd", false, true, 64, 300, 784});
  cases.push_back({"mlp fc1 dW", true, false, 300, 784, 64});
  cases.push_back({"mlp fc2 fwd", false, true, 64, 100, 300});
  cases.push_back({"mlp fc2 dW", true, false, 100, 300, 64});
  cases.push_back({"mlp fc2 dx", false, false, 64, 300, 100});
  cases.push_back({"mlp fc3 fwd", false, true, 64, 10, 100});
  // Inference at batch 1 and 4: a Linear layer's x W^T is a matrix-vector product.
  cases.push_back({"linear 7840->10 b1", false, true, 1, 10, 7840});
  cases.push_back({"cnn2 linear fwd b1", false, true, 1, 10, 12544});
  cases.push_back({"cnn2 linear fwd b4", false, true, 4, 10, 12544});
  cases.push_back({"mlp fc1 fwd b1", false, true, 1, 300, 784});
  cases.push_back({"mlp fc1 fwd b4", false, true, 4, 300, 784});
  cases.push_back({"mlp fc2 fwd b1", false, true, 1, 100, 300});
  cases.push_back({"mlp fc1 fwd b8", false, true, 8, 300, 784});
  cases.push_back({"cnn2 linear fwd b8", false, true, 8, 10, 12544});

  std::printf("OpenBLAS config: %s\n", openblas_get_config());
  std::printf("OpenBLAS core  : %s\n", openblas_get_corename());
  std::printf("sprig gemm isa : %s (chosen at run time)\n",
              sprig::cpu::isa_name(sprig::cpu::gemm_isa()));
  const char* ct = std::getenv("OPENBLAS_CORETYPE");
  std::printf("OPENBLAS_CORETYPE: %s\n", ct ? ct : "(unset: OpenBLAS picks its best kernel)");
  std::printf("threads %d (OpenMP and OpenBLAS), median of %d repeats after warm-up\n\n", threads,
              repeats);
  std::printf("%-22s %2s %2s %6s %6s %6s %12s %12s %7s %10s\n", "case", "tA", "tB", "M", "N", "K",
              "sprig GF/s", "OpenBLAS", "ratio", "max|diff|");

  std::srand(1);
  double worst_diff = 0.0;
  for (const Case& c : cases) {
    // Stored shapes: A (M, K) or (K, M) when ta; B (K, N) or (N, K) when tb; C (M, N).
    int64_t lda = c.ta ? c.m : c.k, ldb = c.tb ? c.k : c.n, ldc = c.n;
    std::vector<float> A(c.m * c.k), B(c.k * c.n), C1(c.m * c.n), C2(c.m * c.n);
    for (float& v : A) v = (float)std::rand() / RAND_MAX - 0.5f;
    for (float& v : B) v = (float)std::rand() / RAND_MAX - 0.5f;
    auto run_sprig = [&] {
      sprig::cpu::gemm(c.ta, c.tb, c.m, c.n, c.k, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                       C1.data(), ldc);
    };
    auto run_blas = [&] {
      cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans, c.tb ? CblasTrans : CblasNoTrans,
                  (int)c.m, (int)c.n, (int)c.k, 1.0f, A.data(), (int)lda, B.data(), (int)ldb, 0.0f,
                  C2.data(), (int)ldc);
    };
    // Alternate the libraries so that a disturbance hits both alike.
    double ts = median_seconds(run_sprig, repeats), tb = median_seconds(run_blas, repeats);
    double ts2 = median_seconds(run_sprig, repeats), tb2 = median_seconds(run_blas, repeats);
    ts = std::min(ts, ts2);
    tb = std::min(tb, tb2);
    double diff = 0.0;
    for (size_t i = 0; i < C1.size(); i++) diff = std::max(diff, (double)std::fabs(C1[i] - C2[i]));
    worst_diff = std::max(worst_diff, diff / std::sqrt((double)c.k));
    double flops = 2.0 * c.m * c.n * c.k;
    std::printf("%-22s %2s %2s %6lld %6lld %6lld %12.1f %12.1f %7.2f %10.2e\n", c.what,
                c.ta ? "T" : "N", c.tb ? "T" : "N", (long long)c.m, (long long)c.n, (long long)c.k,
                flops / ts * 1e-9, flops / tb * 1e-9, tb / ts, diff);
  }
  // Both sum the same products in different orders; differences grow like sqrt(K).
  if (worst_diff > 1e-4) {
    std::fprintf(stderr, "error: sprig and OpenBLAS disagree (max |diff| / sqrt(K) = %.2e)\n",
                 worst_diff);
    return 1;
  }
  return 0;
}
