// Inference on the GPU: a packed model's copy on the GPU, run by the one executor
// (infer/executor.h) with a GPU runner for its conv / linear layers: each on the kernel (cuBLAS
// dense, cuSPARSE SpMM or one of sprig's SpMMs) that measured fastest at the plan's batch, as
// pack.cpp does on the CPU. Every other module runs as itself on GPU tensors. Only this file
// knows whether the build has CUDA (SPRIG_HAVE_CUDA).
#include "infer/pack.h"
#include "infer/pack_internal.h"

#ifdef SPRIG_HAVE_CUDA
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "infer/executor.h"
#include "kernels/cuda/quantize.cuh"
#include "kernels/cuda/runtime.cuh"
#include "prune/shrink.h"
#endif

namespace sprig::infer {

using detail::fmt_ms;
using detail::pct;

#ifndef SPRIG_HAVE_CUDA

namespace {
[[noreturn]] void no_cuda() {
  throw Error("GPU inference: this build has no CUDA backend (SPRIG_CUDA=OFF)");
}
}  // namespace

std::string cuda_device_description() {
  no_cuda();
}
struct CudaInferenceModel::Impl {};
CudaInferenceModel::CudaInferenceModel(const InferenceModel&, const CudaPlanOptions&) {
  no_cuda();
}
CudaInferenceModel::~CudaInferenceModel() = default;
CudaInferenceModel::CudaInferenceModel(CudaInferenceModel&&) noexcept = default;
CudaInferenceModel& CudaInferenceModel::operator=(CudaInferenceModel&&) noexcept = default;
Tensor CudaInferenceModel::forward(const Tensor&) const {
  no_cuda();
}
double CudaInferenceModel::time_forward_ms(int64_t, int, uint64_t) const {
  no_cuda();
}
const std::vector<PackedLayer>& CudaInferenceModel::layers() const {
  no_cuda();
}
const std::string& CudaInferenceModel::device() const {
  no_cuda();
}
std::vector<CudaSpmmTiming> time_csr_linear_cuda(int64_t, int64_t, double,
                                                 const std::vector<int64_t>&, int, uint64_t) {
  no_cuda();
}

#else  // SPRIG_HAVE_CUDA

namespace {

// Makes CUDA device `index` current, or throws sprig::Error saying why there is none.
void ensure_gpu(int index = 0) {
  std::string why;
  if (cuda::device_count(&why) == 0)
    throw Error("GPU inference: no usable CUDA device (" + why + ")");
  cuda::use_device(index);
}

// The kernels a GPU layer may run on: "dense" (cuBLAS / the dense conv) and the CUDA backend's
// CSR kernels (Backend::csr_kernels: cusparse, rowsplit, coltile).
std::vector<std::string> kernel_names(Device d) {
  std::vector<std::string> names = backend_for(d).csr_kernels();
  names.insert(names.begin(), "dense");
  return names;
}

// p on the kernel called `name` (one of kernel_names).
void set_kernel(PackedLayer& p, const std::vector<std::string>& names, const std::string& name) {
  const auto it = std::find(names.begin(), names.end(), name);
  std::string all;
  for (const std::string& n : names) all += (all.empty() ? "" : ", ") + n;
  SPRIG_CHECK(it != names.end(), "GPU kernel must be one of ", all, ", got '", name, "'");
  p.kind = it == names.begin() ? PackFormat::Dense : PackFormat::Csr;
  p.kernel = int(it - names.begin()) - 1;
}

// The n values of v as a 1-D tensor of dtype (whose elements are Stored) on device d.
template <typename Stored, typename T>
Tensor upload(const std::vector<T>& v, DType dtype, Device d) {
  static_assert(sizeof(Stored) == sizeof(T), "upload: element sizes differ");
  Tensor t = Tensor::empty({int64_t(v.size())}, dtype);
  if (!v.empty()) std::memcpy(t.data_as<Stored>(), v.data(), v.size() * sizeof(T));
  return t.to(d);
}

// A conv / linear layer's GPU state beside its PackedLayer (whose module, in the GPU copy of
// the model, holds the dense weight and bias on the GPU).
struct GpuLayer {
  // An int8 layer (PackedLayer::int8): its input quantised per tensor, exact int32 sums,
  // dequantised with the per-channel scales, bias and ReLU.
  Tensor w_words;   // linear: I32 (rows, ceil(cols / 4)) words of 4 int8
  Tensor row_sums;  // linear: I32 (rows)
  Tensor w_bytes;   // conv: U8 (K, C, R, S), the int8 weight's bytes
  Tensor w_scales;  // F32 (rows)
};

const float* bias_of(const nn::Module& m) {
  if (auto* conv = dynamic_cast<const nn::Conv2d*>(&m))
    return conv->bias ? conv->bias->value.ptr() : nullptr;
  auto& lin = dynamic_cast<const nn::Linear&>(m);
  return lin.bias ? lin.bias->value.ptr() : nullptr;
}

// g's int8 arrays from the packed layer p (its int8 weight, scales and input quantisation).
void upload_int8(GpuLayer& g, const PackedLayer& p, Device d) {
  const Int8Weights& q = *p.int8;
  g.w_scales = upload<float>(q.scales, DType::F32, d);
  if (p.conv) {
    g.w_bytes = upload<uint8_t>(q.weight, DType::U8, d);
    return;
  }
  std::vector<int32_t> sums(size_t(p.rows), 0);  // (rows)
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.cols; ++c) sums[size_t(r)] += q.weight[size_t(r * p.cols + c)];
  g.w_words =
      upload<int32_t>(cuda::int8_weight_words(q.weight.data(), p.rows, p.cols), DType::I32, d);
  g.row_sums = upload<int32_t>(sums, DType::I32, d);
}

// An int8 layer's forward: x (N, in...) float -> y (N, out...) float, ReLU fused when relu.
Tensor run_int8(const PackedLayer& p, const GpuLayer& g, nn::Module& m, const Tensor& x,
                bool relu) {
  const Int8Weights& q = *p.int8;
  Tensor xq = Tensor::empty({x.numel()}, DType::U8, x.device());  // the input's uint8 codes
  cuda::quantize_activations(x.numel(), x.ptr(), q.input.scale, q.input.zero, xq.ptr_as<uint8_t>());
  if (auto* conv = dynamic_cast<nn::Conv2d*>(&m)) {
    const Conv2dShape s = detail::conv_shape(p, "int8 layer", *conv, x);
    Tensor y = Tensor::empty({s.N, s.K, s.P(), s.Q()}, DType::F32, x.device());
    cuda::conv2d_u8s8_dequantize(s, xq.ptr_as<uint8_t>(), q.input.zero,
                                 reinterpret_cast<const int8_t*>(g.w_bytes.ptr_as<uint8_t>()),
                                 q.input.scale, g.w_scales.ptr(), bias_of(m), relu, y.ptr());
    return y;
  }
  SPRIG_CHECK(x.dim() == 2 && x.size(1) == p.cols, "int8 layer ", p.name, " got input ",
              to_string(x.shape()), ", needs (N, ", p.cols, ")");
  const int64_t N = x.size(0);
  Tensor y = Tensor::empty({N, p.rows}, DType::F32, x.device());
  cuda::linear_u8s8_dequantize(N, p.rows, p.cols, xq.ptr_as<uint8_t>(), q.input.zero,
                               g.w_words.ptr_as<int32_t>(), g.row_sums.ptr_as<int32_t>(),
                               q.input.scale, g.w_scales.ptr(), bias_of(m), relu, y.ptr());
  return y;
}

// One float layer's forward on its kernel: x (N, in...) or, on the CSR kernels, (in, N) when
// c.x_t; y likewise. The ReLU after it is fused when c.relu (a pass over y for dense layers).
Tensor run_float(const PackedLayer& p, nn::Module& m, const Tensor& x, const detail::LayerCall& c) {
  if (p.kind == PackFormat::Csr) {
    SparseOptions opt;
    opt.relu = c.relu;
    opt.x_t = c.x_t;
    opt.y_t = c.y_t;
    return detail::run_sparse(p, m, x, opt);
  }
  SPRIG_CHECK(!c.x_t && !c.y_t, "GPU inference: transposed activations reach dense layer ", p.name);
  Tensor y;
  if (auto* conv = dynamic_cast<nn::Conv2d*>(&m)) {
    detail::conv_shape(p, "GPU layer", *conv, x);  // checks x
    y = conv2d(x, conv->weight->value, conv->bias ? conv->bias->value : Tensor(), conv->opt);
  } else {
    auto& lin = dynamic_cast<nn::Linear&>(m);
    SPRIG_CHECK(x.dim() == 2 && x.size(1) == p.cols, "GPU layer ", p.name, " (", lin.spec(),
                ") got input ", to_string(x.shape()), ", needs (N, ", p.cols, ")");
    y = linear(x, lin.weight->value, lin.bias ? lin.bias->value : Tensor());
  }
  return c.relu ? relu(y) : y;
}

}  // namespace

std::string cuda_device_description() {
  ensure_gpu();
  return cuda::device_name(0);
}

// The executor's conv / linear layers on the GPU.
struct CudaInferenceModel::Impl final : detail::LayerRunner {
  Impl() : LayerRunner(&packed) {}  // Impl stays put (held by unique_ptr): the address holds
  nn::Model model;                  // the packed model's dense equivalent, on the GPU
  // Its layers, module in `model`, each planned for the GPU: kind Dense, or Csr on kernel
  // `kernel` with its weight uploaded (sparse); times and reason the GPU plan's.
  std::vector<PackedLayer> packed;
  std::vector<GpuLayer> gpu;  // (packed.size())
  std::string device;
  Device dev;
  // sprig's SpMMs hand each other (features, N); at batch 1 both layouts are the same vector.
  bool chains(const PackedLayer& p, int64_t N) const override {
    return !p.conv && p.kind == PackFormat::Csr && !p.int8 && N > 1 &&
           backend_for(dev).csr_kernels()[size_t(p.kernel)] != "cusparse";
  }
  bool requantizes(const PackedLayer&) const override { return false; }
  bool fuses_residual(const PackedLayer&) const override { return false; }
  int64_t lanes_pad(const PackedLayer&, const Shape&) const override { return -1; }
  Tensor run(const PackedLayer& p, nn::Module& m, const Tensor& x,
             const detail::LayerCall& c) const override {
    if (!p.int8) return run_float(p, m, x, c);
    SPRIG_CHECK(!c.x_t && !c.y_t && !c.requantize, "GPU inference: int8 layer ", p.name,
                " takes and gives (N, features) floats only");
    return run_int8(p, gpu[p.index], m, x, c.relu);
  }
  // Plans layer i (src its CPU layer, weight its dense weight on the GPU): int8 as packed,
  // forced, or measured.
  void plan_layer(size_t i, const PackedLayer& src, const nn::Parameter& weight,
                  const CudaPlanOptions& opt) {
    PackedLayer& p = packed[i];
    p.kind = PackFormat::Dense;
    if (p.int8) {
      // int8 layers run as the packed file says, on the GPU's int8 kernels (dense): no plan.
      upload_int8(gpu[i], p, dev);
      p.reason = "int8 in the packed file (" + src.format() + " on the CPU)";
      return;
    }
    // The CPU's CSR weight where it has one (the same weights), else packed from the dense one.
    auto upload_csr = [&] {
      p.sparse =
          (src.kind == PackFormat::Csr ? src.sparse
                                       : sparse_weight_from_dense(SparseFormat::Csr, weight.value))
              .to(dev);
    };
    if (!opt.force_kernel.empty()) {
      set_kernel(p, kernel_names(dev), opt.force_kernel);
      p.reason = "forced " + opt.force_kernel;
      if (p.kind == PackFormat::Csr) upload_csr();
      return;
    }
    if (opt.format == PackFormat::Dense) {
      p.reason = "forced dense";
      return;
    }
    // Measured on random input at opt.batch, each candidate as run alone ((N, in...) ->
    // (N, out...)): dense (auto plans) and every CSR kernel of the backend.
    upload_csr();
    Shape xs = p.in_shape;
    xs.insert(xs.begin(), opt.batch);
    Rng rng(opt.seed + i);
    const Tensor x = Tensor::uniform(xs, -1.0f, 1.0f, rng).to(dev);  // (batch, in...)
    const size_t best = detail::pick_candidate(
        p, detail::plan_candidates(dev, opt.format == PackFormat::Auto, p.conv, {}, {}),
        [&](const detail::Candidate& c) {
          p.kind = c.kind;
          p.kernel = c.kernel;
        },
        [&] { return time_median_ms([&] { run_float(p, *p.module, x, {}); }, opt.repeats, dev); });
    p.reason = (opt.format == PackFormat::Auto ? "" : "forced csr: ") +
               detail::best_against_runner_up(p.times, best) + " at " + pct(p.sparsity()) +
               " sparsity";
    if (opt.format == PackFormat::Bsr || opt.format == PackFormat::Nm)
      p.reason = std::string("no GPU ") + pack_format_name(opt.format) + " kernel, CSR instead; " +
                 p.reason;
    if (p.kind == PackFormat::Dense) p.sparse = {};
  }
};

CudaInferenceModel::CudaInferenceModel(const InferenceModel& m, const CudaPlanOptions& opt)
    : impl_(std::make_unique<Impl>()) {
  SPRIG_CHECK(opt.batch >= 1, "GPU plan: batch must be >= 1, got ", opt.batch);
  ensure_gpu(opt.device);
  if (!opt.force_kernel.empty()) {  // a bad name fails first
    PackedLayer probe;
    set_kernel(probe, kernel_names(Device::cuda(opt.device)), opt.force_kernel);
  }
  Impl& im = *impl_;
  im.device = cuda::device_name(opt.device);
  im.dev = Device::cuda(opt.device);
  im.model = prune::copy_model(m.model);
  im.model.to(im.dev);
  im.model.net->eval();
  const auto layers = detail::weighted_layers(im.model);
  SPRIG_CHECK(layers.size() == m.layers.size(), "GPU inference: the packed model has ",
              m.layers.size(), " conv / linear layers, its copy ", layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    PackedLayer p;  // what the executor and the kernels need of m.layers[i], no host arrays
    const PackedLayer& src = m.layers[i];
    p.name = src.name;
    p.index = i;
    p.module = layers[i].module;
    p.conv = src.conv;
    p.kind = src.kind;
    p.rows = src.rows, p.cols = src.cols;
    p.nonzero = src.nonzero;
    p.in_shape = src.in_shape;
    p.int8 = src.int8;
    im.packed.push_back(std::move(p));
  }
  im.gpu.resize(layers.size());
  NoGradGuard no_grad;
  for (size_t i = 0; i < layers.size(); ++i)
    im.plan_layer(i, m.layers[i], *layers[i].weight(), opt);
  cuda::synchronize();  // errors of the uploads and measurements surface here
}

CudaInferenceModel::~CudaInferenceModel() = default;
CudaInferenceModel::CudaInferenceModel(CudaInferenceModel&&) noexcept = default;
CudaInferenceModel& CudaInferenceModel::operator=(CudaInferenceModel&&) noexcept = default;

Tensor CudaInferenceModel::forward(const Tensor& x) const {
  const Impl& im = *impl_;
  Shape want = im.model.input_shape;
  want.insert(want.begin(), x.dim() > 0 ? x.size(0) : 1);
  SPRIG_CHECK(x.shape() == want, "packed model expects input (N, ",
              to_string(im.model.input_shape).substr(1), " but got ", to_string(x.shape()));
  NoGradGuard no_grad;
  // A tensor already on the GPU is read in place (it was written on sprig's stream too).
  return detail::run_blocks(*im.model.net, x.to(im.dev), im).to(Device::cpu());
}

double CudaInferenceModel::time_forward_ms(int64_t n, int repeats, uint64_t seed) const {
  const Impl& im = *impl_;
  Shape xs = im.model.input_shape;
  xs.insert(xs.begin(), n);
  Rng rng(seed);
  const Tensor x = Tensor::uniform(xs, -1.0f, 1.0f, rng).to(im.dev);  // (n, input_shape...)
  NoGradGuard no_grad;
  return time_median_ms([&] { detail::run_blocks(*im.model.net, x, im); }, repeats, im.dev);
}

const std::vector<PackedLayer>& CudaInferenceModel::layers() const {
  return impl_->packed;
}
const std::string& CudaInferenceModel::device() const {
  return impl_->device;
}

std::vector<CudaSpmmTiming> time_csr_linear_cuda(int64_t rows, int64_t cols, double sparsity,
                                                 const std::vector<int64_t>& batches, int repeats,
                                                 uint64_t seed) {
  SPRIG_CHECK(rows >= 1 && cols >= 1, "GPU bench: need rows, cols >= 1");
  ensure_gpu();
  Rng rng(seed);
  std::vector<float> w(size_t(rows * cols));  // (rows, cols)
  int64_t nnz = 0;
  for (float& v : w) {
    v = rng.uniform(-1.0f, 1.0f);
    if (v == 0.0f) v = 0.5f;  // kept weights are never 0, so nnz counts the kept ones
    if (rng.uniform() < sparsity) v = 0.0f;
    nnz += v != 0.0f;
  }
  std::vector<float> bias(static_cast<size_t>(rows));  // (rows)
  for (float& v : bias) v = rng.uniform(-1.0f, 1.0f);
  const Device d = Device::cuda();
  const Tensor wd = Tensor::from_vector(w, {rows, cols}).to(d);
  const Tensor bd = Tensor::from_vector(bias, {rows}).to(d);
  const SparseWeight csr =
      sparse_weight(cpu::csr_from_dense(rows, cols, w.data()), {rows, cols}).to(d);
  const std::vector<std::string> names = backend_for(d).csr_kernels();
  auto kernel = [&](const char* name) {
    return int(std::find(names.begin(), names.end(), name) - names.begin());
  };

  std::vector<CudaSpmmTiming> out;
  for (int64_t B : batches) {
    SPRIG_CHECK(B >= 1, "GPU bench: batch must be >= 1, got ", B);
    CudaSpmmTiming t;
    t.rows = rows, t.cols = cols, t.batch = B, t.nnz = nnz;
    t.sparsity = 1.0 - double(nnz) / double(rows * cols);
    Rng xr(seed + 1 + uint64_t(B));
    const Tensor x = Tensor::uniform({B, cols}, -1.0f, 1.0f, xr).to(d);  // (B, cols)
    Tensor yd, yc, yr, yt;  // (B, rows) each: dense, cuSPARSE, row-split, column-tiled
    t.dense_ms = time_median_ms([&] { yd = linear(x, wd, bd); }, repeats, d);
    SparseOptions o;
    o.kernel = kernel("cusparse");
    t.cusparse_ms = time_median_ms([&] { yc = sparse_linear(x, csr, bd, o); }, repeats, d);
    o.kernel = kernel("rowsplit");
    t.rowsplit_ms = time_median_ms([&] { yr = sparse_linear(x, csr, bd, o); }, repeats, d);
    o.kernel = kernel("coltile");
    t.coltile_ms = time_median_ms([&] { yt = sparse_linear(x, csr, bd, o); }, repeats, d);
    const std::vector<float> hd = yd.to_vector(), hc = yc.to_vector(), hr = yr.to_vector(),
                             ht = yt.to_vector();
    double ref = 0.0, dc = 0.0, dr = 0.0, dt = 0.0;
    for (size_t i = 0; i < hd.size(); ++i) {
      ref = std::max(ref, double(std::fabs(hd[i])));
      dc = std::max(dc, double(std::fabs(hd[i] - hc[i])));
      dr = std::max(dr, double(std::fabs(hd[i] - hr[i])));
      dt = std::max(dt, double(std::fabs(hd[i] - ht[i])));
    }
    t.cusparse_rel_diff = ref > 0 ? dc / ref : dc;
    t.rowsplit_rel_diff = ref > 0 ? dr / ref : dr;
    t.coltile_rel_diff = ref > 0 ? dt / ref : dt;
    out.push_back(t);
  }
  return out;
}

#endif  // SPRIG_HAVE_CUDA

}  // namespace sprig::infer
