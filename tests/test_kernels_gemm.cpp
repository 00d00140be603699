// gemm against its naive double-accumulating reference.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"
#include "tests/kernel_test_util.h"

using namespace sprig::cpu;

namespace {

using sprig::testing::abs_vec;
using sprig::testing::random_vec;

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad = 0;         // extra row stride on A, B and C, to catch code that assumes ld == cols
  bool prepacked = false;  // through gemm_pack_b and gemm_prepacked (alpha must be 1)
};

// Runs gemm and gemm_ref on the same random inputs and checks every element of C.
// Tolerance: float32 sums of K products drift by about sqrt(K) ulps of the sum of the
// magnitudes |alpha| sum_k |a_ik b_kj| + |beta c_ij| (not of the result, which can cancel
// to ~0). We allow 1e-5 of that bound (about 80 ulps), far below the size of any one term,
// so a dropped, doubled or misplaced term is always caught.
void check(const Case& c, bool nan_c = false, Isa isa = gemm_isa()) {
  CAPTURE(isa_name(isa));
  CAPTURE(c.ta);
  CAPTURE(c.tb);
  CAPTURE(c.M);
  CAPTURE(c.N);
  CAPTURE(c.K);
  CAPTURE(c.alpha);
  CAPTURE(c.beta);
  CAPTURE(c.pad);
  CAPTURE(c.prepacked);
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  auto A = random_vec(a_rows * lda, 1 + (uint32_t)(c.M * 7 + c.K));
  auto B = random_vec(b_rows * ldb, 2 + (uint32_t)(c.N * 13 + c.K));
  auto C0 = random_vec(c.M * ldc, 3 + (uint32_t)(c.M + c.N));
  if (nan_c)
    for (auto& v : C0) v = std::numeric_limits<float>::quiet_NaN();
  auto C = C0, Cref = C0;
  if (c.prepacked) {
    REQUIRE(c.alpha == 1.0f);  // gemm_prepacked has no alpha
    const GemmPackedB packed = gemm_pack_b(c.tb, c.K, c.N, B.data(), ldb, isa);
    gemm_prepacked(c.ta, c.M, A.data(), lda, packed, c.beta, C.data(), ldc);
  } else {
    gemm_with(isa, c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta,
              C.data(), ldc);
  }
  gemm_ref(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, Cref.data(),
           ldc);
  auto Aa = abs_vec(A), Ba = abs_vec(B), Cmag = abs_vec(C0);
  if (nan_c) Cmag.assign(Cmag.size(), 0.0f);
  gemm_ref(c.ta, c.tb, c.M, c.N, c.K, std::fabs(c.alpha), Aa.data(), lda, Ba.data(), ldb,
           std::fabs(c.beta), Cmag.data(), ldc);
  int64_t bad = 0;
  for (int64_t i = 0; i < c.M; i++)
    for (int64_t j = 0; j < c.N; j++) {
      float got = C[i * ldc + j], want = Cref[i * ldc + j];
      float tol = 1e-5f * Cmag[i * ldc + j] + 1e-30f;
      if (!(std::fabs(got - want) <= tol)) {
        if (bad++ < 5) FAIL_CHECK("C(" << i << ", " << j << ") = " << got << ", want " << want);
      }
    }
  CHECK(bad == 0);
  // The padding columns past N belong to someone else and must be left alone.
  for (int64_t i = 0; i < c.M; i++)
    for (int64_t j = c.N; j < ldc; j++)
      if (!nan_c) REQUIRE(C[i * ldc + j] == C0[i * ldc + j]);
}

const int64_t kSizes[][3] = {
    {1, 1, 1},
    {3, 7, 17},
    {7, 3, 1},
    {17, 33, 65},
    {33, 17, 7},
    {65, 129, 257},
    {129, 65, 33},
    {257, 7, 300},
    {7, 257, 600},
    {1, 300, 7},
    {300, 1, 7},
    {33, 65, 1000},
    {16, 784, 72},
    {64, 10, 600},
    {10, 1000, 64},
    {64, 900, 10},
    {5, 7, 3000},
    {2, 3, 1025},
    {9, 31, 33},
    {31, 9, 513},
    {8, 32, 256},
    {16, 64, 512},
    {100, 40, 70},
    {40, 100, 70},
    // B read in place up to 4 x MR rows (32 with AVX-512, 24 with AVX2), ragged last panel; and
    // the C^T swap's margin (32 x 300 stays, 784 x 8 swaps).
    {32, 300, 784},
    {24, 70, 50},
    {25, 45, 50},
    {784, 8, 72},
};

}  // namespace

TEST_CASE("gemm matches gemm_ref: sizes x transposes") {
  for (auto& s : kSizes)
    for (int t = 0; t < 4; t++) check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.0f});
}

TEST_CASE("every instruction-set build of gemm this CPU runs matches gemm_ref") {
  // gemm picks one build at run time; the others must be right too, for other machines.
  CHECK(isa_supported(Isa::Generic));
  CHECK(isa_supported(gemm_isa()));
  int tested = 0;
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) {
      MESSAGE("gemm build ", isa_name(isa), " not supported on this CPU: not run");
      continue;
    }
    ++tested;
    for (auto& s : kSizes)
      for (int t = 0; t < 4; t++) {
        check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], -1.5f, 0.5f, 3}, false, isa);
        check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.0f}, true, isa);
      }
  }
  CHECK(tested >= 1);
}

TEST_CASE("gemm_prepacked (op(B) packed once by gemm_pack_b) matches gemm_ref") {
  // Every instruction set and transpose on the sizes above (K in several blocks of 256 with a
  // tail, N a ragged number of panels) on one thread; and on 2 threads products big enough to
  // split, C in slabs along N (32 x 300) or along M (256 x 16, 48 x 100), K in 2 blocks.
  const int64_t split[][3] = {{32, 300, 300}, {256, 16, 300}, {48, 100, 300}};
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) {
      CHECK_THROWS_WITH_AS(gemm_pack_b(false, 1, 1, nullptr, 1, isa),
                           doctest::Contains("not supported"), sprig::Error);
      continue;
    }
    auto both = [&](const int64_t* s) {
      for (int t = 0; t < 4; t++) {
        check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.5f, 3, true}, false, isa);
        check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.0f, 0, true}, true, isa);
      }
    };
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      CAPTURE(threads);
      if (threads == 1)
        for (auto& s : kSizes) both(s);
      for (auto& s : split) both(s);
    }
  }
  omp_set_num_threads(2);
}

TEST_CASE("gemm with W stored (N, K) at batch 1-8 or few columns (the dot-product path)") {
  // A Linear layer's forward: op(B) = W^T with W (N, K) row-major. Odd K (the tail past the
  // lanes), K shorter than the lanes, many columns (split across threads), row blocks of 4 and
  // a remainder, and sizes either side of the path's limits. At any batch with at most 12
  // columns and K >= 1024 (a classifier): several K blocks of 1024 with a tail (partial sums
  // kept between blocks), rows split across threads, and the limits (13 columns, K = 1023).
  const int64_t sizes[][3] = {{1, 10, 7840},  {2, 10, 7841},  {3, 300, 784},  {4, 100, 300},
                              {1, 1, 63},     {4, 7, 65},     {2, 129, 17},   {5, 10, 784},
                              {1, 4096, 512}, {3, 5, 1},      {8, 10, 12544}, {7, 32, 100},
                              {6, 33, 100},   {9, 10, 1024},  {37, 12, 2049}, {130, 10, 12544},
                              {64, 13, 3000}, {16, 10, 1023}, {21, 3, 4111}};
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      CAPTURE(threads);
      for (auto& s : sizes) {
        check({false, true, s[0], s[1], s[2], 1.0f, 0.0f}, false, isa);
        check({false, true, s[0], s[1], s[2], -0.5f, 0.75f, 3}, false, isa);
        check({false, true, s[0], s[1], s[2], 2.0f, 0.0f}, true, isa);  // NaN C never read
      }
    }
  }
  omp_set_num_threads(2);
}

TEST_CASE("the dot-product path gives a row the same bits whatever the rows around it") {
  // A batch split into smaller batches (sprig predict --batch-size) must give the forward's
  // logits exactly: a row's sums may not depend on the row block (1-4 rows, each with its own
  // register blocking) that computed it, nor on whether K went in blocks (more than 4 rows) or
  // whole (at most 4).
  const int64_t M = 7, N = 5;
  for (int64_t K : {36, 3000}) {
    CAPTURE(K);
    auto A = random_vec(M * K, 31), B = random_vec(N * K, 32);
    for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
      if (!isa_supported(isa)) continue;
      CAPTURE(isa_name(isa));
      std::vector<float> whole(M * N);
      gemm_with(isa, false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, whole.data(), N);
      for (int64_t rows = 1; rows <= 4; ++rows) {
        CAPTURE(rows);
        std::vector<float> parts(M * N);
        for (int64_t i = 0; i < M; i += rows)
          gemm_with(isa, false, true, std::min(rows, M - i), N, K, 1.0f, A.data() + i * K, K,
                    B.data(), K, 0.0f, parts.data() + i * N, N);
        CHECK(parts == whole);
      }
    }
  }
}

TEST_CASE("gemm alpha and beta") {
  for (auto& s : kSizes)
    for (int t = 0; t < 4; t++) {
      check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 0.5f, 1.0f});
      check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], -1.5f, -0.25f});
    }
}

TEST_CASE("gemm with beta == 0 never reads C (NaN-filled C)") {
  for (auto& s : kSizes)
    for (int t = 0; t < 4; t++)
      check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 2.0f, 0.0f}, true);
}

TEST_CASE("gemm with row strides larger than the row length") {
  for (auto& s : kSizes)
    for (int t = 0; t < 4; t++) {
      check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.5f, 5});
      check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.0f, 19});
    }
}

TEST_CASE("gemm degenerate sizes: K == 0 scales C, alpha == 0 ignores A and B") {
  std::vector<float> C = {1, 2, 3, 4}, A = {1}, B = {1};
  gemm(false, false, 2, 2, 0, 1.0f, A.data(), 1, B.data(), 2, 0.5f, C.data(), 2);
  CHECK(C == std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f});
  std::vector<float> nanA(4, std::numeric_limits<float>::quiet_NaN());
  gemm(false, false, 2, 2, 2, 0.0f, nanA.data(), 2, nanA.data(), 2, 0.0f, C.data(), 2);
  CHECK(C == std::vector<float>{0, 0, 0, 0});
  gemm(false, false, 0, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);  // no-op
}

TEST_CASE("gemm on a hand-computed 2x3 * 3x2 product") {
  // [1 2 3; 4 5 6] * [7 8; 9 10; 11 12] = [58 64; 139 154]
  std::vector<float> A = {1, 2, 3, 4, 5, 6}, B = {7, 8, 9, 10, 11, 12}, C(4);
  gemm(false, false, 2, 2, 3, 1.0f, A.data(), 3, B.data(), 2, 0.0f, C.data(), 2);
  CHECK(C == std::vector<float>{58, 64, 139, 154});
  // The same with both operands stored transposed.
  std::vector<float> At = {1, 4, 2, 5, 3, 6}, Bt = {7, 9, 11, 8, 10, 12};
  gemm(true, true, 2, 2, 3, 1.0f, At.data(), 2, Bt.data(), 3, 0.0f, C.data(), 2);
  CHECK(C == std::vector<float>{58, 64, 139, 154});
}

TEST_CASE("gemm inside an OpenMP parallel region runs per thread") {
  int failures = 0;
#pragma omp parallel reduction(+ : failures)
  {
    int t = omp_get_thread_num();
    const int64_t M = 37 + t, N = 70, K = 300;
    auto A = random_vec(M * K, 10 + t), B = random_vec(K * N, 20 + t);
    std::vector<float> C(M * N), Cref(M * N);
    gemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
    gemm_ref(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, Cref.data(), N);
    for (int64_t i = 0; i < M * N; i++)
      if (!(std::fabs(C[i] - Cref[i]) <= 1e-4f * (1.0f + std::fabs(Cref[i])))) failures++;
  }
  CHECK(failures == 0);
}

TEST_CASE("gemm with an odd thread count and repeated runs are bit-identical") {
  int saved = num_threads();
  set_num_threads(3);
  CHECK(num_threads() == 3);
  for (auto& s : kSizes)
    for (int t = 0; t < 4; t++) check({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.5f});
  // The dot-product path over K blocks splits rows across threads: the same bits as 1 thread.
  {
    const int64_t M = 70, N = 10, K = 3000;
    auto A = random_vec(M * K, 7), B = random_vec(N * K, 8);
    std::vector<float> C1(M * N), C3(M * N);
    gemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C3.data(), N);
    set_num_threads(1);
    gemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C1.data(), N);
    set_num_threads(3);
    CHECK(C1 == C3);
  }
  // The split-K path (tiny C, long K) must give the same bits every time.
  const int64_t M = 5, N = 7, K = 5000;
  auto A = random_vec(M * K, 5), B = random_vec(K * N, 6);
  std::vector<float> C1(M * N), C2(M * N);
  gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C1.data(), N);
  gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C2.data(), N);
  CHECK(C1 == C2);
  set_num_threads(saved);
  CHECK(num_threads() == saved);
}

// ---- uint8 x int8 -> int32 (gemm_int8.h): every instruction set against the triple loop,
// exactly, on odd shapes (K % 4 != 0, N % 16 != 0, M % 6 != 0, K % 64 == 0 with M % 32 != 0,
// where AMX reads A in place and then through its padded copy), padded strides, the extreme
// values (255 x -128) and zero points.
TEST_CASE("gemm_u8s8 equals its reference exactly on every instruction set") {
  struct Shape8 {
    int64_t M, N, K, pad;
    int32_t zero;
  };
  const std::vector<Shape8> shapes = {
      {1, 1, 1, 0, 0},       {1, 10, 7840, 0, 128},  {7, 17, 5, 3, 3},     {6, 64, 4, 0, 0},
      {13, 100, 37, 5, 255}, {64, 300, 784, 0, 128}, {50, 33, 130, 1, 17}, {128, 128, 256, 0, 128},
      {33, 48, 65, 2, 9},    {100, 70, 200, 0, 128}, {70, 40, 128, 3, 128}};
  std::mt19937 rng(7);
  for (const Shape8& s : shapes) {
    CAPTURE(s.M);
    CAPTURE(s.N);
    CAPTURE(s.K);
    const int64_t lda = s.K + s.pad, ldb = s.K + s.pad, ldc = s.N + s.pad;
    std::vector<uint8_t> A(size_t(s.M * lda));
    std::vector<int8_t> B(size_t(s.N * ldb));
    for (auto& v : A) v = uint8_t(rng() % 256);
    for (auto& v : B) v = int8_t(int(rng() % 256) - 128);
    // Extremes in the first row and column, where overflow or saturation would show.
    for (int64_t k = 0; k < s.K; ++k) {
      A[size_t(k)] = 255;
      B[size_t(k)] = -128;
    }
    std::vector<int32_t> want(size_t(s.M * ldc), -7);
    gemm_u8s8_ref(s.M, s.N, s.K, A.data(), lda, s.zero, B.data(), ldb, want.data(), ldc);
    CHECK(want[0] == (255 - s.zero) * -128 * int32_t(s.K));
    const PackedInt8Weights packed = pack_int8_weights(B.data(), s.N, s.K, ldb);
    // The fused epilogue against dequantize_bias_relu of the exact sums.
    std::vector<float> w_scales(size_t(s.N)), bias(size_t(s.N));  // (N)
    for (int64_t n = 0; n < s.N; ++n) {
      w_scales[size_t(n)] = 1e-4f * float(n % 7 + 1);
      bias[size_t(n)] = 0.3f - 0.05f * float(n % 11);
    }
    Int8Dequantize dq;
    dq.a_scale = 0.02f;
    dq.w_scales = w_scales.data();
    dq.bias = s.M % 2 ? bias.data() : nullptr;
    dq.relu = s.N % 2 == 0;
    std::vector<float> want_y(size_t(s.M * ldc), -7.0f);  // (M, N), row stride ldc
    dequantize_bias_relu(s.M, s.N, want.data(), ldc, dq.a_scale, dq.w_scales, dq.bias, dq.relu,
                         want_y.data(), ldc);
    for (Int8Isa isa : {Int8Isa::Amx, Int8Isa::Vnni512, Int8Isa::Avx2, Int8Isa::Generic}) {
      if (!int8_isa_supported(isa)) {
        MESSAGE("int8 ", int8_isa_name(isa), " not supported here: not tested");
        continue;
      }
      CAPTURE(int8_isa_name(isa));
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        std::vector<int32_t> got(size_t(s.M * ldc), -7);  // the padding must stay untouched
        gemm_u8s8_with(isa, s.M, A.data(), lda, s.zero, packed, got.data(), ldc);
        CHECK(got == want);
        std::vector<float> y(size_t(s.M * ldc), -7.0f);  // the padding must stay untouched
        gemm_u8s8_dequantize_with(isa, s.M, A.data(), lda, s.zero, packed, dq, y.data(), ldc);
        // A fused multiply-add or a multiply then an add: an ulp or so of the terms apart
        // (relative to the terms' size, not the sum's, which the bias may cancel to ~0); the
        // padding columns untouched.
        double worst = 0.0;
        for (int64_t m = 0; m < s.M; ++m)
          for (int64_t n = 0; n < ldc; ++n) {
            const size_t i = size_t(m * ldc + n);
            if (n >= s.N) {
              CHECK(y[i] == -7.0f);
              continue;
            }
            const double terms = std::fabs(double(dq.a_scale) * w_scales[size_t(n)] * want[i]) +
                                 (dq.bias ? std::fabs(dq.bias[n]) : 0.0);
            worst = std::max(worst, double(std::fabs(y[i] - want_y[i])) / (1e-6 + terms));
          }
        CHECK(worst < 1e-6);
        // Requantised: the codes of the dequantised result, bit for bit, padding untouched.
        const ActivationQuant next = activation_quant_from_range(-0.3f, 0.9f);
        std::vector<uint8_t> codes(size_t(s.M * ldc), 7), want_codes(size_t(s.M * ldc), 7);
        gemm_u8s8_requantize_with(isa, s.M, A.data(), lda, s.zero, packed, dq, next, codes.data(),
                                  ldc);
        for (int64_t m = 0; m < s.M; ++m)
          quantize_activations_ref(y.data() + m * ldc, s.N, next, want_codes.data() + m * ldc);
        CHECK(codes == want_codes);
      }
    }
  }
}

TEST_CASE("gemm_u8s8 on AMX reads a cache-line-aligned A in place, whatever lies past K") {
  if (!int8_isa_supported(Int8Isa::Amx)) {
    MESSAGE("int8 amx not supported here: not tested");
    return;
  }
  // Rows 64-byte aligned and whole lines apart, 32-row blocks: the kernel loads its tiles
  // straight from A, over the bytes between K and lda too (B is zero there), so those hold
  // garbage here. K = 128 fills the tiles exactly; K = 100 leaves a partial last step.
  std::mt19937 rng(8);
  for (int64_t K : {128, 100}) {
    CAPTURE(K);
    const int64_t M = 64, N = 40, lda = 192;
    std::vector<uint8_t> storage(size_t(M * lda + 64));
    uint8_t* A = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
    for (int64_t i = 0; i < M * lda; ++i) A[i] = uint8_t(rng() % 256);  // past K too
    std::vector<int8_t> B(size_t(N * K));
    for (auto& v : B) v = int8_t(int(rng() % 255) - 127);
    std::vector<int32_t> want(size_t(M * N)), got(size_t(M * N), -7);
    gemm_u8s8_ref(M, N, K, A, lda, 100, B.data(), K, want.data(), N);
    const PackedInt8Weights packed = pack_int8_weights(B.data(), N, K, K);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      gemm_u8s8_with(Int8Isa::Amx, M, A, lda, 100, packed, got.data(), N);
      CHECK(got == want);
    }
  }
}
