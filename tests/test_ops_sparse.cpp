// Sparse weights in the engine (engine/sparse_weight.h) and their op front-ends
// (engine/ops_sparse.cpp) on the CPU, against the dense ops on the same weights:
//   - SparseWeight packs every format and unpacks to the same dense weight; CSR keeps 16-bit
//     columns up to 65536 columns and 32-bit beyond; the views see the arrays
//   - sparse_linear in every format (x_t / y_t for CSR, fused ReLU, no bias) equals linear()
//   - sparse_conv2d (stride, padding, dilation, residual, ReLU, precomputed offsets) equals
//     conv2d()
//   - bad calls: shapes, formats, kernels, residuals and offsets that do not fit are refused
// tests/test_cuda_sparse.cpp runs the same front-ends on a GPU against these CPU results.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "engine/rng.h"
#include "engine/sparse_weight.h"
#include "kernels/cpu/sparse.h"
#include "tests/kernel_test_util.h"

using namespace sprig;

namespace {

// W of `shape` with about `density` of its weights nonzero (a kept weight is never 0).
Tensor sparse_dense_weight(const Shape& shape, double density, uint32_t seed) {
  std::vector<float> w = testing::random_vec(size_t(numel(shape)), seed);
  Rng rng(seed + 1);
  for (float& v : w) {
    if (rng.uniform() >= density)
      v = 0.0f;
    else if (v == 0.0f)
      v = 0.5f;
  }
  return Tensor::from_vector(w, shape);
}

Tensor random_tensor(const Shape& shape, uint32_t seed) {
  return Tensor::from_vector(testing::random_vec(size_t(numel(shape)), seed), shape);
}

Tensor transposed(const Tensor& a) {  // (r, c) -> (c, r)
  const int64_t r = a.size(0), c = a.size(1);
  Tensor t = Tensor::empty({c, r});
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) t.data()[j * r + i] = a.data()[i * c + j];
  return t;
}

Tensor relu_of(const Tensor& a) {
  Tensor r = a.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r.data()[i] = std::max(r.data()[i], 0.0f);
  return r;
}

// Outputs agree to float rounding of sums of up to a few hundred terms of magnitude ~1.
void check_close(const Tensor& got, const Tensor& want, const char* what) {
  REQUIRE(got.shape() == want.shape());
  int bad = 0;
  for (int64_t i = 0; i < got.numel(); ++i)
    if (!(std::fabs(got.data()[i] - want.data()[i]) <= 1e-4f * (1.0f + std::fabs(want.data()[i]))))
      if (++bad <= 3)
        MESSAGE(what << ": [" << i << "] " << got.data()[i] << " vs " << want.data()[i]);
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << got.numel() << " differ");
}

}  // namespace

TEST_CASE("SparseWeight: every format packs and unpacks to the same weight") {
  const Tensor w = sparse_dense_weight({12, 3, 2, 2}, 0.3, 1);  // (K, C, R, S): 12 x 12
  for (SparseFormat f : {SparseFormat::Csr, SparseFormat::Bsr, SparseFormat::Nm}) {
    CAPTURE(sparse_format_name(f));
    Tensor src = w;
    if (f == SparseFormat::Nm) {  // keep at most 2 of every 4
      src = w.clone();
      float* p = src.data();
      for (int64_t g = 0; g < src.numel(); g += 4) p[g] = p[g + 1] = 0.0f;
    }
    const SparseWeight s = sparse_weight_from_dense(f, src, 2, 4, 2, 4);
    CHECK(s.format == f);
    CHECK(s.shape == src.shape());
    CHECK(s.rows() == 12);
    CHECK(s.cols() == 12);
    CHECK(s.device().is_cpu());
    CHECK(s.to_dense().to_vector() == src.to_vector());
    CHECK(s.to(Device::cpu()).to_dense().to_vector() == src.to_vector());
    int64_t nz = 0;
    for (float v : src.to_vector()) nz += v != 0.0f;
    CHECK(s.nonzero() == nz);
    CHECK(s.stored() >= nz);
    CHECK(s.bytes() > 0);
  }
  // Views: only of the weight's own format.
  const SparseWeight csr = sparse_weight_from_dense(SparseFormat::Csr, w);
  CHECK_THROWS_AS(csr.bsr(), Error);
  CHECK_THROWS_AS(csr.nm(), Error);
  CHECK_THROWS_AS(SparseWeight().csr(), Error);
  const CsrRef r = csr.csr();
  CHECK(r.narrow());
  CHECK(r.col16 != nullptr);
  CHECK(r.col32 == nullptr);
  CHECK(r.row_order == nullptr);
  CHECK(r.nnz == csr.stored());
  CHECK(r.row_ptr[r.rows] == r.nnz);
  // 32-bit columns past 65536.
  const SparseWeight wide =
      sparse_weight_from_dense(SparseFormat::Csr, sparse_dense_weight({2, 70000}, 0.01, 2));
  CHECK(wide.indices.dtype() == DType::I32);
  CHECK(!wide.csr().narrow());
  // N:M refuses a group with too many nonzeros; an inconsistent matrix is refused by name.
  CHECK_THROWS_AS(sparse_weight_from_dense(SparseFormat::Nm, Tensor::ones({2, 8})), Error);
  cpu::CsrMatrix bad = cpu::csr_from_dense(12, 12, w.data());
  bad.row_ptr.back() += 1;
  CHECK_THROWS_AS(sparse_weight(bad, {12, 12}), Error);
  CHECK_THROWS_AS(sparse_weight(cpu::csr_from_dense(12, 12, w.data()), {12, 13}), Error);
}

TEST_CASE("sparse_linear equals linear in every format and layout") {
  struct Case {
    int64_t N, in, out;
    double density;
  };
  for (const Case& c : {Case{1, 7, 5, 0.5}, Case{3, 33, 17, 0.2}, Case{9, 64, 40, 0.1},
                        Case{64, 100, 30, 0.3}, Case{5, 20, 8, 0.0}}) {
    CAPTURE(c.N);
    CAPTURE(c.in);
    CAPTURE(c.out);
    const Tensor w = sparse_dense_weight({c.out, c.in}, c.density, uint32_t(c.in));
    const Tensor x = random_tensor({c.N, c.in}, 3), bias = random_tensor({c.out}, 4);
    const Tensor want = linear(x, w, bias), want_nob = linear(x, w, Tensor());
    for (SparseFormat f : {SparseFormat::Csr, SparseFormat::Bsr}) {
      CAPTURE(sparse_format_name(f));
      const SparseWeight s = sparse_weight_from_dense(f, w, 1, 4);
      check_close(sparse_linear(x, s, bias), want, "sparse_linear");
      check_close(sparse_linear(x, s, Tensor()), want_nob, "no bias");
      SparseOptions relu;
      relu.relu = true;
      check_close(sparse_linear(x, s, bias, relu), relu_of(want), "relu");
    }
    const SparseWeight s = sparse_weight_from_dense(SparseFormat::Csr, w);
    for (bool x_t : {false, true})
      for (bool y_t : {false, true}) {
        CAPTURE(x_t);
        CAPTURE(y_t);
        SparseOptions o;
        o.x_t = x_t;
        o.y_t = y_t;
        const Tensor y = sparse_linear(x_t ? transposed(x) : x, s, bias, o);
        check_close(y, y_t ? transposed(want) : want, "transposed layouts");
      }
  }
  // N:M, with 2 of every 4 kept.
  Tensor w = sparse_dense_weight({6, 16}, 1.0, 7);
  for (int64_t g = 0; g < w.numel(); g += 4) w.data()[g + 1] = w.data()[g + 3] = 0.0f;
  const Tensor x = random_tensor({5, 16}, 8), bias = random_tensor({6}, 9);
  check_close(sparse_linear(x, sparse_weight_from_dense(SparseFormat::Nm, w), bias),
              linear(x, w, bias), "nm");
}

TEST_CASE("sparse_conv2d equals conv2d: strides, padding, dilation, residual, offsets") {
  struct Case {
    int64_t N, C, H, W, K, R, S, stride, pad, dilation;
  };
  for (const Case& c :
       {Case{1, 1, 5, 5, 2, 3, 3, 1, 1, 1}, Case{3, 2, 7, 6, 5, 3, 2, 2, 1, 1},
        Case{2, 3, 9, 9, 4, 3, 3, 1, 2, 2}, Case{4, 8, 4, 4, 16, 1, 1, 1, 0, 1},
        Case{17, 4, 6, 6, 8, 3, 3, 1, 1, 1}}) {  // 17 samples: the 16-lane path where built
    CAPTURE(c.N);
    CAPTURE(c.C);
    CAPTURE(c.K);
    CAPTURE(c.stride);
    CAPTURE(c.pad);
    CAPTURE(c.dilation);
    const Tensor w = sparse_dense_weight({c.K, c.C, c.R, c.S}, 0.3, uint32_t(c.K + c.C));
    const Tensor x = random_tensor({c.N, c.C, c.H, c.W}, 21), bias = random_tensor({c.K}, 22);
    const Conv2dOptions conv{c.stride, c.pad, c.dilation};
    const Tensor want = conv2d(x, w, bias, conv);
    const SparseWeight s = sparse_weight_from_dense(SparseFormat::Csr, w);
    check_close(sparse_conv2d(x, s, bias, conv), want, "sparse_conv2d");
    const Tensor residual = random_tensor(want.shape(), 23);
    SparseOptions o;
    o.relu = true;
    o.residual = residual;
    check_close(sparse_conv2d(x, s, bias, conv, o), relu_of(add(want, residual)),
                "residual + relu");
    const Conv2dShape shape{1, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad, c.dilation};
    const std::vector<int32_t> off = cpu::csr_conv2d_offsets(s.csr(), shape);
    SparseOptions with_offsets;
    with_offsets.conv_offsets = Tensor::from_vector_i32(off, {int64_t(off.size())});
    check_close(sparse_conv2d(x, s, Tensor(), conv, with_offsets), conv2d(x, w, Tensor(), conv),
                "offsets, no bias");
  }
}

TEST_CASE("sparse ops refuse what does not fit, naming it") {
  const Tensor w = sparse_dense_weight({4, 2, 3, 3}, 0.5, 1);
  const SparseWeight conv_w = sparse_weight_from_dense(SparseFormat::Csr, w);
  const SparseWeight lin_w =
      sparse_weight_from_dense(SparseFormat::Csr, sparse_dense_weight({4, 18}, 0.5, 2));
  const SparseWeight bsr_w =
      sparse_weight_from_dense(SparseFormat::Bsr, sparse_dense_weight({4, 18}, 0.5, 2));
  const Tensor x = random_tensor({2, 2, 5, 5}, 3), x2 = random_tensor({3, 18}, 4);
  CHECK_THROWS_WITH_AS(sparse_linear(random_tensor({3, 17}, 5), lin_w, Tensor()),
                       doctest::Contains("does not fit a 4x18 weight"), Error);
  CHECK_THROWS_WITH_AS(sparse_linear(x2, lin_w, random_tensor({5}, 6)),
                       doctest::Contains("does not match 4 outputs"), Error);
  SparseOptions k1;
  k1.kernel = 1;  // the CPU has one CSR kernel
  CHECK_THROWS_WITH_AS(sparse_linear(x2, lin_w, Tensor(), k1), doctest::Contains("kernel 1"),
                       Error);
  SparseOptions t;
  t.x_t = true;
  CHECK_THROWS_WITH_AS(sparse_linear(transposed(x2), bsr_w, Tensor(), t),
                       doctest::Contains("(N, features) only"), Error);
  CHECK_THROWS_AS(sparse_linear(x2, SparseWeight(), Tensor()), Error);
  CHECK_THROWS_WITH_AS(sparse_conv2d(x, lin_w, Tensor()),
                       doctest::Contains("(K, C, R, S) conv weight in CSR"), Error);
  CHECK_THROWS_WITH_AS(sparse_conv2d(random_tensor({2, 3, 5, 5}, 7), conv_w, Tensor()),
                       doctest::Contains("does not fit weight"), Error);
  CHECK_THROWS_WITH_AS(sparse_conv2d(random_tensor({1, 2, 2, 2}, 8), conv_w, Tensor()),
                       doctest::Contains("smaller than the (dilated) kernel"), Error);
  SparseOptions r;
  r.residual = random_tensor({2, 4, 3, 4}, 9);  // the output is (2, 4, 3, 3)
  CHECK_THROWS_WITH_AS(sparse_conv2d(x, conv_w, Tensor(), {}, r),
                       doctest::Contains("residual (2, 4, 3, 4) differs"), Error);
  SparseOptions off;
  off.conv_offsets = Tensor::from_vector_i32({0, 1}, {2});  // not one per stored weight
  CHECK_THROWS_WITH_AS(sparse_conv2d(x, conv_w, Tensor(), {}, off),
                       doctest::Contains("conv_offsets"), Error);
  SparseOptions lin_off;
  lin_off.conv_offsets = off.conv_offsets;
  CHECK_THROWS_AS(sparse_linear(x2, lin_w, Tensor(), lin_off), Error);
}
