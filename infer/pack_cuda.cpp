// Inference on the GPU: a packed model's layers uploaded once, each linear layer run by the
// kernel (cuBLAS dense, cuSPARSE SpMM or one of sprig's SpMMs) that measured fastest at the
// plan's batch, as pack.cpp does on the CPU. The executor calls kernels/cuda directly on device
// buffers of its own (it knows the five layer kinds), so it needs neither autograd nor CUDA
// tensors. Only this file knows whether the build has CUDA (SPRIG_HAVE_CUDA).
#include "infer/pack.h"
#include "infer/pack_internal.h"

#ifdef SPRIG_HAVE_CUDA
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "engine/rng.h"
#include "kernels/cuda/conv.cuh"
#include "kernels/cuda/eltwise.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/pool.cuh"
#include "kernels/cuda/quantize.cuh"
#include "kernels/cuda/runtime.cuh"
#include "kernels/cuda/sparse.cuh"
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
const std::vector<CudaLayerPlan>& CudaInferenceModel::layers() const {
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

// n values of T in device memory from the caching allocator, freed on destruction.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    p_ = static_cast<T*>(cuda::device_alloc(alloc_bytes()));
  }
  static DeviceBuffer upload(const T* host, size_t n) {
    DeviceBuffer b(n);
    cuda::copy_from_host(b.p_, host, n * sizeof(T));
    return b;
  }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // Stream-ordered (see runtime.cuh): kernels queued before still see the memory.
  void release() noexcept {
    if (!p_) return;
    try {
      cuda::device_free(p_, alloc_bytes());
    } catch (...) {
    }
    p_ = nullptr, n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cuda::copy_to_host(h.data(), p_, n_ * sizeof(T));
    return h;
  }

 private:
  size_t alloc_bytes() const { return std::max<size_t>(1, n_) * sizeof(T); }
  T* p_ = nullptr;
  size_t n_ = 0;
};
using Floats = DeviceBuffer<float>;

// Makes CUDA device `index` current, or throws sprig::Error saying why there is none.
void ensure_gpu(int index = 0) {
  std::string why;
  if (cuda::device_count(&why) == 0)
    throw Error("GPU inference: no usable CUDA device (" + why + ")");
  cuda::use_device(index);
}

// Median ms of fn on the GPU: synchronize, run `inner` times, synchronize, over the steady
// clock. Calls are batched so a sample lasts >= 1 ms, which buries the synchronisation cost.
double gpu_median_ms(const std::function<void()>& fn, int repeats) {
  using clock = std::chrono::steady_clock;
  auto ms_of = [&](int inner) {
    cuda::synchronize();
    auto t0 = clock::now();
    for (int i = 0; i < inner; ++i) fn();
    cuda::synchronize();
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  };
  ms_of(1);  // warm-up: allocator, cuSPARSE workspace, module loading
  const double once = ms_of(1);
  const int inner = once >= 1.0 ? 1 : int(std::min(1000.0, std::ceil(1.0 / std::max(once, 1e-3))));
  std::vector<double> samples;
  for (int r = 0; r < std::max(1, repeats); ++r) samples.push_back(ms_of(inner) / inner);
  std::sort(samples.begin(), samples.end());
  const size_t n = samples.size();
  return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

Floats random_on_device(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> h(n);
  for (float& v : h) v = rng.uniform(-1.0f, 1.0f);
  return Floats::upload(h.data(), n);
}

enum class Op { Linear, Conv, Relu, Pool, Flatten };
enum class Kernel { Dense, Cusparse, RowSplit, ColTile };
// sprig's kernels, which take and give transposed activations.
bool own_kernel(Kernel k) {
  return k == Kernel::RowSplit || k == Kernel::ColTile;
}

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::Dense:
      return "dense";
    case Kernel::Cusparse:
      return "cusparse";
    case Kernel::RowSplit:
      return "rowsplit";
    case Kernel::ColTile:
      return "coltile";
  }
  return "?";
}

Kernel parse_kernel(const std::string& s) {
  for (Kernel k : {Kernel::Dense, Kernel::Cusparse, Kernel::RowSplit, Kernel::ColTile})
    if (s == kernel_name(k)) return k;
  throw Error("GPU kernel must be dense, cusparse, rowsplit or coltile, got '" + s + "'");
}

cuda::CsrAlgo algo_of(Kernel k) {
  return k == Kernel::ColTile ? cuda::CsrAlgo::ColTile : cuda::CsrAlgo::RowSplit;
}

// One module of the Sequential, with its weights on the GPU.
struct GpuOp {
  Op op = Op::Flatten;
  Shape in_shape, out_shape;  // per sample
  Kernel kernel = Kernel::Dense;
  int64_t rows = 0, cols = 0;  // linear (out, in); conv (K, C * R * S)
  Floats weight;               // linear (out, in), conv (K, C, R, S); empty for a CSR kernel
  Floats bias;                 // (out); empty when the layer has none
  bool has_bias = false;
  cuda::DeviceCsr csr;      // for the CSR kernels
  cpu::Conv2dShape conv{};  // N is set per call
  cpu::Pool2dShape pool{};  // N is set per call
  // An int8 layer (the packed file's PackedLayer::int8): its input quantised with in_scale /
  // in_zero, exact int32 sums, dequantised with the per-channel scales, bias and ReLU.
  bool int8 = false;
  float in_scale = 1.0f;
  int32_t in_zero = 0;
  DeviceBuffer<int32_t> w_words;   // linear: (rows, ceil(cols / 4)) words of 4 int8
  DeviceBuffer<int32_t> row_sums;  // linear: (rows)
  DeviceBuffer<int8_t> w_bytes;    // conv: (K, C, R, S)
  Floats w_scales;                 // (rows)
  const float* bias_ptr() const { return has_bias ? bias.get() : nullptr; }
};

// g's int8 arrays from the packed layer p (its int8 weight, scales and input quantisation).
void upload_int8(GpuOp& g, const PackedLayer& p) {
  const Int8Weights& q = *p.int8;
  g.int8 = true;
  g.rows = p.rows;
  g.cols = p.cols;
  g.in_scale = q.input.scale;
  g.in_zero = q.input.zero;
  g.w_scales = Floats::upload(q.scales.data(), q.scales.size());
  if (g.op == Op::Conv) {
    g.w_bytes = DeviceBuffer<int8_t>::upload(q.weight.data(), q.weight.size());
    return;
  }
  const std::vector<int32_t> words = cuda::int8_weight_words(q.weight.data(), g.rows, g.cols);
  std::vector<int32_t> sums(size_t(g.rows), 0);  // (rows)
  for (int64_t r = 0; r < g.rows; ++r)
    for (int64_t c = 0; c < g.cols; ++c) sums[size_t(r)] += q.weight[size_t(r * g.cols + c)];
  g.w_words = DeviceBuffer<int32_t>::upload(words.data(), words.size());
  g.row_sums = DeviceBuffer<int32_t>::upload(sums.data(), sums.size());
}

// An int8 layer's forward: x (N, in...) float -> y (N, out...) float.
void run_int8(const GpuOp& g, int64_t N, const float* x, float* y, bool relu) {
  const int64_t n_in = N * numel(g.in_shape);
  DeviceBuffer<uint8_t> xq(static_cast<size_t>(n_in));  // (N, in...) the input's uint8 codes
  cuda::quantize_activations(n_in, x, g.in_scale, g.in_zero, xq.get());
  if (g.op == Op::Linear) {
    cuda::linear_u8s8_dequantize(N, g.rows, g.cols, xq.get(), g.in_zero, g.w_words.get(),
                                 g.row_sums.get(), g.in_scale, g.w_scales.get(), g.bias_ptr(), relu,
                                 y);
    return;
  }
  cpu::Conv2dShape s = g.conv;
  s.N = N;
  cuda::conv2d_u8s8_dequantize(s, xq.get(), g.in_zero, g.w_bytes.get(), g.in_scale,
                               g.w_scales.get(), g.bias_ptr(), relu, y);
}

// Runs op on x (N, in_shape...) into y (N, out_shape...); x / y are (features, N) when x_t / y_t
// (rowsplit / coltile linear layers only). relu is fused into linear layers (dense: a separate
// pass).
void run_op(const GpuOp& g, int64_t N, const float* x, bool x_t, float* y, bool y_t, bool relu) {
  if (g.int8) {
    SPRIG_CHECK(!x_t && !y_t, "GPU inference: transposed activations reach an int8 layer");
    run_int8(g, N, x, y, relu);
    return;
  }
  switch (g.op) {
    case Op::Linear:
      if (own_kernel(g.kernel)) {
        cuda::csr_linear_ex(g.csr, N, x, x_t, g.bias_ptr(), relu, y, y_t, algo_of(g.kernel));
        return;
      }
      SPRIG_CHECK(!x_t && !y_t, "GPU inference: transposed activations reach a ",
                  kernel_name(g.kernel), " layer");
      if (g.kernel == Kernel::Cusparse) {
        cuda::csr_linear_cusparse(g.csr, N, x, g.bias_ptr(), y, relu);
        return;
      }
      // y (N, out) = x (N, in) W^T
      cuda::gemm(false, true, N, g.rows, g.cols, 1.0f, x, g.cols, g.weight.get(), g.cols, 0.0f, y,
                 g.rows);
      if (g.has_bias) cuda::add_row_bias(N, g.rows, g.bias.get(), y);
      if (relu) cuda::relu_forward(N * g.rows, y, y);
      return;
    case Op::Conv: {
      cpu::Conv2dShape s = g.conv;
      s.N = N;
      if (own_kernel(g.kernel)) {
        cuda::csr_conv2d(g.csr, s, x, g.bias_ptr(), y, relu, algo_of(g.kernel));
        return;
      }
      cuda::conv2d_forward(s, x, g.weight.get(), g.bias_ptr(), y);
      if (relu) cuda::relu_forward(N * numel(g.out_shape), y, y);
      return;
    }
    case Op::Relu:
      cuda::relu_forward(N * numel(g.in_shape), x, y);
      return;
    case Op::Pool: {
      cpu::Pool2dShape s = g.pool;
      s.N = N;
      DeviceBuffer<int32_t> argmax(size_t(N * numel(g.out_shape)));  // (N, C, P, Q), unused
      cuda::maxpool2d_forward(s, x, y, argmax.get());
      return;
    }
    case Op::Flatten:
      cuda::copy_on_device(y, x, size_t(N * numel(g.in_shape)) * sizeof(float));
      return;
  }
}

}  // namespace

std::string cuda_device_description() {
  ensure_gpu();
  return cuda::device_name(0);
}

struct CudaInferenceModel::Impl {
  std::vector<GpuOp> ops;  // one per module of the Sequential
  std::vector<CudaLayerPlan> plans;
  std::string device;
  int device_index = 0;
  Shape input_shape, output_shape;

  // True when ops[i] is a linear layer on one of sprig's kernels (transposed activations).
  bool own(size_t i) const {
    return i < ops.size() && ops[i].op == Op::Linear && own_kernel(ops[i].kernel);
  }
  bool is_relu(size_t i) const { return i < ops.size() && ops[i].op == Op::Relu; }

  // x (N, input_shape...) on the device -> (N, output_shape...) on the device.
  Floats forward_device(int64_t N, const float* x) const {
    const float* h = x;
    Floats cur;               // owns h after the first layer
    bool transposed = false;  // h holds (features, N)
    for (size_t i = 0; i < ops.size(); ++i) {
      const GpuOp& g = ops[i];
      if (g.op == Op::Flatten && !transposed) continue;  // contiguous: the same buffer
      // A ReLU right after a linear / conv layer is fused into it (sprig's kernels and
      // cuSPARSE's bias pass apply it, dense layers run it in place); a layer on sprig's
      // kernels feeding another (directly or through that ReLU) hands over (features, N).
      const bool fuse_relu = (g.op == Op::Linear || g.op == Op::Conv) && is_relu(i + 1);
      const size_t next = fuse_relu ? i + 2 : i + 1;
      const bool out_t = own(i) && own(next) && ops[next].cols == g.rows && N > 1;
      const Shape& out_shape = fuse_relu ? ops[i + 1].out_shape : g.out_shape;
      Floats y(size_t(N * numel(out_shape)));
      run_op(g, N, h, transposed, y.get(), out_t, fuse_relu);
      cur = std::move(y);  // frees the input, stream-ordered
      h = cur.get();
      transposed = out_t;
      if (fuse_relu) ++i;
    }
    if (!cur.get()) {  // no layer wrote anything (only flattens): copy the input
      cur = Floats(size_t(N * numel(input_shape)));
      cuda::copy_on_device(cur.get(), x, cur.size() * sizeof(float));
    }
    return cur;
  }

  // Measures the candidate kernels of layer g (dense weight and CSR both uploaded) on random
  // input at opt.batch, each as run alone ((N, in...) -> (N, out...), transposes included),
  // and keeps the fastest.
  void choose(GpuOp& g, CudaLayerPlan& plan, const std::vector<Kernel>& cands,
              const CudaPlanOptions& opt, uint64_t seed) {
    const int64_t N = opt.batch;
    Floats x = random_on_device(size_t(N * numel(g.in_shape)), seed);  // (N, in...)
    Floats y(size_t(N * numel(g.out_shape)));                          // (N, out...)
    size_t best = 0;
    for (size_t c = 0; c < cands.size(); ++c) {
      g.kernel = cands[c];
      double ms =
          gpu_median_ms([&] { run_op(g, N, x.get(), false, y.get(), false, false); }, opt.repeats);
      plan.times.push_back({kernel_name(cands[c]), ms});
      if (ms < plan.times[best].ms) best = c;
    }
    g.kernel = cands[best];
    size_t second = best == 0 ? 1 : 0;
    for (size_t c = 0; c < plan.times.size(); ++c)
      if (c != best && plan.times[c].ms < plan.times[second].ms) second = c;
    plan.reason = (opt.format == PackFormat::Auto ? "" : "forced csr: ") + plan.times[best].format +
                  " " + fmt_ms(plan.times[best].ms) + " ms < " + plan.times[second].format + " " +
                  fmt_ms(plan.times[second].ms) + " ms at " + pct(plan.sparsity()) + " sparsity";
  }
};

CudaInferenceModel::CudaInferenceModel(const InferenceModel& m, const CudaPlanOptions& opt)
    : impl_(std::make_unique<Impl>()) {
  SPRIG_CHECK(opt.batch >= 1, "GPU plan: batch must be >= 1, got ", opt.batch);
  ensure_gpu(opt.device);
  Impl& im = *impl_;
  im.device = cuda::device_name(opt.device);
  im.device_index = opt.device;
  im.input_shape = m.model.input_shape;
  Shape shape = im.input_shape;
  auto& mods = m.model.net->layers;
  for (size_t i = 0; i < mods.size(); ++i) {
    nn::Module& mod = *mods[i];
    GpuOp g;
    g.in_shape = shape;
    g.out_shape = mod.output_shape(shape);
    shape = g.out_shape;
    nn::ParameterPtr weight, bias;
    if (auto* lin = dynamic_cast<nn::Linear*>(&mod)) {
      g.op = Op::Linear;
      weight = lin->weight, bias = lin->bias;
    } else if (auto* conv = dynamic_cast<nn::Conv2d*>(&mod)) {
      g.op = Op::Conv;
      weight = conv->weight, bias = conv->bias;
      SPRIG_CHECK(g.in_shape.size() == 3, "GPU inference: conv layer ", i, " gets input ",
                  to_string(g.in_shape));
      g.conv = cpu::Conv2dShape{0,
                                g.in_shape[0],
                                g.in_shape[1],
                                g.in_shape[2],
                                conv->out_channels,
                                conv->kernel,
                                conv->kernel,
                                conv->opt.stride,
                                conv->opt.padding,
                                conv->opt.dilation};
    } else if (dynamic_cast<nn::ReLU*>(&mod)) {
      g.op = Op::Relu;
    } else if (auto* pool = dynamic_cast<nn::MaxPool2d*>(&mod)) {
      g.op = Op::Pool;
      SPRIG_CHECK(g.in_shape.size() == 3, "GPU inference: pool layer ", i, " gets input ",
                  to_string(g.in_shape));
      g.pool = cpu::Pool2dShape{0,
                                g.in_shape[0],
                                g.in_shape[1],
                                g.in_shape[2],
                                pool->kernel,
                                pool->stride,
                                pool->padding};
    } else if (dynamic_cast<nn::Flatten*>(&mod)) {
      g.op = Op::Flatten;
    } else {
      throw Error("GPU inference: layer " + std::to_string(i) + " (" + mod.spec() +
                  ") has no GPU path");
    }
    const PackedLayer* packed = nullptr;  // the packed layer of this module, if any
    for (const PackedLayer& l : m.layers)
      if (l.module == &mod) packed = &l;
    if (weight) {
      if (bias) {
        Tensor b = bias->value.to(Device::cpu());
        g.bias = Floats::upload(b.data(), size_t(b.numel()));
        g.has_bias = true;
      }
      CudaLayerPlan plan;
      plan.name = std::to_string(i);
      plan.index = i;
      plan.conv = g.op == Op::Conv;
      if (packed && packed->int8) {
        // int8 layers run as the packed file says, on the GPU's int8 kernels: no plan to make.
        upload_int8(g, *packed);
        plan.rows = g.rows, plan.cols = g.cols;
        plan.nonzero = packed->nonzero;
        plan.kernel = "int8";
        plan.reason = "int8 in the packed file (" + packed->format() + " on the CPU)";
      } else {
        Tensor w = weight->value.to(Device::cpu());
        g.rows = w.size(0);
        g.cols = w.numel() / g.rows;
        g.weight = Floats::upload(w.data(), size_t(w.numel()));
        plan.rows = g.rows, plan.cols = g.cols;
        plan.nonzero = weight->count_nonzero();
        const bool conv = g.op == Op::Conv;
        if (!opt.force_kernel.empty()) {
          g.kernel = parse_kernel(opt.force_kernel);
          plan.reason = "forced " + opt.force_kernel;
          if (conv && g.kernel == Kernel::Cusparse) {  // no cuSPARSE conv here
            g.kernel = Kernel::Dense;
            plan.reason += ", but conv layers have no cusparse path: dense";
          }
          if (g.kernel != Kernel::Dense) {
            g.csr = cuda::DeviceCsr(cpu::csr_from_dense(g.rows, g.cols, w.data()));
            g.weight.release();
          }
        } else if (opt.format == PackFormat::Dense) {
          plan.reason = "forced dense";
        } else {
          std::vector<Kernel> cands;
          if (opt.format == PackFormat::Auto) cands.push_back(Kernel::Dense);
          if (!conv) cands.push_back(Kernel::Cusparse);
          cands.push_back(Kernel::RowSplit);
          cands.push_back(Kernel::ColTile);
          g.csr = cuda::DeviceCsr(cpu::csr_from_dense(g.rows, g.cols, w.data()));
          im.choose(g, plan, cands, opt, opt.seed + i);
          if (opt.format == PackFormat::Bsr || opt.format == PackFormat::Nm)
            plan.reason = std::string("no GPU ") + pack_format_name(opt.format) +
                          " kernel, CSR instead; " + plan.reason;
          if (g.kernel == Kernel::Dense)
            g.csr.reset();
          else
            g.weight.release();
        }
        plan.kernel = kernel_name(g.kernel);
      }
      im.plans.push_back(std::move(plan));
    }
    im.ops.push_back(std::move(g));
  }
  im.output_shape = shape;
  cuda::synchronize();  // errors of the uploads and measurements surface here
}

CudaInferenceModel::~CudaInferenceModel() = default;
CudaInferenceModel::CudaInferenceModel(CudaInferenceModel&&) noexcept = default;
CudaInferenceModel& CudaInferenceModel::operator=(CudaInferenceModel&&) noexcept = default;

Tensor CudaInferenceModel::forward(const Tensor& x) const {
  const Impl& im = *impl_;
  Shape want = im.input_shape;
  want.insert(want.begin(), x.dim() > 0 ? x.size(0) : 1);
  SPRIG_CHECK(x.shape() == want, "packed model expects input (N, ",
              to_string(im.input_shape).substr(1), " but got ", to_string(x.shape()));
  const int64_t N = x.size(0);
  // A tensor already on the GPU is read in place (it was written on sprig's stream too).
  Floats xd;
  const float* xp = nullptr;
  if (x.device() == Device::cuda(im.device_index)) {
    xp = x.ptr();
  } else {
    Tensor xc = x.to(Device::cpu());
    xd = Floats::upload(xc.data(), size_t(xc.numel()));
    xp = xd.get();
  }
  Floats yd = im.forward_device(N, xp);
  Shape out = im.output_shape;
  out.insert(out.begin(), N);
  Tensor y = Tensor::empty(out);
  cuda::copy_to_host(y.data(), yd.get(), y.nbytes());  // waits for the forward
  return y;
}

double CudaInferenceModel::time_forward_ms(int64_t n, int repeats, uint64_t seed) const {
  const Impl& im = *impl_;
  Floats x = random_on_device(size_t(n * numel(im.input_shape)), seed);
  return gpu_median_ms([&] { im.forward_device(n, x.get()); }, repeats);
}

const std::vector<CudaLayerPlan>& CudaInferenceModel::layers() const {
  return impl_->plans;
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
  Floats wd = Floats::upload(w.data(), w.size());
  Floats bd = Floats::upload(bias.data(), bias.size());
  cuda::DeviceCsr csr(cpu::csr_from_dense(rows, cols, w.data()));

  std::vector<CudaSpmmTiming> out;
  for (int64_t B : batches) {
    SPRIG_CHECK(B >= 1, "GPU bench: batch must be >= 1, got ", B);
    CudaSpmmTiming t;
    t.rows = rows, t.cols = cols, t.batch = B, t.nnz = nnz;
    t.sparsity = 1.0 - double(nnz) / double(rows * cols);
    Floats x = random_on_device(size_t(B * cols), seed + 1 + uint64_t(B));  // (B, cols)
    // (B, rows) each: dense, cuSPARSE, row-split, column-tiled
    Floats yd(size_t(B * rows)), yc(size_t(B * rows)), yr(size_t(B * rows)), yt(size_t(B * rows));
    t.dense_ms = gpu_median_ms(
        [&] {
          cuda::gemm(false, true, B, rows, cols, 1.0f, x.get(), cols, wd.get(), cols, 0.0f,
                     yd.get(), rows);
          cuda::add_row_bias(B, rows, bd.get(), yd.get());
        },
        repeats);
    t.cusparse_ms = gpu_median_ms(
        [&] { cuda::csr_linear_cusparse(csr, B, x.get(), bd.get(), yc.get()); }, repeats);
    t.rowsplit_ms =
        gpu_median_ms([&] { cuda::csr_linear(csr, B, x.get(), bd.get(), yr.get()); }, repeats);
    t.coltile_ms = gpu_median_ms(
        [&] { cuda::csr_linear(csr, B, x.get(), bd.get(), yt.get(), cuda::CsrAlgo::ColTile); },
        repeats);
    std::vector<float> hd = yd.download(), hc = yc.download(), hr = yr.download(),
                       ht = yt.download();
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
