// The 1 x 4 block int8 Linear (kernels/cpu/sparse_int8.h): the kernel against the plain loop
// over its blocks, and that loop against the dense int8 product, exactly, on odd shapes (cols %
// 4 != 0, empty rows, batches around the 16-sample vectors), 1 and 2 threads.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/sparse_int8.h"
#include "kernels/cpu/threads.h"

using namespace sprig::cpu;

TEST_CASE("bsr14_int8_linear equals the dense int8 product exactly") {
  struct Case {
    int64_t rows, cols;
    double density;
  };
  std::mt19937 rng(5);
  for (const Case& c : {Case{1, 1, 1.0}, Case{7, 9, 0.3}, Case{33, 130, 0.1}, Case{300, 784, 0.08},
                        Case{64, 4096, 0.02}, Case{20, 6, 0.0}}) {
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
    const Bsr14Int8 packed = bsr14_int8_from_dense(c.rows, c.cols, W.data());
    CHECK(int64_t(packed.row_ptr.size()) == c.rows + 1);
    for (int64_t B : {1, 5, 16, 17, 64, 100}) {
      CAPTURE(B);
      std::vector<uint8_t> x(static_cast<size_t>(B * c.cols));
      for (auto& v : x) v = uint8_t(rng() % 256);
      x[0] = 255;
      const int32_t zero = int32_t(rng() % 256);
      std::vector<int32_t> dense(static_cast<size_t>(B * c.rows)), ref(dense.size());
      gemm_u8s8_ref(B, c.rows, c.cols, x.data(), c.cols, zero, W.data(), c.cols, dense.data(),
                    c.rows);
      bsr14_int8_linear_ref(packed, B, x.data(), zero, ref.data());
      CHECK(ref == dense);
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        std::vector<int32_t> got(dense.size(), -9);
        bsr14_int8_linear(packed, B, x.data(), zero, got.data());
        CHECK(got == dense);
      }
    }
  }
}
