// Sparse packing and the inference plan: which kernel runs each conv / linear layer, chosen by
// measuring the candidates on this machine. The file format lives in pack_file.cpp.
#include "infer/pack.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/rng.h"
#include "infer/executor.h"
#include "infer/fold.h"
#include "infer/pack_internal.h"
#include "kernels/cpu/eltwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threads.h"
#include "prune/shrink.h"

namespace sprig::infer {

using detail::fmt_ms;
using detail::pct;

PackFormat parse_pack_format(const std::string& s) {
  for (PackFormat f : kPackFormats)
    if (s == pack_format_name(f)) return f;
  throw Error("--format must be auto, dense, csr, bsr or nm, got '" + s + "'");
}

const char* pack_format_name(PackFormat f) {
  switch (f) {
    case PackFormat::Auto:
      return "auto";
    case PackFormat::Dense:
      return "dense";
    case PackFormat::Csr:
      return "csr";
    case PackFormat::Bsr:
      return "bsr";
    case PackFormat::Nm:
      return "nm";
  }
  return "?";
}

std::string PackedLayer::format() const {
  if (int8) {
    if (kind == PackFormat::Csr) return "int8 csr";
    if (kind == PackFormat::Bsr) return "int8 bsr " + std::to_string(int8->bsr.br) + "x4";
    return "int8 dense";
  }
  switch (kind) {
    case PackFormat::Dense:
      return shrunk ? "shrunk-dense" : "dense";
    case PackFormat::Csr:
      return sparse.defined() ? backend_for(sparse.device()).csr_kernels().at(size_t(kernel))
                              : "csr";
    case PackFormat::Bsr:
      return "bsr " + std::to_string(sparse.block_rows) + "x" + std::to_string(sparse.block_cols);
    case PackFormat::Nm:
      return "nm " + std::to_string(sparse.n) + ":" + std::to_string(sparse.m);
    case PackFormat::Auto:
      break;
  }
  return "?";
}

size_t PackedLayer::weight_bytes() const {
  if (int8) {
    const Int8Weights& q = *int8;  // the kernel's arrays and the per-channel scales
    const size_t scales = q.scales.size() * sizeof(float);
    if (kind == PackFormat::Bsr)
      return scales + size_t(q.bsr.blocks()) * 4 * (1 + size_t(q.bsr.br)) +
             q.bsr.block_row_ptr.size() * 8 + q.bsr.row_sums.size() * 4;
    if (kind == PackFormat::Csr)
      return scales + size_t(q.csr.nnz()) * 3 + q.csr.row_ptr.size() * 8 +
             q.csr.row_sums.size() * 4;
    return scales + q.dense.data.size() + q.dense.row_sums.size() * 4 +
           (q.direct.words.size() + q.direct.row_sums.size()) * 4;
  }
  switch (kind) {
    case PackFormat::Dense:
      return size_t(rows * cols) * sizeof(float);
    case PackFormat::Csr:
    case PackFormat::Bsr:
    case PackFormat::Nm:
      return sparse.bytes();
    case PackFormat::Auto:
      break;
  }
  return 0;
}

namespace {
// Each thread runs the whole model on its share of the samples, its kernels on its thread
// alone: one fork and join per forward instead of one per kernel, and each thread's activations
// stay in its core's cache (on this VM a line another core wrote costs ~5x a local one to read,
// bench/RESULTS.md). Below kMinSamplesPerThread each, the kernels split the work instead: the
// weights, which every thread would read whole, outweigh a few samples' activations (mlp at
// batch 8 took 0.041 ms sharded against 0.027).
constexpr int64_t kMinSamplesPerThread = 16;
}  // namespace

int detail::planned_sample_shards(int64_t N) {
  return cpu::planned_shards(N, kMinSamplesPerThread);
}

int detail::for_each_sample_shard(
    const Tensor& x, const std::function<void(int shard, int64_t lo, const Tensor& xs)>& fn) {
  const int64_t N = x.size(0);
  return cpu::for_each_shard(N, kMinSamplesPerThread, [&](int s, int64_t lo, int64_t hi) {
    NoGradGuard no_grad;  // grad mode is per thread
    fn(s, lo, sample_rows(x, lo, hi));
  });
}

Tensor detail::sample_rows(const Tensor& x, int64_t lo, int64_t hi) {
  if (lo == 0 && hi == x.size(0)) return x;
  // Samples [lo, hi) of x, a view of its storage (no gradient: forward records none).
  const int64_t per = x.numel() / std::max<int64_t>(x.size(0), 1);
  auto rows = std::make_shared<TensorImpl>();
  rows->storage = x.impl()->storage;
  rows->offset = x.impl()->offset + lo * per;
  rows->shape = x.shape();
  rows->shape[0] = hi - lo;
  rows->dtype = x.dtype();
  return Tensor(rows);
}

double detail::time_median_sharded_ms(const Tensor& x, int repeats,
                                      const std::function<void(const Tensor& xs)>& fn) {
  double ms = 0.0;
  detail::for_each_sample_shard(x, [&](int s, int64_t, const Tensor& xs) {
    const double shard_ms = time_median_ms([&] { fn(xs); }, repeats);
    if (s == 0) ms = shard_ms;
  });
  return ms;
}

double time_median_ms(const std::function<void()>& fn, int repeats, Device device) {
  using clock = std::chrono::steady_clock;
  const Backend& be = backend_for(device);
  auto ms_of = [&](int inner) {
    be.synchronize();
    auto t0 = clock::now();
    for (int i = 0; i < inner; ++i) fn();
    be.synchronize();
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  };
  ms_of(1);  // warm-up: caches, allocator, thread pool; on a GPU module loading, workspaces
  // Calls much shorter than the clock's jitter (on a GPU, than a synchronisation) are batched
  // so one sample lasts >= 0.2 ms (1 ms).
  const double min_ms = device.type == DeviceType::CUDA ? 1.0 : 0.2;
  double once = ms_of(1);
  int inner = once >= min_ms ? 1 : int(std::min(1000.0, std::ceil(min_ms / std::max(once, 1e-4))));
  std::vector<double> samples;
  for (int r = 0; r < std::max(1, repeats); ++r) samples.push_back(ms_of(inner) / inner);
  std::sort(samples.begin(), samples.end());
  size_t n = samples.size();
  return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

namespace {

// The layer's weight viewed as 2-D (rows, cols) and its pattern of kept weights: the mask where
// there is one (a kept weight that happens to be 0 still counts as kept), else value != 0.
struct WeightView {
  Shape shape;  // the weight's own: (out, in) or (K, C, R, S)
  int64_t rows = 0, cols = 0;
  const float* w = nullptr;
  std::vector<uint8_t> kept;  // (rows, cols)
};

WeightView view_of(const nn::Parameter& p) {
  WeightView v;
  v.shape = p.value.shape();
  v.rows = p.value.size(0);
  v.cols = p.value.numel() / v.rows;
  v.w = p.value.data();
  v.kept.resize(size_t(v.rows * v.cols));
  const uint8_t* m = p.mask ? p.mask->keep.data_as<uint8_t>() : nullptr;
  for (size_t i = 0; i < v.kept.size(); ++i) v.kept[i] = m ? m[i] != 0 : v.w[i] != 0.0f;
  return v;
}

// The largest block (area >= 2) whose aligned tiles are each all kept or all pruned, with at
// least one tile pruned; {0, 0} when there is none. Edge tiles are smaller, as prune's blocks.
std::pair<int64_t, int64_t> detect_block(const WeightView& v) {
  static const std::pair<int64_t, int64_t> shapes[] = {{4, 4}, {1, 16}, {16, 1}, {2, 8}, {8, 2},
                                                       {1, 8}, {8, 1},  {2, 4},  {4, 2}, {2, 2},
                                                       {1, 4}, {4, 1},  {1, 2},  {2, 1}};
  for (auto [br, bc] : shapes) {
    bool ok = true, any_pruned = false;
    for (int64_t r0 = 0; ok && r0 < v.rows; r0 += br)
      for (int64_t c0 = 0; ok && c0 < v.cols; c0 += bc) {
        uint8_t first = v.kept[size_t(r0 * v.cols + c0)];
        for (int64_t r = r0; ok && r < std::min(r0 + br, v.rows); ++r)
          for (int64_t c = c0; c < std::min(c0 + bc, v.cols); ++c)
            if (v.kept[size_t(r * v.cols + c)] != first) {
              ok = false;
              break;
            }
        any_pruned = any_pruned || !first;
      }
    if (ok && any_pruned) return {br, bc};
  }
  return {0, 0};
}

// The sparsest N:M (N <= M / 2, M in 4, 8, 16) that every group of the rows satisfies, by the
// weights' values (nm_from_dense keeps nonzero values); {0, 0} when none does.
std::pair<int64_t, int64_t> detect_nm(const WeightView& v) {
  std::pair<int64_t, int64_t> best{0, 0};
  for (int64_t m : {4, 8, 16}) {
    int64_t n = 0;
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t c0 = 0; c0 < v.cols; c0 += m) {
        int64_t count = 0;
        for (int64_t c = c0; c < std::min(c0 + m, v.cols); ++c)
          count += v.w[size_t(r * v.cols + c)] != 0.0f;
        n = std::max(n, count);
      }
    n = std::max<int64_t>(n, 1);
    if (2 * n > m) continue;
    if (best.second == 0 || n * best.second < best.first * m) best = {n, m};
  }
  return best;
}

// Fills the kind's sparse weight from the dense weight.
void pack_as(PackedLayer& p, const detail::Candidate& c, const WeightView& v) {
  const PackFormat kind = c.kind;
  const std::pair<int64_t, int64_t> shape = c.shape;
  p.kind = kind;
  p.kernel = c.kernel;
  p.sparse = {};
  if (kind == PackFormat::Csr)
    p.sparse = sparse_weight(cpu::csr_from_dense(v.rows, v.cols, v.w), v.shape);
  if (kind == PackFormat::Bsr)
    p.sparse =
        sparse_weight(cpu::bsr_from_dense(v.rows, v.cols, shape.first, shape.second, v.w), v.shape);
  if (kind == PackFormat::Nm)
    p.sparse =
        sparse_weight(cpu::nm_from_dense(v.rows, v.cols, shape.first, shape.second, v.w), v.shape);
  detail::set_kernel_arrays(p, v.w);
}

// A dense Linear from its W^T: y (N, rows) = x (N, cols) W^T + bias, then ReLU when relu.
Tensor run_dense_linear(const PackedLayer& p, const nn::Linear& lin, const Tensor& x, bool relu) {
  SPRIG_CHECK(x.dim() == 2 && x.size(1) == p.cols, "layer ", p.name, " (", lin.spec(),
              ") got input ", to_string(x.shape()), ", needs (N, ", p.cols, ")");
  const int64_t N = x.size(0);
  Tensor y = Tensor::empty({N, p.rows});  // (N, rows)
  float* yd = y.data();
  const float* bias = lin.bias ? lin.bias->value.data() : nullptr;
  if (bias)  // the product adds onto the bias rows
    for (int64_t n = 0; n < N; ++n) std::copy(bias, bias + p.rows, yd + n * p.rows);
  // Where gemm takes x W^T as dot products, W is read as stored; elsewhere W^T comes packed.
  const float beta = bias ? 1.0f : 0.0f;
  if (cpu::gemm_takes_dots(N, p.rows, p.cols))
    cpu::gemm(false, true, N, p.rows, p.cols, 1.0f, x.data(), p.cols, lin.weight->value.data(),
              p.cols, beta, yd, p.rows);
  else
    cpu::gemm_prepacked(false, N, x.data(), p.cols, p.weight_packed, beta, yd, p.rows);
  if (relu) cpu::relu_forward(y.numel(), yd, yd);
  return y;
}

// A dense conv layer, its ReLU (when relu) fused into the kernel's stores.
Tensor run_dense_conv(const PackedLayer& p, const nn::Conv2d& conv, const Tensor& x, bool relu) {
  const Conv2dShape s = detail::conv_shape(p, "layer", conv, x);
  Tensor y = Tensor::empty({s.N, s.K, s.P(), s.Q()});  // (N, K, P, Q)
  cpu::conv2d_forward(s, x.data(), conv.weight->value.data(),
                      conv.bias ? conv.bias->value.data() : nullptr, y.data(), relu, p.conv_kernel,
                      p.conv_packed_w.empty() ? nullptr : p.conv_packed_w.data());
  return y;
}

}  // namespace

Tensor detail::run_sparse(const PackedLayer& p, nn::Module& m, const Tensor& x, SparseOptions opt) {
  opt.kernel = p.kernel;
  if (auto* conv = dynamic_cast<nn::Conv2d*>(&m)) {
    // The offsets made for in_shape fit any batch of it.
    if (p.conv_offsets.defined() && x.dim() == 4 && x.size(2) == p.in_shape[1] &&
        x.size(3) == p.in_shape[2])
      opt.conv_offsets = p.conv_offsets;
    return sparse_conv2d(x, p.sparse, conv->bias ? conv->bias->value : Tensor(), conv->opt, opt);
  }
  auto* lin = dynamic_cast<nn::Linear*>(&m);
  SPRIG_CHECK(lin, "packed layer ", p.name, " is neither conv nor linear");
  SPRIG_CHECK(x.dim() == 2 && x.size(opt.x_t ? 0 : 1) == p.cols, "packed layer ", p.name, " (",
              lin->spec(), ") got input ", to_string(x.shape()), ", needs (N, ", p.cols, ")");
  return sparse_linear(x, p.sparse, lin->bias ? lin->bias->value : Tensor(), opt);
}

namespace {

// A CSR conv with its input, output or both in sample lanes (LayerCall::x_lanes, y_lanes), the
// residual (in y's layout) and ReLU in its stores.
Tensor run_lanes(const PackedLayer& p, const nn::Conv2d& conv, const Tensor& x,
                 const detail::LayerCall& c) {
  Conv2dShape s;
  if (const cpu::LanesShape* a = c.x_lanes) {
    SPRIG_CHECK(a->C == conv.in_channels && x.numel() == a->floats(), "packed layer ", p.name, " (",
                conv.spec(), ") got sample lanes of ", a->C, " channels");
    s = detail::conv_shape(conv, a->N, a->H, a->W);
  } else {
    s = detail::conv_shape(p, "packed layer", conv, x);
  }
  const cpu::LanesShape ya{s.N, s.K, s.P(), s.Q(), c.y_lanes};
  Tensor y = c.y_lanes >= 0 ? Tensor::empty({ya.floats()})
                            : Tensor::empty({s.N, s.K, s.P(), s.Q()});  // (N, K, P, Q)
  const Tensor* r = c.residual;
  SPRIG_CHECK(!r || (r->dtype() == DType::F32 &&
                     (c.y_lanes >= 0 ? r->numel() == y.numel() : r->shape() == y.shape())),
              "residual block ending in ", p.name, ": its branches give ",
              to_string({s.N, s.K, s.P(), s.Q()}), " and ", r ? to_string(r->shape()) : "");
  cpu::csr_conv2d_lanes(p.sparse.csr(), s, x.data(), c.x_lanes ? c.x_lanes->pad : -1,
                        conv.bias ? conv.bias->value.data() : nullptr, y.data(), c.y_lanes, c.relu,
                        r ? r->data() : nullptr);
  return y;
}

// One float or int8 layer's forward on the CPU, a ReLU after it fused when relu.
Tensor run_layer(const PackedLayer& p, nn::Module& m, const Tensor& x, bool relu) {
  if (p.int8) return detail::run_int8(p, m, x, relu);
  if (p.kind != PackFormat::Dense) {
    SparseOptions opt;
    opt.relu = relu;
    return detail::run_sparse(p, m, x, opt);
  }
  if (!p.weight_packed.panels.empty())
    return run_dense_linear(p, dynamic_cast<nn::Linear&>(m), x, relu);
  if (auto* conv = dynamic_cast<nn::Conv2d*>(&m); conv && !conv->fake_quant)
    return run_dense_conv(p, *conv, x, relu);
  Tensor y = m(x);  // a fake-quantised conv, as trained
  if (relu) cpu::relu_forward(y.numel(), y.data(), y.data());
  return y;
}

// The executor's conv / linear layers on the CPU: each on its packed kernel. A CSR Linear at
// batch >= 4 runs csr_linear_ex, which takes and gives (features, N) activations.
class CpuLayers final : public detail::LayerRunner {
 public:
  explicit CpuLayers(const InferenceModel& im) : LayerRunner(&im.layers) {}
  bool chains(const PackedLayer& p, int64_t N) const override {
    return p.kind == PackFormat::Csr && !p.conv && N >= 4;
  }
  bool requantizes(const PackedLayer& p) const override { return detail::can_requantize(p); }
  bool fuses_residual(const PackedLayer& p) const override {
    return p.conv && p.kind == PackFormat::Csr && !p.int8;
  }
  int64_t lanes_pad(const PackedLayer& p, const Shape& x) const override {
    auto* conv = dynamic_cast<const nn::Conv2d*>(p.module);
    if (!conv || p.kind != PackFormat::Csr || p.int8 || x.size() != 4 || x[1] != conv->in_channels)
      return -1;
    const Conv2dShape s = detail::conv_shape(*conv, x[0], x[2], x[3]);
    return cpu::csr_conv2d_lanes_fit(p.sparse.csr(), s) ? s.pad : -1;
  }
  Tensor run(const PackedLayer& p, nn::Module& m, const Tensor& x,
             const detail::LayerCall& c) const override {
    if (p.int8) return detail::run_int8(p, m, x, c.relu, c.requantize);
    if (c.x_lanes || c.y_lanes >= 0) return run_lanes(p, dynamic_cast<nn::Conv2d&>(m), x, c);
    const int64_t N = c.x_t ? x.size(1) : x.size(0);
    if (!c.residual && !chains(p, N)) return run_layer(p, m, x, c.relu);
    SparseOptions opt;
    opt.relu = c.relu;
    opt.x_t = c.x_t;
    opt.y_t = c.y_t;
    if (c.residual) opt.residual = *c.residual;
    return detail::run_sparse(p, m, x, opt);
  }
};

}  // namespace

std::vector<detail::Candidate> detail::plan_candidates(Device d, bool with_dense, bool conv,
                                                       std::pair<int64_t, int64_t> block,
                                                       std::pair<int64_t, int64_t> nm) {
  std::vector<Candidate> cands;
  if (with_dense) cands.push_back({PackFormat::Dense});
  for (size_t k = 0; k < backend_for(d).csr_kernels().size(); ++k)
    cands.push_back({PackFormat::Csr, {0, 0}, int(k)});
  if (!d.is_cpu() || conv) return cands;  // BSR and N:M: CPU linear kernels only
  if (block.first) cands.push_back({PackFormat::Bsr, block});
  if (nm.first) cands.push_back({PackFormat::Nm, nm});
  return cands;
}

size_t detail::pick_candidate(PackedLayer& p, const std::vector<Candidate>& cands,
                              const std::function<void(const Candidate&)>& make,
                              const std::function<double()>& time) {
  p.times.clear();
  std::vector<size_t> bytes;  // (candidates) weight bytes in each format
  for (const Candidate& c : cands) {
    make(c);
    bytes.push_back(p.weight_bytes());
    p.times.push_back({c.kind == PackFormat::Dense ? "dense" : p.format(), time()});
  }
  const size_t best = smallest_within_noise(p.times, bytes);
  make(cands[best]);
  return best;
}

// Chooses p's kind: forced, or the fastest measured candidate.
void detail::choose(PackedLayer& p, nn::Module& module, const nn::Parameter& weight,
                    const PackOptions& opt) {
  WeightView v = view_of(weight);
  auto block = detect_block(v);
  auto nm = p.conv ? std::pair<int64_t, int64_t>{0, 0} : detect_nm(v);
  // N:M explains the zeros only for N:M masks, or when the N:M storage is not much denser than
  // the weights themselves (a 95% unstructured layer fits 7:16, but stores 44% of the values).
  bool nm_mask = weight.mask && weight.mask->granularity == nn::Granularity::NM;
  double density = 1.0 - p.sparsity();
  if (nm.first && !nm_mask && density < 0.75 * double(nm.first) / double(nm.second)) nm = {0, 0};
  std::string shrink_note;
  if (p.shrunk)
    shrink_note = "shrunk " + std::to_string(p.rows_before) + "x" + std::to_string(p.cols_before) +
                  " -> " + std::to_string(p.rows) + "x" + std::to_string(p.cols) + "; ";
  std::string at = " at " + pct(p.sparsity()) + " sparsity";

  if (opt.format != PackFormat::Auto) {
    std::string forced = std::string("forced ") + pack_format_name(opt.format);
    switch (opt.format) {
      case PackFormat::Dense:
        pack_as(p, {PackFormat::Dense}, v);
        p.reason = shrink_note + forced;
        break;
      case PackFormat::Csr:
        pack_as(p, {PackFormat::Csr}, v);
        p.reason = shrink_note + forced + at;
        break;
      case PackFormat::Bsr:
        if (p.conv) {
          pack_as(p, {PackFormat::Csr}, v);
          p.reason = shrink_note + forced + ", but conv layers have no bsr kernel: csr" + at;
        } else {
          auto b = block.first ? block : std::make_pair(opt.block_rows, opt.block_cols);
          pack_as(p, {PackFormat::Bsr, b}, v);
          p.reason = shrink_note + forced +
                     (block.first ? " (the zeros form these blocks)"
                                  : " (no block pattern; given block)") +
                     at;
        }
        break;
      case PackFormat::Nm:
        if (p.conv || !nm.first) {
          pack_as(p, {PackFormat::Csr}, v);
          p.reason =
              shrink_note + forced +
              (p.conv ? ", but conv layers have no nm kernel: csr"
                      : ", but the zeros are not N:M (no N:M with N <= M/2 fits them): csr") +
              at;
        } else {
          pack_as(p, {PackFormat::Nm, nm}, v);
          p.reason = shrink_note + forced + at;
        }
        break;
      case PackFormat::Auto:
        break;
    }
    return;
  }

  // Auto: measure every candidate on random inputs of the layer's real shape and batch.
  Rng rng(opt.seed + p.index);
  Shape xs = p.in_shape;
  xs.insert(xs.begin(), opt.batch);
  Tensor x = Tensor::uniform(xs, -1.0f, 1.0f, rng);
  const std::vector<detail::Candidate> cands =
      detail::plan_candidates(Device::cpu(), true, p.conv, block, nm);
  NoGradGuard no_grad;
  const size_t best = detail::pick_candidate(
      p, cands, [&](const detail::Candidate& c) { pack_as(p, c, v); },
      [&] {
        return detail::time_median_sharded_ms(
            x, opt.repeats, [&](const Tensor& xs) { run_layer(p, module, xs, false); });
      });
  p.reason = shrink_note + detail::best_against_runner_up(p.times, best) + at;
  if (!p.conv && !block.first && !nm.first) p.reason += " (no block or N:M pattern)";
}

namespace detail {

namespace {

// Appends the conv / linear layers of seq (path prefix `prefix`) given per-sample input `shape`;
// returns seq's output shape.
Shape walk(const nn::Sequential& seq, const std::string& prefix, Shape shape,
           std::vector<WeightedLayer>& out) {
  for (size_t i = 0; i < seq.layers.size(); ++i) {
    nn::Module* m = seq.layers[i].get();
    const std::string name = prefix + seq.name_of(i);
    if (auto* inner = dynamic_cast<nn::Sequential*>(m)) {
      shape = walk(*inner, name + ".", shape, out);
      continue;
    }
    if (auto* res = dynamic_cast<nn::Residual*>(m)) {
      walk(*res->body, name + ".", shape, out);
      if (!res->identity_shortcut()) walk(*res->shortcut, name + ".shortcut.", shape, out);
    }
    WeightedLayer l;
    l.conv = dynamic_cast<nn::Conv2d*>(m);
    l.linear = dynamic_cast<nn::Linear*>(m);
    if (l.conv || l.linear) {
      l.name = name;
      l.module = m;
      l.in_shape = shape;
      out.push_back(std::move(l));
    }
    shape = m->output_shape(shape);
  }
  return shape;
}

}  // namespace

Conv2dShape conv_shape(const PackedLayer& p, const char* what, const nn::Conv2d& conv,
                       const Tensor& x) {
  SPRIG_CHECK(x.dim() == 4 && x.size(1) == conv.in_channels, what, " ", p.name, " (", conv.spec(),
              ") got input ", to_string(x.shape()));
  return conv_shape(conv, x.size(0), x.size(2), x.size(3));
}

Conv2dShape conv_shape(const nn::Conv2d& conv, int64_t N, int64_t H, int64_t W) {
  return {N,
          conv.in_channels,
          H,
          W,
          conv.out_channels,
          conv.kernel,
          conv.kernel,
          conv.opt.stride,
          conv.opt.padding,
          conv.opt.dilation};
}

void set_kernel_arrays(PackedLayer& p, const float* w) {
  p.weight_packed = {};
  p.conv_kernel = cpu::ConvForward::Auto;
  p.conv_packed_w.clear();
  p.conv_offsets = Tensor();
  auto* conv = dynamic_cast<const nn::Conv2d*>(p.module);
  if (p.kind == PackFormat::Csr && conv && p.in_shape.size() == 3) {
    const std::vector<int32_t> off = cpu::csr_conv2d_offsets(
        p.sparse.csr(), conv_shape(*conv, 1, p.in_shape[1], p.in_shape[2]));  // (nnz)
    p.conv_offsets = Tensor::from_vector_i32(off, {int64_t(off.size())});
  }
  if (p.kind != PackFormat::Dense) return;
  if (!p.conv) {
    p.weight_packed = cpu::gemm_pack_b(true, p.cols, p.rows, w, p.cols);  // op(B) = W^T
  } else if (conv && p.in_shape.size() == 3) {
    const Conv2dShape s = conv_shape(*conv, 1, p.in_shape[1], p.in_shape[2]);
    p.conv_kernel = cpu::conv2d_forward_kernel(s);
    p.conv_packed_w.resize(size_t(cpu::conv2d_packed_size(s, p.conv_kernel)));
    if (!p.conv_packed_w.empty())
      cpu::conv2d_forward_pack(s, p.conv_kernel, w, p.conv_packed_w.data());
  }
}

std::vector<WeightedLayer> weighted_layers(const nn::Model& m) {
  std::vector<WeightedLayer> out;
  walk(*m.net, "", m.input_shape, out);
  return out;
}

}  // namespace detail

namespace {

// The forward's schedule, measured on the whole model. Candidates:
// - whole shards: each thread runs the model on its share of the samples at once;
// - micro-batches: each share in pieces whose widest activation fits kMicroBatchBytes, in whole
//   groups of csr_conv2d's sample lanes (a partial group costs a whole one). A shard
//   of 128 cnn2 or ResNet-20 samples holds 6.4 MB per activation, which spills out of L2 (2 MB)
//   between layers; pieces keep it in L2, at the price of reading every weight once per piece
//   and of kernels running at a smaller batch. Measured at batch 256 on 2 threads: ResNet-20
//   pruned 90% ran 13-20% faster in pieces of 20, cnn2 ~20% slower (its 12544 -> 10
//   classifier re-read per piece);
// - micro-batches of kBalancePiece samples, on several threads: more pieces than threads, so a
//   thread slowed by another process takes fewer (whole shards wait for the slow one). At
//   batch 256 on 2 threads: ResNet-20 pruned 90% 40.7 ms, against 49.3 in whole shards and 43.3
//   in pieces of 20; dense cnn2 4.5% faster than whole shards, dense mlp 5% slower;
// - kernels split: no shards, each kernel splits its own work. The CSR SpMM computes panels of
//   64 samples; shards of 32 halve its panels, and mlp pruned 90% at batch 64 on 2 threads ran
//   in 0.045 ms sharded, as on one thread.
// Another schedule must beat whole shards by 5%: they are often within the noise of a shared
// machine, and whole shards are the simpler one.
constexpr int64_t kMicroBatchBytes = int64_t(1) << 20;
constexpr int64_t kBalancePiece = 32;

void choose_schedule(InferenceModel& im, const PackOptions& opt) {
  im.split_samples = true;
  im.micro_batch = 0;
  im.schedule_reason.clear();
  const int shards = detail::planned_sample_shards(opt.batch);
  int64_t widest = 1;  // floats of the largest per-sample input or output of a conv / linear
  for (auto& p : im.layers) {
    widest = std::max(widest, numel(p.in_shape));
    if (auto* conv = dynamic_cast<const nn::Conv2d*>(p.module))
      widest = std::max(widest, numel(conv->output_shape(p.in_shape)));
  }
  // Whole groups of csr_conv2d's sample lanes.
  const int64_t group = cpu::csr_conv2d_group;
  const int64_t piece = std::max(group, kMicroBatchBytes / (widest * 4) / group * group);
  const int64_t shard = opt.batch / shards;  // the first's
  struct Candidate {
    std::string name;
    bool split_samples;
    int64_t micro_batch;
    std::vector<double> ms;  // one median per round
  };
  std::vector<Candidate> candidates;
  candidates.push_back({"whole shards of " + std::to_string(shard), true, 0, {}});
  auto pieces_of = [&](int64_t mb) {
    candidates.push_back({"micro-batches of " + std::to_string(mb) + " samples", true, mb, {}});
  };
  if (shard > piece) pieces_of(piece);
  if (shards > 1 && shard > kBalancePiece && piece != kBalancePiece) pieces_of(kBalancePiece);
  if (shards > 1) candidates.push_back({"kernels split", false, 0, {}});
  if (candidates.size() == 1) return;
  Shape xs = im.model.input_shape;
  xs.insert(xs.begin(), opt.batch);
  Rng rng(opt.seed);
  const Tensor x = Tensor::uniform(xs, -1.0f, 1.0f, rng);  // (batch, input_shape...)
  // Alternating rounds; each candidate's median round counts.
  for (int round = 0; round < 3; ++round)
    for (auto& c : candidates) {
      im.split_samples = c.split_samples;
      im.micro_batch = c.micro_batch;
      c.ms.push_back(time_median_ms([&] { im.forward(x); }, opt.repeats));
    }
  const Candidate* best = &candidates[0];
  std::string reason;
  for (auto& c : candidates) {
    std::sort(c.ms.begin(), c.ms.end());
    if (c.ms[1] < detail::kFasterBeyondNoise * candidates[0].ms[1] && c.ms[1] < best->ms[1])
      best = &c;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s %.3f ms", c.name.c_str(), c.ms[1]);
    reason += (reason.empty() ? "" : ", ") + std::string(buf);
  }
  im.split_samples = best->split_samples;
  im.micro_batch = best->micro_batch;
  im.schedule_reason = reason + ": " + best->name +
                       (best == &candidates[0] ? " (no other 5% faster)" : " (5% faster or more)");
}

}  // namespace

InferenceModel pack_model(const nn::Model& source, const PackOptions& opt) {
  SPRIG_CHECK(opt.batch >= 1, "pack: batch must be >= 1, got ", opt.batch);
  InferenceModel im;
  im.model = prune::copy_model(source);
  im.source_spec = source.spec;
  im.source_params = source.num_parameters();
  im.batch = opt.batch;
  if (opt.shrink) prune::shrink(im.model);
  fold_batchnorm(im.model);
  im.model.net->eval();

  auto layers = detail::weighted_layers(im.model);
  auto before = detail::weighted_layers(source);
  SPRIG_CHECK(layers.size() == before.size(), "pack: shrinking changed the number of weighted ",
              "layers from ", before.size(), " to ", layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const detail::WeightedLayer& l = layers[i];
    const nn::ParameterPtr& weight = l.weight();
    SPRIG_CHECK(bool(l.conv) == bool(before[i].conv), "pack: layer ", l.name,
                " changed kind while shrinking");
    PackedLayer p;
    p.name = l.name;
    p.index = i;
    p.module = l.module;
    p.conv = l.conv != nullptr;
    p.rows = weight->value.size(0);
    p.cols = weight->value.numel() / p.rows;
    p.nonzero = weight->count_nonzero();
    p.in_shape = l.in_shape;
    const nn::ParameterPtr& w0 = before[i].weight();
    p.rows_before = w0->value.size(0);
    p.cols_before = w0->value.numel() / p.rows_before;
    p.shrunk = p.rows != p.rows_before || p.cols != p.cols_before;
    detail::choose(p, *l.module, *weight, opt);
    im.layers.push_back(std::move(p));
  }
  choose_schedule(im, opt);
  return im;
}

Tensor InferenceModel::forward(const Tensor& x) const {
  return forward_observed(x, {});
}

Tensor InferenceModel::forward_observed(const Tensor& x, const Observer& observe) const {
  NoGradGuard no_grad;
  const Shape& in = model.input_shape;
  Shape want = in;
  want.insert(want.begin(), x.dim() > 0 ? x.size(0) : 1);
  SPRIG_CHECK(x.shape() == want, "packed model expects input (N, ", to_string(in).substr(1),
              " but got ", to_string(x.shape()));
  const CpuLayers layers(*this);
  if (observe) return detail::run_blocks(*model.net, x, layers, &observe);
  const int64_t N = x.size(0);
  const int64_t mb = micro_batch > 0 ? micro_batch : std::max<int64_t>(N, 1);
  const bool shards = split_samples && detail::planned_sample_shards(N) > 1;
  if (mb >= N && !shards)  // one piece (an empty batch too)
    return detail::run_blocks(*model.net, x, layers);
  const Shape out = model.output_shape();
  Shape shape = out;
  shape.insert(shape.begin(), N);
  Tensor y = Tensor::empty(shape);  // (N, out...) each piece's output copied to its rows
  // Samples [lo, hi) through the model, into their rows of y.
  auto run_piece = [&](int64_t lo, int64_t hi) {
    const Tensor piece = detail::run_blocks(*model.net, detail::sample_rows(x, lo, hi), layers);
    SPRIG_CHECK(piece.numel() == (hi - lo) * numel(out), "packed model: a piece of ", hi - lo,
                " samples gave ", to_string(piece.shape()), ", not (", hi - lo, ", ",
                to_string(out).substr(1));
    std::memcpy(y.data() + lo * numel(out), piece.data(), size_t(piece.numel()) * sizeof(float));
  };
  if (mb < N && !split_samples) {
    for (int64_t lo = 0; lo < N; lo += mb) run_piece(lo, std::min(N, lo + mb));  // kernels split
  } else if (mb < N) {
    // Pieces claimed one at a time by the threads as they come free: a thread slowed by another
    // process takes fewer of them. Each piece's kernels run on its thread alone.
    cpu::run_items((N + mb - 1) / mb, cpu::available_threads(), [&](int64_t i) {
      NoGradGuard no_grad;  // grad mode is per thread
      run_piece(i * mb, std::min(N, (i + 1) * mb));
    });
  } else {
    detail::for_each_sample_shard(
        x, [&](int, int64_t lo, const Tensor& xs) { run_piece(lo, lo + xs.size(0)); });
  }
  return y;
}

int64_t InferenceModel::nonzero() const {
  int64_t n = 0;
  for (auto& [name, p] : model.named_parameters()) n += p->count_nonzero();
  return n;
}

}  // namespace sprig::infer
