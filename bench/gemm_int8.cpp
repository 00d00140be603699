// sprig's int8 product (cpu::gemm_u8s8: uint8 x int8 -> int32) against sprig's float product
// (cpu::gemm, at OpenBLAS's speed: bench/RESULTS.md) on the same shapes, in one process, with
// the same threads, interleaved: each round times float, then int8 as gemm_u8s8 chooses (AMX
// where there is AMX), then int8 on AVX-512 VNNI alone, and the ratios are taken per round.
// All compute C (M, N) = A (M, K) x B^T with B stored (N, K), a Linear's layout; the int8
// weights are packed once beforehand, as an inference plan does (the float gemm packs its
// operands inside every call).
//
// Usage: gemm_int8 [--threads T] [--rounds R]
#include "kernels/cpu/gemm_int8.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_timing.h"
#include "kernels/cpu/gemm.h"

using sprig::bench::median;
using sprig::bench::seconds_per_call;

int main(int argc, char** argv) {
  int threads = 2, rounds = 7;
  if (!sprig::bench::parse_threads_rounds(argc, argv, "gemm_int8", threads, rounds)) return 2;
  omp_set_num_threads(threads);
  std::printf("int8 kernel: %s; float gemm: %s; %d threads; median of %d interleaved rounds\n",
              sprig::cpu::int8_isa_name(sprig::cpu::int8_gemm_isa()),
              sprig::cpu::isa_name(sprig::cpu::gemm_isa()), threads, rounds);
  const bool vnni = sprig::cpu::int8_isa_supported(sprig::cpu::Int8Isa::Vnni512);
  std::printf("%-22s %6s %6s %6s %11s %11s %7s %12s %7s\n", "case", "M", "N", "K", "float GF/s",
              "int8 GOP/s", "ratio", "vnni GOP/s", "ratio");
  struct Case {
    const char* what;
    int64_t M, N, K;
  };
  const Case cases[] = {
      {"square", 1024, 1024, 1024},      {"square", 512, 512, 512},
      {"square", 2048, 2048, 2048},      {"mlp fc1, batch 64", 64, 300, 784},
      {"mlp fc1, batch 1", 1, 300, 784}, {"4096 layer, batch 64", 64, 4096, 4096}};
  std::mt19937 rng(1);
  for (const Case& c : cases) {
    std::vector<float> Af(size_t(c.M * c.K)), Bf(size_t(c.N * c.K)), Cf(size_t(c.M * c.N));
    std::vector<uint8_t> A8(Af.size());
    std::vector<int8_t> B8(Bf.size());
    std::vector<int32_t> C32(Cf.size());
    for (size_t i = 0; i < Af.size(); ++i) {
      A8[i] = uint8_t(rng() % 256);
      Af[i] = float(A8[i]) / 255.0f;
    }
    for (size_t i = 0; i < Bf.size(); ++i) {
      B8[i] = int8_t(int(rng() % 255) - 127);
      Bf[i] = float(B8[i]) / 127.0f;
    }
    const sprig::cpu::PackedInt8Weights packed =
        sprig::cpu::pack_int8_weights(B8.data(), c.N, c.K, c.K);
    std::vector<double> f_s, i_s, v_s, ratio, v_ratio;
    for (int r = 0; r < rounds; ++r) {
      const double tf = seconds_per_call([&] {
        sprig::cpu::gemm(false, true, c.M, c.N, c.K, 1.0f, Af.data(), c.K, Bf.data(), c.K, 0.0f,
                         Cf.data(), c.N);
      });
      const double ti = seconds_per_call(
          [&] { sprig::cpu::gemm_u8s8(c.M, A8.data(), c.K, 128, packed, C32.data(), c.N); });
      const double tv = !vnni ? 0.0 : seconds_per_call([&] {
        sprig::cpu::gemm_u8s8_with(sprig::cpu::Int8Isa::Vnni512, c.M, A8.data(), c.K, 128, packed,
                                   C32.data(), c.N);
      });
      f_s.push_back(tf);
      i_s.push_back(ti);
      v_s.push_back(tv);
      ratio.push_back(tf / ti);
      v_ratio.push_back(vnni ? tf / tv : 0.0);
    }
    const double ops = 2.0 * double(c.M) * double(c.N) * double(c.K);
    std::printf("%-22s %6lld %6lld %6lld %11.1f %11.1f %6.2fx %12.1f %6.2fx\n", c.what,
                (long long)c.M, (long long)c.N, (long long)c.K, ops / median(f_s) / 1e9,
                ops / median(i_s) / 1e9, median(ratio), vnni ? ops / median(v_s) / 1e9 : 0.0,
                median(v_ratio));
  }
  return 0;
}
