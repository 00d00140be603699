// sprig's sparse int8 Linear (cpu::csr_int8_linear, cpu::bsr_int8_linear in 1 x 4 and 4 x 4
// blocks) against the two kernels it must beat to be worth planning: sprig's sparse float
// Linear (cpu::csr_linear, which ran a 4096x4096 layer at 90% in a third of DeepSparse's time:
// bench/RESULTS.md) and sprig's dense int8 product (gemm_u8s8, AMX where the CPU has it), on
// the same weights, in one process, interleaved: each round times every kernel once, and the
// table shows the median time of each and the median ratio float csr / int8 kernel (> 1: the
// int8 kernel is faster). Three patterns at 90% zeros: unstructured, 1 x 4 blocks and 4 x 4
// blocks (what block pruning leaves). Int8 times include quantising the float input to uint8
// and the dequantisation to floats with bias (fused into each kernel's stores), as an int8 layer
// must.
//
// Usage: sparse_int8 [--threads T] [--rounds R]
#include "kernels/cpu/sparse_int8.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_timing.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/sparse.h"

using sprig::bench::median;
using sprig::bench::seconds_per_call;
namespace cpu = sprig::cpu;

int main(int argc, char** argv) {
  int threads = 2, rounds = 7;
  if (!sprig::bench::parse_threads_rounds(argc, argv, "sparse_int8", threads, rounds)) return 2;
  omp_set_num_threads(threads);
  std::printf(
      "%d threads; median of %d interleaved rounds; 90%% of the weights zero; int8 "
      "dense on %s\n",
      threads, rounds, cpu::int8_isa_name(cpu::int8_gemm_isa()));
  const char* kernels[] = {"int8 dense", "int8 csr", "int8 bsr1x4", "int8 bsr4x4"};
  std::printf("%-10s %-12s %5s %9s |", "layer", "pattern", "batch", "f32 csr");
  for (const char* k : kernels) std::printf(" %11s", k);
  std::printf("   (ms; then f32 csr / int8)\n");
  struct Case {
    const char* what;
    int64_t rows, cols;
  };
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), p(0.0f, 1.0f);
  for (const Case& c : {Case{"4096x4096", 4096, 4096}, Case{"mlp fc1", 300, 784}})
    for (const int64_t block_rows : {0, 1, 4}) {  // 0: unstructured
      std::vector<float> W(size_t(c.rows * c.cols), 0.0f), bias(size_t(c.rows));
      const int64_t br = std::max<int64_t>(block_rows, 1), bc = block_rows ? 4 : 1;
      for (int64_t r0 = 0; r0 < c.rows; r0 += br)
        for (int64_t c0 = 0; c0 < c.cols; c0 += bc)
          if (p(rng) < 0.1f)
            for (int64_t r = r0; r < std::min(c.rows, r0 + br); ++r)
              for (int64_t q = c0; q < std::min(c.cols, c0 + bc); ++q)
                W[size_t(r * c.cols + q)] = u(rng);
      for (float& b : bias) b = u(rng);
      const cpu::CsrMatrix csr = cpu::csr_from_dense(c.rows, c.cols, W.data());
      std::vector<int8_t> Wq(W.size());
      std::vector<float> w_scales(size_t(c.rows));
      cpu::quantize_weights_per_channel(W.data(), c.rows, c.cols, Wq.data(), w_scales.data());
      const cpu::PackedInt8Weights dense =
          cpu::pack_int8_weights(Wq.data(), c.rows, c.cols, c.cols);
      const cpu::CsrInt8 csr8 = cpu::csr_int8_from_dense(c.rows, c.cols, Wq.data());
      const cpu::BsrInt8 b14 = cpu::bsr_int8_from_dense(c.rows, c.cols, 1, Wq.data());
      const cpu::BsrInt8 b44 = cpu::bsr_int8_from_dense(c.rows, c.cols, 4, Wq.data());
      const std::string pattern = block_rows == 0   ? "unstructured"
                                  : block_rows == 1 ? "1x4 blocks"
                                                    : "4x4 blocks";
      for (int64_t B : {1, 64, 256}) {
        std::vector<float> x(size_t(B * c.cols)), y(size_t(B * c.rows));
        for (float& v : x) v = std::max(0.0f, u(rng));  // post-ReLU inputs
        const cpu::ActivationQuant aq = cpu::activation_quant_from_range(0.0f, 1.0f);
        std::vector<uint8_t> xq(x.size());
        cpu::Int8Dequantize dq;
        dq.a_scale = aq.scale;
        dq.w_scales = w_scales.data();
        dq.bias = bias.data();
        // Each as an int8 layer runs: quantise the input, then the product with the
        // dequantisation in its stores.
        auto layer = [&](auto product) {
          return std::function<void()>([&, product] {
            cpu::quantize_activations(x.data(), int64_t(x.size()), aq, xq.data());
            product();
          });
        };
        const std::function<void()> int8_layers[] = {
            layer([&] {
              cpu::gemm_u8s8_dequantize(B, xq.data(), c.cols, aq.zero, dense, dq, y.data(), c.rows);
            }),
            layer([&] {
              cpu::csr_int8_linear_dequantize(csr8, B, xq.data(), aq.zero, dq, y.data());
            }),
            layer(
                [&] { cpu::bsr_int8_linear_dequantize(b14, B, xq.data(), aq.zero, dq, y.data()); }),
            layer(
                [&] { cpu::bsr_int8_linear_dequantize(b44, B, xq.data(), aq.zero, dq, y.data()); }),
        };
        std::vector<double> tf;
        std::vector<std::vector<double>> ti(4), ratio(4);
        for (int r = 0; r < rounds; ++r) {
          const double f =
              seconds_per_call([&] { cpu::csr_linear(csr, B, x.data(), bias.data(), y.data()); });
          tf.push_back(f);
          for (size_t k = 0; k < 4; ++k) {
            const double t = seconds_per_call(int8_layers[k]);
            ti[k].push_back(t);
            ratio[k].push_back(f / t);
          }
        }
        std::printf("%-10s %-12s %5lld %9.4f |", c.what, pattern.c_str(), (long long)B,
                    1e3 * median(tf));
        for (size_t k = 0; k < 4; ++k) std::printf(" %11.4f", 1e3 * median(ti[k]));
        std::printf("   ");
        for (size_t k = 0; k < 4; ++k) std::printf(" %5.2fx", median(ratio[k]));
        std::printf("\n");
      }
    }
  return 0;
}
