// Sparse formats and kernels against the dense path on the same zeroed weights.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/sparse.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"
#include "tests/kernel_test_util.h"

using namespace sprig;
using namespace sprig::cpu;

namespace {

using sprig::testing::abs_vec;
using sprig::testing::random_vec;

// Dense (rows, cols) weights in [-1, 1) with each entry zeroed with probability `sparsity`
// (0 keeps all, 1 zeroes all).
std::vector<float> masked_weights(int64_t rows, int64_t cols, double sparsity, uint32_t seed) {
  auto w = random_vec(size_t(rows * cols), seed);
  std::mt19937 rng(seed + 1000);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (auto& v : w)
    if (u(rng) < sparsity) v = 0.0f;
  return w;
}

// The dense path: y (B, rows) = bias + x (B, cols) W^T with the zeros of W, in double.
std::vector<float> dense_linear(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t B,
                                const float* x, const float* bias) {
  std::vector<float> y(size_t(B * rows));
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < rows; i++) {
      double acc = bias ? bias[i] : 0.0;
      // Skipping zero weights changes nothing (x is finite) and keeps the suite quick.
      for (int64_t j = 0; j < cols; j++)
        if (w[i * cols + j] != 0.0f) acc += double(x[b * cols + j]) * w[i * cols + j];
      y[b * rows + i] = float(acc);
    }
  return y;
}

// Every element of got within 1e-5 of the sum of the magnitudes of its terms (mag, the same
// product on |x|, |W|, |bias|): a dropped, doubled or misplaced term is always caught, while
// float rounding of a long sum is not.
void check_close(const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<float>& mag) {
  REQUIRE(got.size() == want.size());
  int64_t bad = 0;
  for (size_t e = 0; e < got.size(); e++) {
    const float tol = 1e-5f * mag[e] + 1e-30f;
    if (!(std::fabs(got[e] - want[e]) <= tol))
      if (bad++ < 5) FAIL_CHECK("y[" << e << "] = " << got[e] << ", want " << want[e]);
  }
  CHECK(bad == 0);
}

struct LinearCase {
  int64_t rows, cols;
  double sparsity;
  int64_t B;
  bool bias;
};

// The dense answer, its magnitude bound, the input and the bias of one case.
struct LinearData {
  std::vector<float> x, bias, want, mag;
  const float* b() const { return bias.empty() ? nullptr : bias.data(); }
};

LinearData linear_data(const LinearCase& c, const std::vector<float>& w) {
  LinearData d;
  d.x = random_vec(size_t(c.B * c.cols), uint32_t(7 + c.B * 31 + c.cols));
  if (c.bias) d.bias = random_vec(size_t(c.rows), uint32_t(11 + c.rows));
  d.want = dense_linear(w, c.rows, c.cols, c.B, d.x.data(), d.b());
  auto xa = abs_vec(d.x), wa = abs_vec(w), ba = abs_vec(d.bias);
  d.mag = dense_linear(wa, c.rows, c.cols, c.B, xa.data(), c.bias ? ba.data() : nullptr);
  return d;
}

const int64_t kShapes[][2] = {{1, 1},   {1, 17},  {3, 1},     {3, 3},      {17, 33},
                              {33, 17}, {64, 64}, {300, 784}, {10, 12544}, {3, 70000}};
const double kSparsities[] = {0.0, 0.5, 0.9, 0.99, 1.0};
const int64_t kBatches[] = {1, 2, 7, 64, 129};

}  // namespace

TEST_CASE("csr_linear and csr_linear_ref equal the dense masked product") {
  for (auto& sh : kShapes)
    for (double sp : kSparsities)
      for (int64_t B : kBatches)
        for (bool bias : {false, true}) {
          LinearCase c{sh[0], sh[1], sp, B, bias};
          // The big shapes (their dense reference is slow) run batches 1 and 64 without bias
          // and 7 with it.
          if (c.rows * c.cols > 100000 && (B == 2 || B == 129 || bias != (B == 7))) continue;
          CAPTURE(c.rows);
          CAPTURE(c.cols);
          CAPTURE(c.sparsity);
          CAPTURE(c.B);
          CAPTURE(c.bias);
          auto w = masked_weights(c.rows, c.cols, sp, uint32_t(c.rows * 3 + c.cols));
          auto d = linear_data(c, w);
          CsrMatrix a = csr_from_dense(c.rows, c.cols, w.data());
          CHECK(a.narrow() == (c.cols <= 65536));
          std::vector<float> y(size_t(B * c.rows), -7.0f);
          csr_linear(a, B, d.x.data(), d.b(), y.data());
          check_close(y, d.want, d.mag);
          std::vector<float> yr(size_t(B * c.rows), -7.0f);
          csr_linear_ref(a, B, d.x.data(), d.b(), yr.data());
          check_close(yr, d.want, d.mag);
        }
}

TEST_CASE("csr_linear balances skewed rows and gives the same bits on 1 and 2 threads") {
  // The first 20 rows dense, the rest nearly empty: the thread split must follow the entries.
  const int64_t rows = 200, cols = 513, B = 70;
  auto w = masked_weights(rows, cols, 0.99, 5);
  auto dense_rows = random_vec(size_t(20 * cols), 6);
  std::copy(dense_rows.begin(), dense_rows.end(), w.begin());
  LinearCase c{rows, cols, 0.0, B, true};
  auto d = linear_data(c, w);
  CsrMatrix a = csr_from_dense(rows, cols, w.data());
  for (int64_t b : {int64_t(1), B}) {
    std::vector<float> y1(size_t(b * rows)), y2(size_t(b * rows));
    const int before = num_threads();
    set_num_threads(1);
    csr_linear(a, b, d.x.data(), d.b(), y1.data());
    set_num_threads(2);
    csr_linear(a, b, d.x.data(), d.b(), y2.data());
    set_num_threads(before);
    CHECK(y1 == y2);
    check_close(y2, std::vector<float>(d.want.begin(), d.want.begin() + b * rows),
                std::vector<float>(d.mag.begin(), d.mag.begin() + b * rows));
  }
}

TEST_CASE("csr_linear_ex: transposed x and y and the fused ReLU equal the dense product") {
  // (rows, cols, B): one panel, a ragged last panel, more panels than threads; skewed rows.
  const int64_t cases[][3] = {{1, 1, 1},       {17, 33, 3},    {33, 17, 4},   {300, 784, 64},
                              {100, 300, 129}, {10, 100, 256}, {200, 513, 70}};
  for (auto& cs : cases)
    for (bool bias : {false, true}) {
      const int64_t rows = cs[0], cols = cs[1], B = cs[2];
      auto w = masked_weights(rows, cols, 0.9, uint32_t(rows + cols));
      if (rows == 200) {  // the first 20 rows dense: the row split must follow the entries
        auto dense_rows = random_vec(size_t(20 * cols), 6);
        std::copy(dense_rows.begin(), dense_rows.end(), w.begin());
      }
      LinearCase c{rows, cols, 0.9, B, bias};
      auto d = linear_data(c, w);
      CsrMatrix a = csr_from_dense(rows, cols, w.data());
      std::vector<float> xt(size_t(cols * B));  // (cols, B)
      for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < cols; j++) xt[j * B + b] = d.x[b * cols + j];
      std::vector<float> plain(size_t(B * rows));
      csr_linear(a, B, d.x.data(), d.b(), plain.data());
      for (bool x_t : {false, true})
        for (bool y_t : {false, true})
          for (bool relu : {false, true}) {
            CAPTURE(rows);
            CAPTURE(cols);
            CAPTURE(B);
            CAPTURE(bias);
            CAPTURE(x_t);
            CAPTURE(y_t);
            CAPTURE(relu);
            std::vector<float> got[2];
            const int before = num_threads();
            for (int t : {1, 2}) {
              set_num_threads(t);
              std::vector<float> y(size_t(B * rows), -7.0f);
              csr_linear_ex(a, B, x_t ? xt.data() : d.x.data(), x_t, d.b(), relu, y.data(), y_t);
              got[t - 1].resize(y.size());  // back to (B, rows)
              for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < rows; i++)
                  got[t - 1][b * rows + i] = y_t ? y[i * B + b] : y[b * rows + i];
            }
            set_num_threads(before);
            CHECK(got[0] == got[1]);  // the sums do not depend on the thread split
            auto want = d.want;
            for (auto& v : want) v = relu ? std::max(v, 0.0f) : v;
            check_close(got[1], want, d.mag);
            if (B >= 4 && !relu) CHECK(got[1] == plain);  // csr_linear's sums, same order
          }
    }
}

TEST_CASE("bsr_linear equals the dense masked product, edge blocks included") {
  const int64_t blocks[][2] = {{1, 4}, {4, 4}, {1, 8}, {2, 3}, {4, 1}, {3, 16}};
  const int64_t shapes[][2] = {{1, 1}, {3, 5}, {17, 33}, {33, 17}, {300, 784}, {10, 12544}};
  for (auto& bl : blocks)
    for (auto& sh : shapes)
      for (double sp : {0.0, 0.5, 0.9, 1.0})
        for (int64_t B : kBatches) {
          const int64_t rows = sh[0], cols = sh[1], br = bl[0], bc = bl[1];
          if (rows * cols > 100000 && (B == 2 || B == 129 || bc == 16 || bc == 8)) continue;
          CAPTURE(br);
          CAPTURE(bc);
          CAPTURE(rows);
          CAPTURE(cols);
          CAPTURE(sp);
          CAPTURE(B);
          // A block mask (whole blocks zeroed) plus a few single zeros inside kept blocks.
          auto w = masked_weights(rows, cols, 0.1, uint32_t(rows + cols + br));
          std::mt19937 rng(uint32_t(rows * 7 + bc));
          std::uniform_real_distribution<double> u(0.0, 1.0);
          for (int64_t I = 0; I < (rows + br - 1) / br; I++)
            for (int64_t J = 0; J < (cols + bc - 1) / bc; J++)
              if (u(rng) < sp)
                for (int64_t i = I * br; i < std::min(rows, I * br + br); i++)
                  for (int64_t j = J * bc; j < std::min(cols, J * bc + bc); j++)
                    w[i * cols + j] = 0.0f;
          LinearCase c{rows, cols, sp, B, B % 2 == 1};
          auto d = linear_data(c, w);
          BsrMatrix a = bsr_from_dense(rows, cols, br, bc, w.data());
          std::vector<float> y(size_t(B * rows), -7.0f);
          bsr_linear(a, B, d.x.data(), d.b(), y.data());
          check_close(y, d.want, d.mag);
        }
}

// Dense weights where each group of m columns keeps at most n random nonzeros (sometimes
// fewer), the last group short when cols % m != 0.
std::vector<float> nm_weights(int64_t rows, int64_t cols, int64_t n, int64_t m, uint32_t seed) {
  auto w = random_vec(size_t(rows * cols), seed);
  std::mt19937 rng(seed + 1);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t g0 = 0; g0 < cols; g0 += m) {
      const int64_t len = std::min(m, cols - g0);
      std::vector<int64_t> pos(len);
      for (int64_t c = 0; c < len; c++) pos[c] = c;
      std::shuffle(pos.begin(), pos.end(), rng);
      const int64_t keep = std::min<int64_t>(len, int64_t(rng() % (n + 1)));
      for (int64_t c = keep; c < len; c++) w[i * cols + g0 + pos[c]] = 0.0f;
    }
  return w;
}

TEST_CASE("nm_linear equals the dense masked product, ragged last group included") {
  const int64_t patterns[][2] = {{2, 4}, {1, 3}, {2, 8}, {4, 8}, {3, 5}};
  const int64_t shapes[][2] = {{1, 1}, {3, 6}, {17, 33}, {33, 17}, {300, 784}, {10, 12545}};
  for (auto& pt : patterns)
    for (auto& sh : shapes)
      for (int64_t B : kBatches) {
        const int64_t rows = sh[0], cols = sh[1], n = pt[0], m = pt[1];
        if (rows * cols > 100000 && (B == 2 || B == 129)) continue;
        CAPTURE(n);
        CAPTURE(m);
        CAPTURE(rows);
        CAPTURE(cols);
        CAPTURE(B);
        auto w = nm_weights(rows, cols, n, m, uint32_t(rows * 5 + cols + m));
        LinearCase c{rows, cols, 0.5, B, B != 7};
        auto d = linear_data(c, w);
        NmMatrix a = nm_from_dense(rows, cols, n, m, w.data());
        CHECK(a.values.size() == size_t(rows * ((cols + m - 1) / m) * n));
        CHECK(std::all_of(a.index.begin(), a.index.end(), [&](uint8_t ix) { return ix < m; }));
        std::vector<float> y(size_t(B * rows), -7.0f);
        nm_linear(a, B, d.x.data(), d.b(), y.data());
        check_close(y, d.want, d.mag);
      }
}

TEST_CASE("nm_from_dense rejects a group with too many nonzeros and bad patterns") {
  // 2:4 with three nonzeros in the second group.
  std::vector<float> w = {1, 0, 0, 2, 3, 4, 0, 5};
  CHECK_THROWS_AS(nm_from_dense(1, 8, 2, 4, w.data()), Error);
  // The short last group (columns 4..5) holds two nonzeros under 1:4.
  std::vector<float> r = {1, 0, 0, 0, 2, 3};
  CHECK_THROWS_AS(nm_from_dense(1, 6, 1, 4, r.data()), Error);
  CHECK_NOTHROW(nm_from_dense(1, 6, 2, 4, r.data()));
  CHECK_THROWS_AS(nm_from_dense(1, 6, 3, 2, r.data()), Error);  // n > m
  CHECK_THROWS_AS(nm_from_dense(1, 6, 0, 4, r.data()), Error);
  CHECK_THROWS_AS(bsr_from_dense(1, 6, 0, 4, r.data()), Error);
}

TEST_CASE("pack then to_dense gives back the same weights exactly") {
  for (auto& sh : kShapes)
    for (double sp : kSparsities) {
      const int64_t rows = sh[0], cols = sh[1];
      CAPTURE(rows);
      CAPTURE(cols);
      CAPTURE(sp);
      auto w = masked_weights(rows, cols, sp, uint32_t(rows + cols * 3));
      std::vector<float> back(w.size(), 9.0f);
      CsrMatrix c = csr_from_dense(rows, cols, w.data());
      CHECK((c.col16.empty() != c.col32.empty() || c.nnz() == 0));
      CHECK((c.narrow() ? c.col16.size() : c.col32.size()) == size_t(c.nnz()));
      csr_to_dense(c, back.data());
      CHECK(back == w);
      for (int64_t br : {1, 4})
        for (int64_t bc : {4, 3}) {
          BsrMatrix b = bsr_from_dense(rows, cols, br, bc, w.data());
          std::fill(back.begin(), back.end(), 9.0f);
          bsr_to_dense(b, back.data());
          CHECK(back == w);
        }
    }
  for (int64_t m : {4, 3, 7}) {
    auto w = nm_weights(13, 50, 2, m, uint32_t(m));
    std::vector<float> back(w.size(), 9.0f);
    nm_to_dense(nm_from_dense(13, 50, 2, m, w.data()), back.data());
    CHECK(back == w);
  }
}

TEST_CASE("bytes() of tiny matrices, counted by hand") {
  // 3x5 with 4 nonzeros.
  std::vector<float> w = {1, 0, 0, 2, 0,  //
                          0, 0, 0, 0, 0,  //
                          0, 3, 0, 0, 4};
  CsrMatrix c = csr_from_dense(3, 5, w.data());
  CHECK(c.nnz() == 4);
  CHECK(c.bytes() == 4 * 4 + 2 * 4 + 4 * 4);  // row_ptr, 16-bit columns, values
  // 2x2 blocks: block rows {0,1}, {2}; block columns {0,1}, {2,3}, {4}. Kept: (0,0), (0,1),
  // (1,0), (1,2): 3 block-row pointers, 4 block columns, 4 x 4 values.
  BsrMatrix b = bsr_from_dense(3, 5, 2, 2, w.data());
  CHECK(b.nblocks() == 4);
  CHECK(b.bytes() == 4 * 3 + 4 * 4 + 4 * 4 * 4);
  // 2:4 on 5 columns: 2 groups per row, 2 entries each: 12 values and 12 one-byte positions.
  NmMatrix n = nm_from_dense(3, 5, 2, 4, w.data());
  CHECK(n.bytes() == 4 * 12 + 12);
  // 32-bit columns past 65536.
  std::vector<float> wide(70000, 0.0f);
  wide[69999] = 1.0f;
  CsrMatrix c32 = csr_from_dense(1, 70000, wide.data());
  CHECK(!c32.narrow());
  CHECK(c32.col32.size() == 1);
  CHECK(c32.bytes() == 4 * 2 + 4 + 4);
}

TEST_CASE("csr_conv2d equals conv2d_forward_ref on the same masked weights") {
  struct ConvCase {
    Conv2dShape s;
    double sparsity;
    bool bias;
    int64_t empty_filter;  // an output channel zeroed whole (-1: none)
  };
  const ConvCase cases[] = {
      {{1, 3, 8, 8, 4, 3, 3, 1, 1, 1}, 0.5, true, -1},     // one sample: threads share it
      {{3, 3, 8, 8, 4, 3, 3, 1, 1, 1}, 0.5, false, 1},     // a sample per thread
      {{2, 2, 9, 7, 5, 3, 3, 2, 1, 1}, 0.9, true, -1},     // stride 2, odd sizes
      {{1, 3, 10, 9, 6, 3, 3, 2, 1, 1}, 0.6, true, 0},     // stride 2 split over channels
      {{2, 3, 11, 13, 4, 3, 3, 3, 2, 1}, 0.5, true, -1},   // stride 3, pad 2
      {{2, 2, 11, 10, 3, 3, 2, 1, 2, 2}, 0.5, true, -1},   // dilation 2, pad 2, 3x2 kernel
      {{2, 2, 12, 11, 4, 3, 3, 2, 2, 2}, 0.5, false, -1},  // dilation 2 with stride 2
      {{2, 2, 5, 37, 4, 3, 3, 2, 0, 1}, 0.5, true, -1},    // stride 2: rows past 32, odd, no pad
      {{1, 2, 6, 33, 4, 3, 3, 2, 2, 1}, 0.5, false, -1},   // stride 2, even pad, 33 wide
      {{1, 2, 4, 5, 3, 3, 3, 1, 3, 1}, 0.3, true, -1},     // padding wider than the kernel
      {{2, 4, 6, 6, 8, 1, 1, 1, 0, 1}, 0.7, true, 2},      // 1x1: x read directly
      {{1, 4, 6, 6, 8, 1, 1, 1, 1, 1}, 0.7, true, -1},     // 1x1 padded: y written in place
      {{1, 4, 6, 6, 8, 1, 1, 2, 0, 1}, 0.7, false, -1},    // 1x1 stride 2
      {{3, 8, 28, 28, 16, 5, 5, 1, 2, 1}, 0.9, true, 5},   // more than 64 output positions
      // Big enough (stored entries x outputs >= 32768) for two threads:
      {{1, 16, 32, 32, 32, 3, 3, 2, 1, 1}, 0.9, true, -1},  // a ResNet downsampling conv
      {{1, 8, 20, 20, 12, 3, 3, 1, 1, 1}, 0.8, true, 3},    // one sample, bands of rows
      {{1, 6, 23, 19, 10, 3, 3, 1, 2, 2}, 0.85, true, 4},   // the same, dilation 2
      {{1, 32, 6, 6, 24, 3, 3, 1, 1, 1}, 0.5, true, -1},    // under 4 rows a thread: channels
      {{1, 2, 64, 64, 6, 3, 3, 1, 1, 1}, 0.9, true, 1},     // bands of rows of 0-2 weights
      {{1, 8, 40, 40, 12, 3, 3, 2, 2, 2}, 0.8, true, -1},   // bands at stride 2, dilation 2
      {{1, 4, 50, 49, 8, 3, 3, 3, 1, 1}, 0.5, false, 2},    // bands at stride 3
      {{1, 48, 16, 16, 24, 1, 1, 1, 0, 1}, 0.7, false, 1},  // the same, 1x1: x read directly
      {{2, 8, 28, 28, 16, 3, 3, 1, 1, 1}, 0.9, true, -1},   // 2 samples on 3 threads
      {{1, 64, 12, 12, 16, 1, 1, 1, 1, 1}, 0.7, false, 0},  // the same, in place
      {{2, 3, 5, 5, 4, 3, 3, 1, 1, 1}, 1.0, true, -1},      // all-zero weights: bias only
      {{1, 3, 5, 5, 4, 3, 3, 1, 1, 1}, 0.0, false, -1},     // dense
      {{1, 1, 1, 1, 2, 1, 1, 1, 0, 1}, 0.0, true, -1},      // one pixel
      {{3, 1, 28, 28, 8, 3, 3, 1, 1, 1}, 0.9, true, 2},     // cnn2's first conv: 0-2 weights a row
      {{2, 1, 13, 21, 5, 3, 3, 1, 1, 1}, 0.8, false, -1},   // 0-2 weights, rows of 16 + 5
      {{2, 4, 11, 19, 6, 3, 3, 1, 1, 1}, 0.9, true, -1},    // 1-6 weights: rows and panels
      {{1, 3, 17, 30, 8, 3, 3, 1, 1, 1}, 0.85, true, 3},    // about 4 weights a row
      // From 16 samples, 16 samples to a vector (2 x 8 output tiles):
      {{17, 3, 9, 7, 5, 3, 3, 1, 1, 1}, 0.5, true, 2},      // a group of 1, odd rows, 7 wide
      {{16, 4, 12, 11, 6, 3, 3, 2, 1, 1}, 0.7, true, -1},   // stride 2
      {{33, 2, 11, 10, 3, 3, 2, 1, 2, 2}, 0.5, false, -1},  // dilation 2, 3x2, three groups
      {{20, 3, 6, 19, 4, 5, 5, 1, 2, 1}, 0.6, true, 1},     // 5x5, 19 wide: tiles of 8, 8, 3
      {{16, 5, 4, 5, 3, 3, 3, 1, 3, 1}, 0.3, true, -1},     // padding wider than the kernel
      {{18, 4, 6, 6, 8, 1, 1, 1, 1, 1}, 0.7, true, -1},     // 1x1 padded
      {{16, 2, 5, 37, 4, 3, 3, 2, 0, 1}, 0.5, false, 3},    // 37 wide: a row in 16, 16 and 5
      {{32, 6, 3, 3, 4, 3, 3, 1, 1, 1}, 1.0, true, -1},     // all-zero weights: bias only
      {{16, 1, 1, 1, 2, 1, 1, 1, 0, 1}, 0.0, true, -1},     // one pixel: 1x1 reads x directly
      {{19, 16, 12, 12, 16, 3, 3, 1, 1, 1}, 0.5, true, 7},  // two groups on three threads
      {{16, 1, 20, 20, 16, 3, 3, 1, 1, 1}, 0.9, true, -1},  // few weights a row: per sample
      {{18, 36, 5, 7, 6, 3, 3, 1, 1, 1}, 0.3, true, 2},     // channel blocks, an empty filter
  };
  for (const auto& c : cases) {
    const Conv2dShape& s = c.s;
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.H);
    CAPTURE(s.R);
    CAPTURE(s.S);
    CAPTURE(s.stride);
    CAPTURE(s.pad);
    CAPTURE(s.dilation);
    CAPTURE(c.sparsity);
    const int64_t CRS = s.C * s.R * s.S, outn = s.N * s.K * s.P() * s.Q();
    auto w = masked_weights(s.K, CRS, c.sparsity, uint32_t(CRS + s.K));
    if (c.empty_filter >= 0)
      std::fill(w.begin() + c.empty_filter * CRS, w.begin() + (c.empty_filter + 1) * CRS, 0.0f);
    auto x = random_vec(size_t(s.N * s.C * s.H * s.W), uint32_t(s.H * s.W));
    const auto x_other = random_vec(x.size(), uint32_t(s.H * s.W + 1));
    std::vector<float> bias = c.bias ? random_vec(size_t(s.K), 3) : std::vector<float>();
    const float* bp = c.bias ? bias.data() : nullptr;
    std::vector<float> want(outn), mag(outn);
    conv2d_forward_ref(s, x.data(), w.data(), bp, want.data());
    auto xa = abs_vec(x), wa = abs_vec(w), ba = abs_vec(bias);
    conv2d_forward_ref(s, xa.data(), wa.data(), c.bias ? ba.data() : nullptr, mag.data());
    CsrMatrix a = csr_from_dense(s.K, CRS, w.data());
    for (bool relu : {false, true}) {
      CAPTURE(relu);
      std::vector<float> got[3];
      const int before = num_threads();
      for (int t : {1, 2, 3}) {
        set_num_threads(t);
        // Another input first: the threads' buffers then hold other values than x's in every
        // row a call could fail to lay out again.
        got[t - 1].assign(size_t(outn), -7.0f);
        csr_conv2d(a, s, x_other.data(), bp, got[t - 1].data(), relu);
        csr_conv2d(a, s, x.data(), bp, got[t - 1].data(), relu);
      }
      set_num_threads(before);
      CHECK(got[0] == got[1]);  // the sums do not depend on the thread split
      CHECK(got[0] == got[2]);
      // Offsets made once, for one sample of the shape, give the same result at any batch.
      Conv2dShape one = s;
      one.N = 1;
      const std::vector<int32_t> off = csr_conv2d_offsets(a, one);
      CHECK(int64_t(off.size()) == a.nnz());
      std::vector<float> got_off(size_t(outn), -7.0f);
      csr_conv2d(a, s, x.data(), bp, got_off.data(), relu, off.data());
      CHECK(got_off == got[1]);
      auto want_r = want;
      for (auto& v : want_r) v = relu ? std::max(v, 0.0f) : v;
      check_close(got[1], want_r, mag);
      // A residual added before the ReLU, on 1 and 3 threads.
      const auto res = random_vec(size_t(outn), uint32_t(outn + 5));
      auto want_res = want, mag_res = mag;
      for (int64_t e = 0; e < outn; e++) {
        want_res[e] = want[e] + res[e];
        if (relu) want_res[e] = std::max(want_res[e], 0.0f);
        mag_res[e] = mag[e] + std::fabs(res[e]);
      }
      std::vector<float> got_res[2];
      for (int t : {1, 3}) {
        set_num_threads(t);
        got_res[t / 2].assign(size_t(outn), -7.0f);
        csr_conv2d(a, s, x.data(), bp, got_res[t / 2].data(), relu, nullptr, res.data());
      }
      set_num_threads(before);
      CHECK(got_res[0] == got_res[1]);
      check_close(got_res[0], want_res, mag_res);
    }
  }
  // 32-bit column indices: C*R*S > 65536.
  {
    const Conv2dShape s{1, 7300, 3, 3, 2, 3, 3, 1, 1, 1};
    const int64_t CRS = s.C * 9, outn = s.K * 9;
    auto w = masked_weights(s.K, CRS, 0.95, 11);
    auto x = random_vec(size_t(s.C * 9), 12);
    std::vector<float> want(outn), mag(outn), got(outn, -7.0f);
    conv2d_forward_ref(s, x.data(), w.data(), nullptr, want.data());
    auto xa = abs_vec(x), wa = abs_vec(w);
    conv2d_forward_ref(s, xa.data(), wa.data(), nullptr, mag.data());
    CsrMatrix a = csr_from_dense(s.K, CRS, w.data());
    REQUIRE(!a.narrow());
    csr_conv2d(a, s, x.data(), nullptr, got.data());
    check_close(got, want, mag);
  }
  // A weight of the wrong shape is an error, not a crash.
  std::vector<float> w(4 * 10, 1.0f);
  CsrMatrix a = csr_from_dense(4, 10, w.data());
  Conv2dShape s{1, 3, 5, 5, 4, 3, 3, 1, 1, 1};
  std::vector<float> x(75), y(100);
  CHECK_THROWS_AS(csr_conv2d(a, s, x.data(), nullptr, y.data()), Error);
  CHECK_THROWS_AS(csr_conv2d_offsets(a, s), Error);
}

TEST_CASE("csr_conv2d lays out its padding again when another layout used the buffer") {
  // One thread, so one buffer: each thread keeps the zeros of the last layout it laid out and
  // writes only the input over them when the next call has the same one. The same input with
  // other padding or strides writes its values where these zeros are.
  const Conv2dShape shapes[] = {
      {1, 2, 8, 8, 3, 3, 3, 1, 1, 1},  // A: rows of 10 with a zero at each end
      {1, 2, 8, 8, 3, 3, 3, 1, 0, 1},  // the same input unpadded: rows of 8, input everywhere
      {1, 2, 8, 8, 3, 3, 3, 1, 1, 1},  // A again
      {1, 2, 8, 8, 3, 3, 3, 2, 1, 1},  // B: A's padding at stride 2, four 5 x 5 phase planes
      {1, 2, 8, 8, 3, 3, 3, 2, 1, 1},  // B again: only the input is written
      {1, 2, 8, 8, 3, 3, 3, 2, 2, 1},  // padding 2 at stride 2: 6 x 6 planes
      {1, 2, 8, 8, 3, 3, 3, 2, 1, 1},  // B again
      {1, 2, 8, 8, 3, 3, 3, 1, 1, 1},  // A again
      {1, 3, 8, 8, 3, 3, 3, 1, 1, 1},  // A with a third channel, over the planes of padding 2
  };
  const int before = num_threads();
  set_num_threads(1);
  uint32_t seed = 50;
  for (const Conv2dShape& s : shapes) {
    CAPTURE(s.H);
    CAPTURE(s.pad);
    CAPTURE(s.stride);
    const int64_t CRS = s.C * s.R * s.S, outn = s.K * s.P() * s.Q();
    auto w = masked_weights(s.K, CRS, 0.3, 7);
    auto x = random_vec(size_t(s.C * s.H * s.W), seed++);
    std::vector<float> want(outn), mag(outn), got(outn, -7.0f);
    conv2d_forward_ref(s, x.data(), w.data(), nullptr, want.data());
    auto xa = abs_vec(x), wa = abs_vec(w);
    conv2d_forward_ref(s, xa.data(), wa.data(), nullptr, mag.data());
    CsrMatrix a = csr_from_dense(s.K, CRS, w.data());
    csr_conv2d(a, s, x.data(), nullptr, got.data());
    check_close(got, want, mag);
  }
  set_num_threads(before);
}

TEST_CASE("validate accepts packed matrices and rejects broken arrays") {
  auto w = masked_weights(9, 13, 0.5, 4);
  CsrMatrix c = csr_from_dense(9, 13, w.data());
  BsrMatrix b = bsr_from_dense(9, 13, 4, 4, w.data());
  auto wn = nm_weights(9, 13, 2, 4, 4);
  NmMatrix n = nm_from_dense(9, 13, 2, 4, wn.data());
  CHECK_NOTHROW(csr_validate(c));
  CHECK_NOTHROW(bsr_validate(b));
  CHECK_NOTHROW(nm_validate(n));
  REQUIRE(c.nnz() > 0);
  {
    CsrMatrix x = c;
    x.col16[0] = 13;  // column out of range
    CHECK_THROWS_AS(csr_validate(x), Error);
    x = c;
    x.row_ptr[3] = x.row_ptr[4] + 1;  // decreasing
    CHECK_THROWS_AS(csr_validate(x), Error);
    x = c;
    x.col32.assign(x.col16.begin(), x.col16.end());  // both index arrays
    CHECK_THROWS_AS(csr_validate(x), Error);
    x = c;
    x.values.pop_back();
    CHECK_THROWS_AS(csr_validate(x), Error);
  }
  {
    BsrMatrix x = b;
    x.block_col[0] = 4;  // 13 columns make 4 block columns: 0..3
    CHECK_THROWS_AS(bsr_validate(x), Error);
    x = b;
    x.values.pop_back();
    CHECK_THROWS_AS(bsr_validate(x), Error);
  }
  {
    NmMatrix x = n;
    x.index[x.index.size() - 1] = 1;  // the last group of each row is one column wide
    CHECK_THROWS_AS(nm_validate(x), Error);
    x = n;
    x.index[0] = 4;
    CHECK_THROWS_AS(nm_validate(x), Error);
  }
}
