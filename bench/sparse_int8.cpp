// sprig's sparse int8 Linear (cpu::bsr14_int8_linear: 1 x 4 int8 blocks, uint8 activations)
// against sprig's sparse float Linear (cpu::csr_linear, which ran a 4096x4096 layer at 90% in a
// third of DeepSparse's time: bench/RESULTS.md) on the same weights, in one process, interleaved:
// each round times float CSR, then int8, and the table shows the median ratio. Two patterns:
// unstructured (zeros anywhere: a 1 x 4 block is stored when any of its 4 weights is nonzero)
// and 1 x 4 blocks (what block pruning leaves). Times include quantising the float input to
// uint8 and turning the int32 sums back into floats with bias and ReLU, as an int8 layer must.
//
// Usage: sparse_int8 [--threads T] [--rounds R]
#include "kernels/cpu/sparse_int8.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_timing.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/sparse.h"

using sprig::bench::median;
using sprig::bench::seconds_per_call;

int main(int argc, char** argv) {
  int threads = 2, rounds = 7;
  if (!sprig::bench::parse_threads_rounds(argc, argv, "sparse_int8", threads, rounds)) return 2;
  omp_set_num_threads(threads);
  std::printf("%d threads; median of %d interleaved rounds; 90%% of the weights zero\n", threads,
              rounds);
  std::printf("%-14s %-13s %5s %11s %11s %8s\n", "layer", "pattern", "batch", "float csr ms",
              "int8 ms", "speed-up");
  struct Case {
    const char* what;
    int64_t rows, cols;
  };
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), p(0.0f, 1.0f);
  for (const Case& c : {Case{"4096x4096", 4096, 4096}, Case{"mlp fc1", 300, 784}})
    for (const bool blocks : {false, true}) {
      std::vector<float> W(size_t(c.rows * c.cols), 0.0f), bias(size_t(c.rows));
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t g = 0; g < c.cols; g += 4) {
          const bool keep_block = blocks && p(rng) < 0.1f;
          for (int64_t q = g; q < std::min(c.cols, g + 4); ++q)
            if (blocks ? keep_block : p(rng) < 0.1f) W[size_t(r * c.cols + q)] = u(rng);
        }
      for (float& b : bias) b = u(rng);
      const sprig::cpu::CsrMatrix csr = sprig::cpu::csr_from_dense(c.rows, c.cols, W.data());
      std::vector<int8_t> Wq(W.size());
      std::vector<float> w_scales(size_t(c.rows));
      sprig::cpu::quantize_weights_per_channel(W.data(), c.rows, c.cols, Wq.data(),
                                               w_scales.data());
      const sprig::cpu::Bsr14Int8 packed =
          sprig::cpu::bsr14_int8_from_dense(c.rows, c.cols, Wq.data());
      for (int64_t B : {1, 64, 256}) {
        std::vector<float> x(size_t(B * c.cols)), y(size_t(B * c.rows));
        for (float& v : x) v = std::max(0.0f, u(rng));  // post-ReLU inputs
        const sprig::cpu::ActivationQuant aq = sprig::cpu::activation_quant_from_range(0.0f, 1.0f);
        std::vector<uint8_t> xq(x.size());
        std::vector<int32_t> acc(y.size());
        std::vector<double> ratios, tf_all, ti_all;
        for (int r = 0; r < rounds; ++r) {
          const double tf = seconds_per_call(
              [&] { sprig::cpu::csr_linear(csr, B, x.data(), bias.data(), y.data()); });
          const double ti = seconds_per_call([&] {
            sprig::cpu::quantize_activations(x.data(), int64_t(x.size()), aq, xq.data());
            sprig::cpu::bsr14_int8_linear(packed, B, xq.data(), aq.zero, acc.data());
            sprig::cpu::dequantize_bias_relu(B, c.rows, acc.data(), c.rows, aq.scale,
                                             w_scales.data(), bias.data(), false, y.data(), c.rows);
          });
          ratios.push_back(tf / ti);
          tf_all.push_back(tf);
          ti_all.push_back(ti);
        }
        std::printf("%-14s %-13s %5lld %11.3f %11.3f %7.2fx\n", c.what,
                    blocks ? "1x4 blocks" : "unstructured", (long long)B, 1e3 * median(tf_all),
                    1e3 * median(ti_all), median(ratios));
      }
    }
  return 0;
}
