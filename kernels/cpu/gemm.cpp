// Run-time choice of the gemm build (kernels/cpu/isa/gemm.cpp compiled per instruction set),
// and the naive reference.
#include "kernels/cpu/gemm.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/error.h"

namespace sprig::cpu {

#define SPRIG_GEMM_DECLARE(ns)                                                                     \
  namespace ns {                                                                                   \
  void gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,     \
            int64_t, float, float*, int64_t);                                                      \
  int64_t packed_b_floats(int64_t, int64_t);                                                       \
  void pack_b_whole(bool, int64_t, int64_t, const float*, int64_t, float*);                        \
  void gemm_prepacked(bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, float, \
                      float*, int64_t);                                                            \
  }
SPRIG_GEMM_DECLARE(generic)
#if defined(SPRIG_GEMM_X86_VARIANTS)
SPRIG_GEMM_DECLARE(avx2)
SPRIG_GEMM_DECLARE(avx512)
#endif
#undef SPRIG_GEMM_DECLARE

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic:
      return "generic";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Generic:
      return true;
#if defined(SPRIG_GEMM_X86_VARIANTS)
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    default:
      return false;
  }
}

static Isa choose_isa() {
  if (const char* forced = std::getenv("SPRIG_GEMM_ISA")) {
    for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512})
      if (std::strcmp(forced, isa_name(isa)) == 0) {
        if (!isa_supported(isa))
          throw Error(std::string("SPRIG_GEMM_ISA=") + forced +
                      " is not supported by this CPU or build");
        return isa;
      }
    throw Error(std::string("SPRIG_GEMM_ISA=") + forced + " is not one of generic, avx2, avx512");
  }
  for (Isa isa : {Isa::Avx512, Isa::Avx2})
    if (isa_supported(isa)) return isa;
  return Isa::Generic;
}

Isa gemm_isa() {
  static const Isa chosen = choose_isa();  // thread-safe initialisation, once per process
  return chosen;
}

void gemm_with(Isa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  switch (isa) {
#if defined(SPRIG_GEMM_X86_VARIANTS)
    case Isa::Avx512:
      return avx512::gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case Isa::Avx2:
      return avx2::gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
    default:
      return generic::gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_with(gemm_isa(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

GemmPackedB gemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, Isa isa) {
  SPRIG_CHECK(isa_supported(isa), "gemm_pack_b: instruction set ", isa_name(isa),
              " is not supported here");
  GemmPackedB p;
  p.isa = isa;
  p.K = K;
  p.N = N;
  switch (isa) {
#if defined(SPRIG_GEMM_X86_VARIANTS)
    case Isa::Avx512:
      p.panels.resize(size_t(avx512::packed_b_floats(K, N)));
      avx512::pack_b_whole(trans_b, K, N, B, ldb, p.panels.data());
      break;
    case Isa::Avx2:
      p.panels.resize(size_t(avx2::packed_b_floats(K, N)));
      avx2::pack_b_whole(trans_b, K, N, B, ldb, p.panels.data());
      break;
#endif
    default:
      p.panels.resize(size_t(generic::packed_b_floats(K, N)));
      generic::pack_b_whole(trans_b, K, N, B, ldb, p.panels.data());
  }
  return p;
}

void gemm_prepacked(bool trans_a, int64_t M, const float* A, int64_t lda, const GemmPackedB& b,
                    float beta, float* C, int64_t ldc) {
  switch (b.isa) {
#if defined(SPRIG_GEMM_X86_VARIANTS)
    case Isa::Avx512:
      return avx512::gemm_prepacked(trans_a, M, b.N, b.K, A, lda, b.panels.data(), beta, C, ldc);
    case Isa::Avx2:
      return avx2::gemm_prepacked(trans_a, M, b.N, b.K, A, lda, b.panels.data(), beta, C, ldc);
#endif
    default:
      return generic::gemm_prepacked(trans_a, M, b.N, b.K, A, lda, b.panels.data(), beta, C, ldc);
  }
}

// Up to 4 rows always, up to 8 when C has few columns (measured on AVX-512: at 8 x 300 x 784
// the packed kernel is 1.6x faster, at 8 x 10 x 12544 the dot products are 6x faster: there
// the packed kernel pads 10 columns to whole panels and packs a 12544-long A), and any number
// when C has at most 12 columns and K >= 1024 (a classifier over a flattened feature map: at
// 64-256 x 10 x 1024-4096 the dot products ran at 78-93 GFLOP/s on one core, the packed
// kernel at 55-68; at 16 columns the two were even, at 32 the packed kernel won).
bool gemm_takes_dots(int64_t M, int64_t N, int64_t K) {
  return M <= 4 || (M <= 8 && N <= 32) || (N <= 12 && K >= 1024);
}

void gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0.0;
      for (int64_t k = 0; k < K; k++) {
        float av = trans_a ? A[k * lda + i] : A[i * lda + k];
        float bv = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        s += (double)av * (double)bv;
      }
      double r = (double)alpha * s;
      if (beta != 0.0f) r += (double)beta * (double)C[i * ldc + j];
      C[i * ldc + j] = (float)r;
    }
}

}  // namespace sprig::cpu
