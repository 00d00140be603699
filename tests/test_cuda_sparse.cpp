// CSR Linear on the GPU (kernels/cuda/sparse.cuh, its weights uploaded by SparseWeight::to) and
// packed models run there (infer/pack.h, CudaInferenceModel). Built with tests/cuda_main.cpp, which
// exits 77 (CTest: skipped) when the machine has no usable GPU, so every case here may assume one.
//   - cuSPARSE, the row-split and column-tiled kernels (all four x_t / y_t layouts, fused ReLU,
//     float4 and scalar paths) and the naive kernel against cpu::csr_linear_ref: odd shapes,
//     empty rows, an all-zero matrix, rows longer than a warp and than a column tile, 32-bit
//     column indices, B = 1 to 5 (CSR-vector for B <= 4), 9, 64, 130, 257
//   - csr_conv2d (im2col + either kernel, fused ReLU) against cpu::conv2d_forward: stride,
//     padding, dilation, 1x1, one sample and several
//   - packed models on the GPU (every kernel forced, csr, auto; mlp and a conv model) against
//     the dense masked model on the CPU
//   - packed residual networks (resnet20, resnet20b; BN folded) on the GPU against the dense
//     model and the CPU's packed one
//   - int8 packed models (every layer int8, dense and 1 x 4 blocks on the CPU) on the GPU
//     against the same model's int8 forward on the CPU
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "engine/sparse_weight.h"
#include "infer/pack.h"
#include "infer/quantize.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/sparse.h"
#include "kernels/cuda/runtime.cuh"
#include "kernels/cuda/sparse.cuh"
#include "prune/prune.h"
#include "tests/kernel_test_util.h"
#include "tests/pack_test_util.h"

using namespace sprig;
using namespace sprig::test::pack;

namespace {

// n floats on the GPU, freed at scope exit; `offset` floats of slack in front make the data
// pointer misaligned for float4 (offset 1) on purpose.
struct DeviceFloats {
  float* base = nullptr;
  float* p = nullptr;
  size_t bytes = 0;
  explicit DeviceFloats(size_t n, size_t offset = 0) : bytes((n + offset + 1) * sizeof(float)) {
    base = static_cast<float*>(cuda::device_alloc(bytes));
    p = base + offset;
  }
  DeviceFloats(const std::vector<float>& h, size_t offset = 0) : DeviceFloats(h.size(), offset) {
    cuda::copy_from_host(p, h.data(), h.size() * sizeof(float));
  }
  ~DeviceFloats() { cuda::device_free(base, bytes); }
  std::vector<float> get(size_t n) const {
    std::vector<float> h(n);
    cuda::copy_to_host(h.data(), p, n * sizeof(float));
    return h;
  }
};

// W (rows, cols) with about `density` of its weights nonzero and every third row empty.
std::vector<float> random_weight(int64_t rows, int64_t cols, double density, uint32_t seed) {
  std::vector<float> w = testing::random_vec(size_t(rows * cols), seed);
  Rng rng(seed);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float& v = w[size_t(r * cols + c)];
      if (r % 3 == 1 || rng.uniform() >= density)
        v = 0.0f;
      else if (v == 0.0f)
        v = 0.25f;  // a kept weight is never 0
    }
  return w;
}

std::vector<float> transposed(const std::vector<float>& a, int64_t rows, int64_t cols) {
  std::vector<float> t(a.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[size_t(c * rows + r)] = a[size_t(r * cols + c)];
  return t;
}

// got and want (same layout) agree to float rounding: the tolerance scales with the sum of
// magnitudes of each output (the reference run on |W| and |x|). Summing K terms in another
// order differs by up to ~K * 6e-8 of that sum, ~sqrt(K) * 6e-8 with random signs; K <= 200
// here (the 70000-column case stores ~700 per row, but spread over random signs). Any wrong
// index or a missed entry is off by O(1) of a single term.
void check_close(const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<float>& magnitude, const char* what) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = 2e-5 * (double(magnitude[i]) + 1.0);
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tol)) {
      if (++bad <= 3) MESSAGE(what << ": [" << i << "] got " << got[i] << ", want " << want[i]);
    }
  }
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << got.size() << " outputs differ");
}

void relu_in_place(std::vector<float>& v) {
  for (float& x : v) x = x > 0.0f ? x : 0.0f;
}

struct Case {
  int64_t rows, cols, B;
  double density;
};

}  // namespace

TEST_CASE("GPU csr_linear: cuSPARSE, sprig's kernels and the naive one equal the CPU reference") {
  const Case cases[] = {
      {1, 1, 1, 1.0},      {7, 5, 3, 0.5},    {33, 65, 64, 0.3},    {100, 37, 257, 0.1},
      {5, 300, 1, 0.2},    {64, 48, 3, 0.0},  {129, 257, 64, 0.05}, {1000, 64, 130, 0.5},
      {40, 96, 257, 0.9},  {17, 200, 9, 1.0}, {300, 90, 2, 0.05},   {50, 500, 4, 0.3},
      {3, 70000, 5, 0.01},  // cols > 65536: 32-bit column indices on the CPU side
  };
  for (const Case& c : cases) {
    CAPTURE(c.rows);
    CAPTURE(c.cols);
    CAPTURE(c.B);
    CAPTURE(c.density);
    std::vector<float> w = random_weight(c.rows, c.cols, c.density, uint32_t(c.rows * 7 + c.B));
    std::vector<float> x = testing::random_vec(size_t(c.B * c.cols), 11);  // (B, cols)
    std::vector<float> bias = testing::random_vec(size_t(c.rows), 12);     // (rows)
    cpu::CsrMatrix csr = cpu::csr_from_dense(c.rows, c.cols, w.data());
    CHECK(csr.narrow() == (c.cols <= 65536));
    std::vector<float> want(size_t(c.B * c.rows)), magnitude(size_t(c.B * c.rows));  // (B, rows)
    cpu::csr_linear_ref(csr, c.B, x.data(), bias.data(), want.data());
    std::vector<float> wa = testing::abs_vec(w), xa = testing::abs_vec(x),
                       ba = testing::abs_vec(bias);
    cpu::CsrMatrix csr_abs = cpu::csr_from_dense(c.rows, c.cols, wa.data());
    cpu::csr_linear_ref(csr_abs, c.B, xa.data(), ba.data(), magnitude.data());
    std::vector<float> want_relu = want;
    relu_in_place(want_relu);

    const SparseWeight sw = sparse_weight(csr, {c.rows, c.cols}).to(Device::cuda(0));
    const CsrRef d = sw.csr();
    CHECK(d.nnz == csr.nnz());
    CHECK((d.col32 && !d.col16));  // the GPU's kernels take 32-bit columns
    const size_t ny = size_t(c.B * c.rows);
    DeviceFloats xd(x), bd(bias);
    {
      DeviceFloats y(ny);
      cuda::csr_linear(d, c.B, xd.p, bd.p, y.p, cuda::CsrAlgo::Cusparse);
      check_close(y.get(ny), want, magnitude, "cusparse");
      cuda::csr_linear(d, c.B, xd.p, nullptr, y.p, cuda::CsrAlgo::Cusparse);
      std::vector<float> nob(ny);
      cpu::csr_linear_ref(csr, c.B, x.data(), nullptr, nob.data());
      check_close(y.get(ny), nob, magnitude, "cusparse, no bias");
    }
    {
      DeviceFloats y(ny);
      cuda::csr_linear_naive(d, c.B, xd.p, bd.p, y.p);
      check_close(y.get(ny), want, magnitude, "naive");
      cuda::csr_linear(d, c.B, xd.p, bd.p, y.p);
      check_close(y.get(ny), want, magnitude, "rowsplit");
      cuda::csr_linear(d, c.B, xd.p, bd.p, y.p, cuda::CsrAlgo::ColTile);
      check_close(y.get(ny), want, magnitude, "coltile");
    }
    // csr_linear_ex in every layout, with and without the fused ReLU, aligned and not.
    const std::vector<float> want_t = transposed(want, c.B, c.rows),
                             want_relu_t = transposed(want_relu, c.B, c.rows),
                             magnitude_t = transposed(magnitude, c.B, c.rows);
    for (auto algo : cuda::kCsrAlgos)
      for (int x_t = 0; x_t < 2; ++x_t)
        for (int y_t = 0; y_t < 2; ++y_t)
          for (int relu = 0; relu < 2; ++relu)
            for (size_t offset : {size_t(0), size_t(1)}) {
              CAPTURE(cuda::csr_algo_name(algo));
              CAPTURE(x_t);
              CAPTURE(y_t);
              CAPTURE(relu);
              CAPTURE(offset);
              DeviceFloats xin(x_t ? transposed(x, c.B, c.cols) : x, offset);
              DeviceFloats y(ny, offset);
              cuda::csr_linear_ex(d, c.B, xin.p, x_t, bd.p, relu, y.p, y_t, algo);
              const auto& ref = y_t ? (relu ? want_relu_t : want_t) : (relu ? want_relu : want);
              check_close(y.get(ny), ref, y_t ? magnitude_t : magnitude, "csr_linear_ex");
            }
  }
}

TEST_CASE("GPU transpose; SparseWeight to the GPU and back") {
  for (auto [r, c] : {std::pair<int64_t, int64_t>{1, 1}, {31, 33}, {64, 64}, {257, 3}, {5, 1000}}) {
    CAPTURE(r);
    CAPTURE(c);
    std::vector<float> a = testing::random_vec(size_t(r * c), 3);
    DeviceFloats in(a), out(a.size());
    cuda::transpose(r, c, in.p, out.p);
    CHECK(out.get(a.size()) == transposed(a, r, c));
  }
  for (int64_t cols : {13, 70000}) {  // 16-bit columns on the CPU, and 32-bit
    CAPTURE(cols);
    const std::vector<float> w = random_weight(9, cols, 0.4, 5);
    const SparseWeight cpu_w =
        sparse_weight_from_dense(SparseFormat::Csr, Tensor::from_vector(w, {9, cols}));
    const SparseWeight gpu_w = cpu_w.to(Device::cuda(0));
    CHECK(gpu_w.device() == Device::cuda(0));
    CHECK(gpu_w.indices.dtype() == DType::I32);
    REQUIRE(gpu_w.row_order.defined());
    // The row order: a permutation of the rows by decreasing length (ties in row order).
    const std::vector<int32_t> order = gpu_w.row_order.to_vector_i32();
    const std::vector<int32_t> ptr = cpu_w.pointers.to_vector_i32();
    for (size_t i = 0; i < order.size(); ++i) {
      CAPTURE(i);
      if (i == 0) continue;
      const int32_t a = order[i - 1], b = order[i];
      const int32_t la = ptr[size_t(a) + 1] - ptr[size_t(a)],
                    lb = ptr[size_t(b) + 1] - ptr[size_t(b)];
      CHECK((la > lb || (la == lb && a < b)));
    }
    const SparseWeight back = gpu_w.to(Device::cpu());
    CHECK(back.indices.dtype() == cpu_w.indices.dtype());
    CHECK(!back.row_order.defined());
    CHECK(back.to_dense().to_vector() == w);
    CHECK(gpu_w.to_dense().to_vector() == w);
  }
}

TEST_CASE("GPU csr_conv2d equals the CPU convolution") {
  struct ConvCase {
    int64_t N, C, H, W, K, R, S, stride, pad, dilation;
  };
  for (const ConvCase& c :
       {ConvCase{1, 1, 5, 5, 2, 3, 3, 1, 1, 1}, ConvCase{3, 2, 7, 6, 5, 3, 2, 2, 1, 1},
        ConvCase{2, 3, 9, 9, 4, 3, 3, 1, 2, 2}, ConvCase{4, 8, 4, 4, 16, 1, 1, 1, 0, 1},
        ConvCase{5, 4, 12, 12, 8, 3, 3, 1, 1, 1}}) {
    CAPTURE(c.N);
    CAPTURE(c.C);
    CAPTURE(c.K);
    CAPTURE(c.R);
    CAPTURE(c.stride);
    CAPTURE(c.pad);
    CAPTURE(c.dilation);
    Conv2dShape s{c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad, c.dilation};
    const int64_t CRS = c.C * c.R * c.S, ny = c.N * c.K * s.P() * s.Q();
    std::vector<float> w = random_weight(c.K, CRS, 0.3, uint32_t(c.K + c.C));  // (K, C, R, S)
    std::vector<float> x = testing::random_vec(size_t(c.N * c.C * c.H * c.W), 21);
    std::vector<float> bias = testing::random_vec(size_t(c.K), 22);
    std::vector<float> want(static_cast<size_t>(ny));       // (N, K, P, Q)
    std::vector<float> magnitude(static_cast<size_t>(ny));  // (N, K, P, Q)
    cpu::conv2d_forward(s, x.data(), w.data(), bias.data(), want.data());
    std::vector<float> wa = testing::abs_vec(w), xa = testing::abs_vec(x),
                       ba = testing::abs_vec(bias);
    cpu::conv2d_forward(s, xa.data(), wa.data(), ba.data(), magnitude.data());
    std::vector<float> want_relu = want;
    relu_in_place(want_relu);
    const SparseWeight sw =
        sparse_weight(cpu::csr_from_dense(c.K, CRS, w.data()), {c.K, c.C, c.R, c.S})
            .to(Device::cuda(0));
    const CsrRef d = sw.csr();
    DeviceFloats xd(x), bd(bias), y(static_cast<size_t>(ny));
    for (auto algo : cuda::kCsrAlgos)
      for (bool relu : {false, true}) {
        CAPTURE(cuda::csr_algo_name(algo));
        CAPTURE(relu);
        cuda::csr_conv2d(d, s, xd.p, bd.p, y.p, relu, algo);
        check_close(y.get(size_t(ny)), relu ? want_relu : want, magnitude, "csr_conv2d");
      }
  }
  const SparseWeight wrong =
      sparse_weight(cpu::csr_from_dense(2, 5, random_weight(2, 5, 1.0, 1).data()), {2, 5})
          .to(Device::cuda(0));
  Conv2dShape s{1, 1, 5, 5, 2, 3, 3, 1, 1, 1};
  CHECK_THROWS_AS(cuda::csr_conv2d(wrong.csr(), s, nullptr, nullptr, nullptr), Error);  // not 2x9
  // A CPU-layout view (16-bit columns, no row order) is refused, not misread.
  const SparseWeight host =
      sparse_weight(cpu::csr_from_dense(2, 5, random_weight(2, 5, 1.0, 1).data()), {2, 5});
  DeviceFloats xd(std::vector<float>(5, 1.0f)), yd(2);
  CHECK_THROWS_AS(cuda::csr_linear(host.csr(), 1, xd.p, nullptr, yd.p), Error);
}

TEST_CASE("sparse_linear and sparse_conv2d on the GPU equal the CPU's, on every kernel") {
  const Device gpu = Device::cuda(0);
  const std::vector<std::string> kernels = backend_for(gpu).csr_kernels();
  CHECK(kernels == std::vector<std::string>{"cusparse", "rowsplit", "coltile"});
  const Tensor w = Tensor::from_vector(random_weight(24, 40, 0.3, 3), {24, 40});
  const SparseWeight cpu_w = sparse_weight_from_dense(SparseFormat::Csr, w);
  const SparseWeight gpu_w = cpu_w.to(gpu);
  const Tensor bias = Tensor::from_vector(testing::random_vec(24, 4), {24});
  for (int64_t N : {1, 3, 64}) {
    const Tensor x = Tensor::from_vector(testing::random_vec(size_t(N * 40), 5), {N, 40});
    for (bool relu : {false, true}) {
      SparseOptions o;
      o.relu = relu;
      const std::vector<float> want = sparse_linear(x, cpu_w, bias, o).to_vector();
      for (int k = 0; k < int(kernels.size()); ++k) {
        CAPTURE(N);
        CAPTURE(relu);
        CAPTURE(kernels[size_t(k)]);
        o.kernel = k;
        const std::vector<float> got = sparse_linear(x.to(gpu), gpu_w, bias.to(gpu), o).to_vector();
        check_close(got, want, testing::abs_vec(want), "sparse_linear");
      }
    }
  }
  // A conv with a residual block's join (bias, shortcut, ReLU).
  const Tensor cw = Tensor::from_vector(random_weight(8, 4 * 9, 0.3, 6), {8, 4, 3, 3});
  const SparseWeight cpu_cw = sparse_weight_from_dense(SparseFormat::Csr, cw);
  const SparseWeight gpu_cw = cpu_cw.to(gpu);
  const Tensor cb = Tensor::from_vector(testing::random_vec(8, 7), {8});
  const Tensor x = Tensor::from_vector(testing::random_vec(3 * 4 * 6 * 6, 8), {3, 4, 6, 6});
  const Tensor r = Tensor::from_vector(testing::random_vec(3 * 8 * 6 * 6, 9), {3, 8, 6, 6});
  SparseOptions o;
  o.relu = true;
  o.residual = r;
  const Conv2dOptions conv{1, 1, 1};
  const std::vector<float> want = sparse_conv2d(x, cpu_cw, cb, conv, o).to_vector();
  o.residual = r.to(gpu);
  for (int k = 0; k < int(kernels.size()); ++k) {
    CAPTURE(kernels[size_t(k)]);
    o.kernel = k;
    const std::vector<float> got =
        sparse_conv2d(x.to(gpu), gpu_cw, cb.to(gpu), conv, o).to_vector();
    check_close(got, want, testing::abs_vec(want), "sparse_conv2d");
  }
  // A weight on the other device than the input, and a kernel the GPU does not have.
  CHECK_THROWS_WITH_AS(sparse_linear(Tensor::zeros({2, 40}), gpu_w, Tensor()),
                       doctest::Contains("the weight is on cuda"), Error);
  o.kernel = 3;
  CHECK_THROWS_AS(sparse_conv2d(x.to(gpu), gpu_cw, Tensor(), conv, o), Error);
}

namespace {

const char* kConv =
    "conv(4,3,pad=1) relu maxpool(2) conv(8,3,pad=1) relu flatten linear(16) relu "
    "linear(10)";

}  // namespace

TEST_CASE("packed models on the GPU equal the dense masked model on the CPU") {
  NoGradGuard no_grad;
  for (const char* spec : {"mlp", kConv}) {
    const bool mlp = std::string(spec) == "mlp";
    nn::Model m =
        pruned(spec, mlp ? Shape{1, 28, 28} : Shape{1, 12, 12}, prune::Granularity::Element, 0.9);
    for (bool shrink : {false, true}) {
      infer::PackOptions po;
      po.format = infer::PackFormat::Csr;
      po.shrink = shrink;
      infer::InferenceModel im = infer::pack_model(m, po);
      struct Plan {
        infer::PackFormat format;
        const char* force;
      };
      for (Plan p :
           {Plan{infer::PackFormat::Auto, ""}, Plan{infer::PackFormat::Csr, ""},
            Plan{infer::PackFormat::Dense, ""}, Plan{infer::PackFormat::Auto, "dense"},
            Plan{infer::PackFormat::Auto, "cusparse"}, Plan{infer::PackFormat::Auto, "rowsplit"},
            Plan{infer::PackFormat::Auto, "coltile"}}) {
        CAPTURE(spec);
        CAPTURE(shrink);
        CAPTURE(infer::pack_format_name(p.format));
        CAPTURE(p.force);
        infer::CudaPlanOptions go;
        go.format = p.format;
        go.force_kernel = p.force;
        go.batch = 64;
        go.repeats = 1;
        infer::CudaInferenceModel g(im, go);
        CHECK(g.device().find("sm_") != std::string::npos);
        CHECK(g.layers().size() == im.layers.size());
        for (auto& l : g.layers()) {
          CAPTURE(l.name);
          CHECK(!l.reason.empty());
          const std::string force = p.force;
          // Every kernel, cuSPARSE included, runs conv layers too (after im2col).
          if (!force.empty()) CHECK(l.format() == force);
          if (force.empty() && p.format == infer::PackFormat::Auto) CHECK(l.times.size() == 4);
          if (force.empty() && p.format == infer::PackFormat::Csr) {
            CHECK(l.format() != "dense");
            CHECK(l.times.size() == 3);
          }
          if (force.empty() && p.format == infer::PackFormat::Dense) CHECK(l.format() == "dense");
          // A CSR layer's weight lives on the GPU, its dense one's nowhere.
          CHECK(l.sparse.defined() == (l.kind == infer::PackFormat::Csr));
          if (l.sparse.defined()) CHECK(!l.sparse.device().is_cpu());
        }
        // Batches of one (the row-split chain skips its transposes), odd, one float4 tile, and
        // past a tile.
        for (int64_t batch : {1, 3, 64, 257}) {
          CAPTURE(batch);
          Tensor x = random_input(m, batch, 5);
          // cuBLAS and the CPU gemm sum in different orders: 1e-4, as tests/test_cuda_ops.cpp.
          CHECK(rel_diff(m.forward(x), g.forward(x)) <= 1e-4);
        }
        // Input already on the GPU: read in place, the same result.
        Tensor x = random_input(m, 3, 6);
        CHECK(rel_diff(g.forward(x), g.forward(x.to(Device::cuda()))) <= 1e-6);
        CHECK(g.time_forward_ms(4, 1) > 0.0);
      }
    }
  }
}

TEST_CASE("packed residual networks on the GPU equal the dense model and the CPU's packed one") {
  // The one executor walks blocks on either device: option-A shortcuts (resnet20) and 1x1 conv
  // + BN shortcuts (resnet20b), every BatchNorm folded, every kernel forced and the measured plan.
  NoGradGuard no_grad;
  for (const char* zoo : {"resnet20", "resnet20b"}) {
    CAPTURE(zoo);
    nn::Model m = pruned(nn::zoo_spec(zoo), {3, 8, 8}, prune::Granularity::Element, 0.9);
    randomize_batchnorms(m);
    infer::PackOptions po;
    po.format = infer::PackFormat::Csr;
    infer::InferenceModel im = infer::pack_model(m, po);
    const Tensor x = random_input(m, 3, 4);
    const Tensor want = m.forward(x), cpu_packed = im.forward(x);
    for (const char* force : {"", "dense", "rowsplit", "coltile"}) {
      CAPTURE(force);
      infer::CudaPlanOptions go;
      go.force_kernel = force;
      go.batch = 3;
      go.repeats = 1;
      infer::CudaInferenceModel g(im, go);
      REQUIRE(g.layers().size() == im.layers.size());
      CHECK(g.layers()[1].name == "layer1.0.conv1");
      const Tensor got = g.forward(x);
      // The bound for the packed model against the dense one: 1e-4.
      CHECK(rel_diff(want, got) <= 1e-4);
      CHECK(rel_diff(cpu_packed, got) <= 1e-4);
    }
  }
}

TEST_CASE("int8 packed models on the GPU compute what they compute on the CPU") {
  NoGradGuard no_grad;
  for (const char* spec : {"mlp", kConv}) {
    const bool mlp = std::string(spec) == "mlp";
    nn::Model m =
        pruned(spec, mlp ? Shape{1, 28, 28} : Shape{1, 12, 12}, prune::Granularity::Element, 0.9);
    for (infer::PackFormat format : {infer::PackFormat::Auto, infer::PackFormat::Bsr}) {
      CAPTURE(spec);
      CAPTURE(infer::pack_format_name(format));
      infer::QuantizeOptions qo;
      qo.int8_only = true;
      qo.pack.format = format;
      qo.pack.repeats = 1;
      infer::InferenceModel q = infer::quantize_model(m, random_input(m, 32, 3), qo);
      for (auto& l : q.layers) REQUIRE(l.int8);
      infer::CudaPlanOptions go;
      go.repeats = 1;
      infer::CudaInferenceModel g(q, go);
      for (auto& l : g.layers()) {
        CAPTURE(l.name);
        CHECK(l.format() == "int8 dense");  // the GPU's int8 kernels are dense
        CHECK(l.reason.find("int8") != std::string::npos);
      }
      for (int64_t batch : {1, 3, 40}) {
        CAPTURE(batch);
        Tensor x = random_input(m, batch, 9);
        // The int32 sums are exact on both; the float epilogue may differ by an ulp, which can
        // move a later layer's input across a rounding boundary by one code: well under 1e-3.
        CHECK(rel_diff(q.forward(x), g.forward(x)) <= 1e-3);
      }
    }
  }
}

TEST_CASE("GPU plan errors and the bench helper") {
  nn::Model m = pruned("mlp", {1, 28, 28}, prune::Granularity::Element, 0.9);
  infer::PackOptions po;
  po.format = infer::PackFormat::Csr;
  infer::InferenceModel im = infer::pack_model(m, po);
  infer::CudaPlanOptions go;
  go.force_kernel = "coo";
  try {
    infer::CudaInferenceModel bad(im, go);
    FAIL("an unknown kernel was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("'coo'") != std::string::npos);
  }
  go = {};
  go.batch = 0;
  CHECK_THROWS_AS(infer::CudaInferenceModel(im, go), Error);
  go = {};
  infer::CudaInferenceModel g(im, go);
  CHECK_THROWS_AS(g.forward(Tensor::zeros({2, 10})), Error);  // wrong input shape

  auto runs = infer::time_csr_linear_cuda(64, 96, 0.9, {1, 8, 33}, 2, 3);
  REQUIRE(runs.size() == 3);
  for (auto& t : runs) {
    CAPTURE(t.batch);
    CHECK(t.dense_ms > 0);
    CHECK(t.cusparse_ms > 0);
    CHECK(t.rowsplit_ms > 0);
    CHECK(t.coltile_ms > 0);
    CHECK(t.sparsity > 0.8);
    CHECK(t.sparsity < 0.97);
    CHECK(t.cusparse_rel_diff <= 1e-5);
    CHECK(t.rowsplit_rel_diff <= 1e-5);
    CHECK(t.coltile_rel_diff <= 1e-5);
  }
  CHECK(infer::cuda_device_description() == g.device());
}
