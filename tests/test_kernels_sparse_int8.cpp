// The sparse int8 Linear (kernels/cpu/sparse_int8.h): each layout's kernel against the plain
// loop over its stored weights, and that loop against the dense int8 product, exactly, on odd
// shapes (cols % 4 != 0, rows % 4 != 0, empty rows), batches on both sides of the gather / lane
// switch and around the 16-sample vectors, 1 and 2 threads; and each kernel's fused dequantising
// and requantising stores against the separate passes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/error.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/sparse_int8.h"
#include "kernels/cpu/threads.h"

using namespace sprig::cpu;

TEST_CASE("sparse int8 Linear (bsr 1x4, bsr 4x4, csr) equals the dense int8 product exactly") {
  struct Case {
    int64_t rows, cols;
    double density;
  };
  std::mt19937 rng(5);
  const int threads_before = num_threads();
  for (const Case& c : {Case{1, 1, 1.0}, Case{7, 9, 0.3}, Case{33, 130, 0.1}, Case{300, 784, 0.08},
                        Case{64, 4096, 0.02}, Case{20, 6, 0.0}, Case{6, 70, 0.9}}) {
    CAPTURE(c.rows);
    CAPTURE(c.cols);
    std::vector<int8_t> W(static_cast<size_t>(c.rows * c.cols), 0);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (auto& v : W)
      if (u(rng) < c.density) v = int8_t(int(rng() % 255) - 127);
    if (c.rows > 3)
      for (int64_t k = 0; k < c.cols; ++k)
        W[static_cast<size_t>(2 * c.cols + k)] = 0;  // empty row 2
    W[0] = c.density > 0 ? -128 : 0;                 // the extreme weight
    const BsrInt8 b14 = bsr_int8_from_dense(c.rows, c.cols, 1, W.data());
    const BsrInt8 b44 = bsr_int8_from_dense(c.rows, c.cols, 4, W.data());
    const CsrInt8 csr = csr_int8_from_dense(c.rows, c.cols, W.data());
    CHECK(int64_t(b14.block_row_ptr.size()) == c.rows + 1);
    CHECK(int64_t(b44.block_row_ptr.size()) == (c.rows + 3) / 4 + 1);
    CHECK(int64_t(b44.weights.size()) == 4 * b44.blocks());
    int64_t nonzero = 0;
    for (int8_t v : W) nonzero += v != 0;
    CHECK(csr.nnz() == nonzero);
    for (int64_t B : {1, 2, 3, 4, 5, 16, 17, 64, 100}) {
      CAPTURE(B);
      std::vector<uint8_t> x(static_cast<size_t>(B * c.cols));
      for (auto& v : x) v = uint8_t(rng() % 256);
      x[0] = 255;
      const int32_t zero = int32_t(rng() % 256);
      std::vector<int32_t> dense(static_cast<size_t>(B * c.rows)), ref(dense.size());
      gemm_u8s8_ref(B, c.rows, c.cols, x.data(), c.cols, zero, W.data(), c.cols, dense.data(),
                    c.rows);
      for (const BsrInt8* b : {&b14, &b44}) {
        CAPTURE(b->br);
        bsr_int8_linear_ref(*b, B, x.data(), zero, ref.data());
        CHECK(ref == dense);
      }
      csr_int8_linear_ref(csr, B, x.data(), zero, ref.data());
      CHECK(ref == dense);
      // The fused epilogues against dequantize_bias_relu of the exact sums.
      std::vector<float> w_scales(static_cast<size_t>(c.rows)), bias(w_scales.size());  // (rows)
      for (int64_t r = 0; r < c.rows; ++r) {
        w_scales[size_t(r)] = 1e-4f * float(r % 7 + 1);
        bias[size_t(r)] = 0.3f - 0.05f * float(r % 11);
      }
      Int8Dequantize dq;
      dq.a_scale = 0.02f;
      dq.w_scales = w_scales.data();
      dq.bias = B % 2 ? bias.data() : nullptr;
      dq.relu = c.rows % 2 == 1;
      std::vector<float> want_y(dense.size());  // (B, rows)
      dequantize_bias_relu(B, c.rows, dense.data(), c.rows, dq.a_scale, dq.w_scales, dq.bias,
                           dq.relu, want_y.data(), c.rows);
      const ActivationQuant next = activation_quant_from_range(-0.3f, 0.9f);
      // Each kernel's three outputs: the sums exactly; the floats an ulp or so of the terms
      // apart (a fused multiply-add or a multiply then an add; relative to the terms' size, not
      // the sum's, which the bias may cancel to ~0); the codes those floats quantise to, bit for
      // bit.
      auto check_outputs = [&](auto sums, auto dequantize, auto requantize) {
        std::vector<int32_t> got(dense.size(), -9);
        sums(got.data());
        CHECK(got == dense);
        std::vector<float> y(dense.size(), -7.0f);
        dequantize(y.data());
        double worst = 0.0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t r = 0; r < c.rows; ++r) {
            const size_t i = size_t(b * c.rows + r);
            const double terms = std::fabs(double(dq.a_scale) * w_scales[size_t(r)] * dense[i]) +
                                 (dq.bias ? std::fabs(dq.bias[r]) : 0.0);
            worst = std::max(worst, double(std::fabs(y[i] - want_y[i])) / (1e-6 + terms));
          }
        CHECK(worst < 1e-6);
        std::vector<uint8_t> codes(dense.size(), 7), want_codes(dense.size(), 7);
        requantize(codes.data());
        quantize_activations_ref(y.data(), int64_t(y.size()), next, want_codes.data());
        CHECK(codes == want_codes);
      };
      for (int threads : {1, 2}) {
        CAPTURE(threads);
        set_num_threads(threads);
        for (const BsrInt8* b : {&b14, &b44}) {
          CAPTURE(b->br);
          check_outputs(
              [&](int32_t* acc) { bsr_int8_linear(*b, B, x.data(), zero, acc); },
              [&](float* y) { bsr_int8_linear_dequantize(*b, B, x.data(), zero, dq, y); },
              [&](uint8_t* q) { bsr_int8_linear_requantize(*b, B, x.data(), zero, dq, next, q); });
        }
        check_outputs(
            [&](int32_t* acc) { csr_int8_linear(csr, B, x.data(), zero, acc); },
            [&](float* y) { csr_int8_linear_dequantize(csr, B, x.data(), zero, dq, y); },
            [&](uint8_t* q) { csr_int8_linear_requantize(csr, B, x.data(), zero, dq, next, q); });
      }
    }
  }
  set_num_threads(threads_before);
}

TEST_CASE("sparse int8 packing refuses blocks other than 1x4 / 4x4 and overflowing widths") {
  const std::vector<int8_t> W(8, 1);
  CHECK_THROWS_WITH_AS(bsr_int8_from_dense(2, 4, 2, W.data()), doctest::Contains("not 1 or 4"),
                       sprig::Error);
  CHECK_THROWS_WITH_AS(csr_int8_from_dense(1, 40000, W.data()), doctest::Contains("32768"),
                       sprig::Error);
}
