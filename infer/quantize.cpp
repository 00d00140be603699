// Post-training int8 quantisation: calibration of the layers' input ranges, the int8 plan, and
// the int8 layers' forward, which the executor in pack.cpp calls.
#include "infer/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "infer/pack_internal.h"
#include "kernels/cpu/conv_int8.h"

namespace sprig::infer {

using detail::fmt_ms;
using detail::pct;

Calibration parse_calibration(const std::string& s) {
  for (auto c : {Calibration::MinMax, Calibration::Percentile, Calibration::Entropy})
    if (s == calibration_name(c)) return c;
  throw Error("--calibration must be minmax, percentile or entropy, got '" + s + "'");
}

const char* calibration_name(Calibration c) {
  switch (c) {
    case Calibration::MinMax:
      return "minmax";
    case Calibration::Percentile:
      return "percentile";
    case Calibration::Entropy:
      return "entropy";
  }
  return "?";
}

namespace {

const nn::ParameterPtr& weight_of(const nn::Module& m) {
  if (auto* conv = dynamic_cast<const nn::Conv2d*>(&m)) return conv->weight;
  return dynamic_cast<const nn::Linear&>(m).weight;
}

const float* bias_of(const nn::Module& m) {
  const nn::ParameterPtr* b = nullptr;
  if (auto* conv = dynamic_cast<const nn::Conv2d*>(&m)) b = &conv->bias;
  if (auto* lin = dynamic_cast<const nn::Linear*>(&m)) b = &lin->bias;
  return b && *b ? (*b)->value.data() : nullptr;
}

}  // namespace

namespace detail {

bool can_requantize(const PackedLayer& p) {
  return p.int8 && (!p.conv || !p.int8->direct.words.empty());
}

Tensor run_int8(const PackedLayer& p, nn::Module& m, const Tensor& x, bool relu,
                const cpu::ActivationQuant* requantize) {
  const Int8Weights& q = *p.int8;
  const float* bias = bias_of(m);
  SPRIG_CHECK(!requantize || can_requantize(p), "int8 layer ", p.name,
              " cannot hand on uint8 codes");
  // x is floats, or already this layer's input codes (the previous int8 layer requantised).
  // Scratch reused from call to call (grow-only, per thread): no allocation per forward.
  thread_local std::vector<uint8_t> xq;   // x's shape, uint8
  thread_local std::vector<int32_t> acc;  // conv on im2col + gemm: (N, K, P, Q) int32 sums
  const uint8_t* codes = nullptr;
  if (x.dtype() == DType::U8) {
    codes = x.data_as<uint8_t>();
  } else {
    if (xq.size() < size_t(x.numel())) xq.resize(size_t(x.numel()));
    cpu::quantize_activations(x.data(), x.numel(), q.input, xq.data());
    codes = xq.data();
  }
  const DType out_type = requantize ? DType::U8 : DType::F32;
  if (auto* conv = dynamic_cast<nn::Conv2d*>(&m)) {
    const Conv2dShape s = conv_shape(p, "int8 layer", *conv, x);
    Tensor y = Tensor::empty({s.N, s.K, s.P(), s.Q()}, out_type);
    if (requantize) {
      cpu::conv2d_u8s8_direct_requantize(s, codes, q.input.zero, q.direct, q.input.scale,
                                         q.scales.data(), bias, relu, *requantize,
                                         y.data_as<uint8_t>());
    } else if (!q.direct.words.empty()) {
      cpu::conv2d_u8s8_direct_dequantize(s, codes, q.input.zero, q.direct, q.input.scale,
                                         q.scales.data(), bias, relu, y.data());
    } else {
      if (acc.size() < size_t(y.numel())) acc.resize(size_t(y.numel()));  // (N, K, P, Q)
      cpu::conv2d_u8s8(s, codes, q.input.zero, q.dense, acc.data());
      cpu::dequantize_channels_bias_relu(s.N, s.K, s.P() * s.Q(), acc.data(), q.input.scale,
                                         q.scales.data(), bias, relu, y.data());
    }
    return y;
  }
  SPRIG_CHECK(x.dim() == 2 && x.size(1) == p.cols, "int8 layer ", p.name, " (", m.spec(),
              ") got input ", to_string(x.shape()), ", needs (N, ", p.cols, ")");
  const int64_t N = x.size(0);
  Tensor y = Tensor::empty({N, p.rows}, out_type);
  cpu::Int8Dequantize dq;
  dq.a_scale = q.input.scale;
  dq.w_scales = q.scales.data();
  dq.bias = bias;
  dq.relu = relu;
  const int32_t zero = q.input.zero;
  uint8_t* yq = requantize ? y.data_as<uint8_t>() : nullptr;
  switch (p.kind) {
    case PackFormat::Csr:
      if (requantize)
        cpu::csr_int8_linear_requantize(q.csr, N, codes, zero, dq, *requantize, yq);
      else
        cpu::csr_int8_linear_dequantize(q.csr, N, codes, zero, dq, y.data());
      break;
    case PackFormat::Bsr:
      if (requantize)
        cpu::bsr_int8_linear_requantize(q.bsr, N, codes, zero, dq, *requantize, yq);
      else
        cpu::bsr_int8_linear_dequantize(q.bsr, N, codes, zero, dq, y.data());
      break;
    default:
      if (requantize)
        cpu::gemm_u8s8_requantize(N, codes, p.cols, zero, q.dense, dq, *requantize, yq, p.rows);
      else
        cpu::gemm_u8s8_dequantize(N, codes, p.cols, zero, q.dense, dq, y.data(), p.rows);
  }
  return y;
}

void set_int8(PackedLayer& p, Int8Weights q, PackFormat kind, int64_t block_rows) {
  SPRIG_CHECK(kind == PackFormat::Dense ||
                  (!p.conv && (kind == PackFormat::Csr || kind == PackFormat::Bsr)),
              "layer ", p.name, ": int8 runs dense, or as CSR or blocks for linear layers");
  SPRIG_CHECK(q.weight.size() == size_t(p.rows * p.cols) && q.scales.size() == size_t(p.rows),
              "layer ", p.name, ": int8 weight or scales do not match its (", p.rows, ", ", p.cols,
              ") weight");
  q.dense = {};
  q.direct = {};
  q.bsr = {};
  q.csr = {};
  const auto* conv = dynamic_cast<const nn::Conv2d*>(p.module);
  // The direct kernel depends on the kernel's width, stride and dilation only (and the CPU).
  const bool direct =
      conv && cpu::conv2d_u8s8_direct_suits(Conv2dShape{
                  1, conv->in_channels, 1, 1, conv->out_channels, conv->kernel, conv->kernel,
                  conv->opt.stride, conv->opt.padding, conv->opt.dilation});
  try {
    if (kind == PackFormat::Bsr)
      q.bsr = cpu::bsr_int8_from_dense(p.rows, p.cols, block_rows, q.weight.data());
    else if (kind == PackFormat::Csr)
      q.csr = cpu::csr_int8_from_dense(p.rows, p.cols, q.weight.data());
    else if (direct)
      q.direct = cpu::pack_conv_int8_direct(q.weight.data(), conv->out_channels, conv->in_channels,
                                            conv->kernel, conv->kernel);
    else
      q.dense = cpu::pack_int8_weights(q.weight.data(), p.rows, p.cols, p.cols);
  } catch (const Error& e) {
    throw Error("layer " + p.name + ": " + e.what());
  }
  // The dense model holds what the int8 weight stands for, so it stays the reference of the
  // kernels and the source of any export.
  float* w = weight_of(*p.module)->value.data();  // (rows, cols)
  int64_t nonzero = 0;
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.cols; ++c) {
      const int8_t v = q.weight[size_t(r * p.cols + c)];
      w[r * p.cols + c] = q.scales[size_t(r)] * float(v);
      nonzero += v != 0;
    }
  p.kind = kind;
  p.sparse = {};
  p.weight_packed = {};
  p.conv_kernel = cpu::ConvForward::Auto;  // the int8 kernels run it now
  p.conv_packed_w.clear();
  p.nonzero = nonzero;
  p.int8 = std::make_shared<const Int8Weights>(std::move(q));
}

}  // namespace detail

namespace {

// Histogram bins: fine enough that the entropy search's smallest threshold (255 bins, one per
// uint8 level) is 1/64 of the largest value.
constexpr int kBins = 16384;

struct RangeStats {
  float lo = INFINITY, hi = -INFINITY;
  std::vector<double> hist;  // (kBins) over [lo, hi] (percentile) or [0, hi] (entropy)
};

// Calls observe(layer index, input) for every batch of samples.
void for_each_input(const InferenceModel& m, const Tensor& samples, int64_t batch,
                    const std::function<void(size_t, const float*, int64_t)>& observe) {
  const int64_t N = samples.size(0), per = samples.numel() / std::max<int64_t>(N, 1);
  for (int64_t at = 0; at < N; at += batch) {
    const int64_t n = std::min(batch, N - at);
    Shape s = samples.shape();
    s[0] = n;
    Tensor x = Tensor::empty(s);
    std::memcpy(x.data(), samples.data() + at * per, size_t(n * per) * sizeof(float));
    m.forward_observed(x, [&](const PackedLayer& p, const Tensor& in) {
      observe(p.index, in.data(), in.numel());
    });
  }
}

// The KL divergence between hist[0, i) with the tail beyond folded into its last bin (what
// clipping at bin i makes of the values) and hist[0, i) rendered in `levels` equal steps, each
// step's mass spread over its nonzero bins (what uint8 can tell apart).
double kl_of_threshold(const std::vector<double>& hist, int i, int levels) {
  std::vector<double> p(hist.begin(), hist.begin() + i);
  for (size_t j = size_t(i); j < hist.size(); ++j) p[size_t(i - 1)] += hist[j];
  double total = 0;
  for (double v : p) total += v;
  if (total <= 0) return 0;
  std::vector<double> q(size_t(i), 0.0);
  for (int l = 0; l < levels; ++l) {
    const int b0 = int(int64_t(l) * i / levels), b1 = int(int64_t(l + 1) * i / levels);
    double mass = 0;
    int nonzero = 0;
    for (int b = b0; b < b1; ++b) {
      mass += hist[size_t(b)];  // without the tail: clipping loses its values
      nonzero += p[size_t(b)] > 0;
    }
    for (int b = b0; b < b1; ++b)
      if (p[size_t(b)] > 0) q[size_t(b)] = mass / nonzero;
  }
  double qt = 0;
  for (double v : q) qt += v;
  double kl = 0;
  for (int b = 0; b < i; ++b) {
    if (p[size_t(b)] <= 0) continue;
    const double pb = p[size_t(b)] / total, qb = q[size_t(b)] / qt;
    kl += qb > 0 ? pb * std::log(pb / qb) : pb * 50.0;  // an empty rendering: heavily penalised
  }
  return kl;
}

}  // namespace

std::vector<InputRange> calibrate(const InferenceModel& m, const Tensor& samples,
                                  const QuantizeOptions& opt) {
  Shape want = m.model.input_shape;
  want.insert(want.begin(), samples.dim() > 0 ? samples.size(0) : 0);
  SPRIG_CHECK(samples.shape() == want && samples.size(0) >= 1, "calibration: samples are ",
              to_string(samples.shape()), " but the model takes (N, ",
              to_string(m.model.input_shape).substr(1), " with N >= 1");
  SPRIG_CHECK(opt.calibration_batch >= 1, "calibration: batch must be >= 1, got ",
              opt.calibration_batch);
  SPRIG_CHECK(opt.percentile > 50.0 && opt.percentile <= 100.0,
              "calibration: --percentile must be in (50, 100], got ", opt.percentile);
  std::vector<RangeStats> st(m.layers.size());
  for_each_input(m, samples, opt.calibration_batch, [&](size_t i, const float* x, int64_t n) {
    float lo = st[i].lo, hi = st[i].hi;
    for (int64_t k = 0; k < n; ++k) {
      SPRIG_CHECK(std::isfinite(x[k]), "calibration: the input of layer ", m.layers[i].name,
                  " holds ", x[k], " (a sample or weight is not finite)");
      lo = std::min(lo, x[k]);
      hi = std::max(hi, x[k]);
    }
    st[i].lo = lo;
    st[i].hi = hi;
  });
  std::vector<InputRange> out(st.size());
  for (size_t i = 0; i < st.size(); ++i) out[i] = {st[i].lo, st[i].hi};
  if (opt.calibration == Calibration::MinMax) return out;

  // Second pass: a histogram per layer, over [lo, hi] for percentiles, over (0, hi] for entropy.
  const bool entropy = opt.calibration == Calibration::Entropy;
  for (auto& s : st) s.hist.assign(kBins, 0.0);
  for_each_input(m, samples, opt.calibration_batch, [&](size_t i, const float* x, int64_t n) {
    const float lo = entropy ? 0.0f : st[i].lo, width = (st[i].hi - lo) / kBins;
    if (!(width > 0)) return;
    double* h = st[i].hist.data();
    for (int64_t k = 0; k < n; ++k) {
      if (entropy && !(x[k] > 0)) continue;  // zero is exact in any range
      h[std::clamp(int((x[k] - lo) / width), 0, kBins - 1)] += 1;
    }
  });
  for (size_t i = 0; i < st.size(); ++i) {
    const RangeStats& s = st[i];
    double total = 0;
    for (double v : s.hist) total += v;
    if (total <= 0) continue;
    if (!entropy) {
      const float width = (s.hi - s.lo) / kBins;
      const double tail = total * (1.0 - opt.percentile / 100.0);
      double below = 0;
      int b = 0;
      while (b < kBins - 1 && below + s.hist[size_t(b)] <= tail) below += s.hist[size_t(b++)];
      out[i].lo = s.lo + width * float(b);
      double above = 0;
      b = kBins - 1;
      while (b > 0 && above + s.hist[size_t(b)] <= tail) above += s.hist[size_t(b--)];
      out[i].hi = s.lo + width * float(b + 1);
      continue;
    }
    // uint8 over [0, hi] with the zero point at 0 leaves 255 levels for the positive values.
    const int levels = 255;
    int best = kBins;
    double best_kl = INFINITY;
    // Thresholds 1% apart: the divergence changes slowly, and every bin would cost O(bins^2).
    for (int t = levels; t <= kBins; t = std::min(kBins + 1, std::max(t + 1, t + t / 100))) {
      const double kl = kl_of_threshold(s.hist, t, levels);
      if (kl < best_kl) best_kl = kl, best = t;
    }
    out[i].hi = s.hi * float(best) / kBins;
  }
  return out;
}

namespace {

// The plan of one layer (format Auto): the int8 kernels (dense; CSR, 1 x 4 and 4 x 4 blocks for
// linear) and,
// unless opt.int8_only, the float plan's own candidates (pack.cpp), each measured on inputs of
// the layer's shape at the plan's batch spread over the calibrated range; the fastest runs.
// A layer left in float keeps its float weight (and computes exactly what it did).
void choose_fastest(PackedLayer& p, Int8Weights q, const QuantizeOptions& opt, InputRange r) {
  Rng rng(opt.pack.seed + p.index);
  Shape xs = p.in_shape;
  xs.insert(xs.begin(), opt.pack.batch);
  Tensor x = Tensor::uniform(xs, std::min(r.lo, 0.0f), std::max(r.hi, 0.0f), rng);
  NoGradGuard no_grad;
  const nn::ParameterPtr& weight = weight_of(*p.module);
  PackedLayer best_float = p;  // the float plan's choice, measured first
  std::vector<float> float_weight;
  if (!opt.int8_only) {  // while the module still holds the float weight
    PackOptions fo = opt.pack;
    fo.format = PackFormat::Auto;
    detail::choose(best_float, *p.module, *weight, fo);
    float_weight = weight->value.to_vector();
  }
  std::vector<CandidateTime> times =
      opt.int8_only ? std::vector<CandidateTime>{} : best_float.times;
  struct Int8Candidate {
    PackFormat kind;
    int64_t block_rows;
    std::string format;
  };
  std::vector<Int8Candidate> int8_candidates = {{PackFormat::Dense, 1, ""}};
  if (!p.conv)
    for (Int8Candidate c :
         {Int8Candidate{PackFormat::Csr, 1, ""}, Int8Candidate{PackFormat::Bsr, 1, ""},
          Int8Candidate{PackFormat::Bsr, 4, ""}})
      int8_candidates.push_back(c);
  for (Int8Candidate& c : int8_candidates) {
    detail::set_int8(p, q, c.kind, c.block_rows);
    c.format = p.format();
    times.push_back(
        {c.format, detail::time_median_sharded_ms(x, opt.pack.repeats, [&](const Tensor& xs) {
           detail::run_int8(p, *p.module, xs, false);
         })});
  }
  std::stable_sort(times.begin(), times.end(),
                   [](const CandidateTime& a, const CandidateTime& b) { return a.ms < b.ms; });
  const CandidateTime& win = times.front();
  const CandidateTime& runner = times.size() > 1 ? times[1] : win;
  const bool keep_float = win.format.rfind("int8 ", 0) != 0;
  if (keep_float) {
    std::copy(float_weight.begin(), float_weight.end(), weight->value.data());
    p = best_float;
  } else {
    for (const Int8Candidate& c : int8_candidates)
      if (c.format == win.format) detail::set_int8(p, std::move(q), c.kind, c.block_rows);
  }
  p.times = times;
  p.reason = win.format + " " + fmt_ms(win.ms) + " ms < " + runner.format + " " +
             fmt_ms(runner.ms) + " ms at " + pct(p.sparsity()) + " sparsity" +
             (keep_float ? " (kept in float)" : "");
}

// The fake quantiser of a conv / linear layer's module (nn::FakeQuant).
std::optional<nn::FakeQuant>& fake_quant_of(const PackedLayer& p) {
  if (auto* conv = dynamic_cast<nn::Conv2d*>(p.module)) return conv->fake_quant;
  return dynamic_cast<nn::Linear&>(*p.module).fake_quant;
}

}  // namespace

InferenceModel prepare_quantization(const nn::Model& model, const Tensor& samples,
                                    const QuantizeOptions& opt, std::vector<InputRange>* ranges) {
  SPRIG_CHECK(opt.pack.batch >= 1, "quantize: batch must be >= 1, got ", opt.pack.batch);
  PackOptions dense = opt.pack;  // shrink and fold only; the float plan is not needed
  dense.format = PackFormat::Dense;
  InferenceModel im = pack_model(model, dense);
  *ranges = calibrate(im, samples, opt);
  return im;
}

void set_fake_quant(InferenceModel& m, const std::vector<InputRange>& ranges) {
  SPRIG_CHECK(ranges.size() == m.layers.size(), "set_fake_quant: ", ranges.size(), " ranges for ",
              m.layers.size(), " layers");
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const cpu::ActivationQuant a = cpu::activation_quant_from_range(ranges[i].lo, ranges[i].hi);
    fake_quant_of(m.layers[i]) = nn::FakeQuant{a.scale, a.zero};
  }
}

void clear_fake_quant(InferenceModel& m) {
  for (PackedLayer& p : m.layers) fake_quant_of(p).reset();
}

InferenceModel quantize_model(const nn::Model& model, const Tensor& samples,
                              const QuantizeOptions& opt) {
  std::vector<InputRange> ranges;
  InferenceModel im = prepare_quantization(model, samples, opt, &ranges);
  quantize_layers(im, ranges, opt);
  return im;
}

void quantize_layers(InferenceModel& m, const std::vector<InputRange>& ranges,
                     const QuantizeOptions& opt) {
  SPRIG_CHECK(ranges.size() == m.layers.size(), "quantize_layers: ", ranges.size(), " ranges for ",
              m.layers.size(), " layers");
  SPRIG_CHECK(opt.pack.format != PackFormat::Nm,
              "quantize: int8 has no N:M kernel (formats: ", "auto, dense, csr, bsr)");
  SPRIG_CHECK(
      opt.pack.format != PackFormat::Bsr ||
          ((opt.pack.block_rows == 1 || opt.pack.block_rows == 4) && opt.pack.block_cols == 4),
      "quantize: int8 blocks are 1x4 or 4x4, got ", opt.pack.block_rows, "x", opt.pack.block_cols);
  clear_fake_quant(m);
  m.model.net->eval();
  m.batch = opt.pack.batch;
  const std::string method = calibration_name(opt.calibration);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    PackedLayer& p = m.layers[i];
    const InputRange r = ranges[i];
    Int8Weights q;
    q.weight.resize(size_t(p.rows * p.cols));
    q.scales.resize(size_t(p.rows));
    cpu::quantize_weights_per_channel(weight_of(*p.module)->value.data(), p.rows, p.cols,
                                      q.weight.data(), q.scales.data());
    q.input = cpu::activation_quant_from_range(r.lo, r.hi);
    char range[96];
    std::snprintf(range, sizeof range, "; input [%.4g, %.4g] by %s", double(r.lo), double(r.hi),
                  method.c_str());
    // The sparsity after rounding: weights below half a step of their channel's scale become 0.
    auto at = [&p] { return " at " + pct(p.sparsity()) + " sparsity"; };
    p.times.clear();
    if (opt.pack.format == PackFormat::Dense) {
      detail::set_int8(p, std::move(q), PackFormat::Dense);
      p.reason = "forced dense" + at() + range;
    } else if (opt.pack.format != PackFormat::Auto && p.conv) {
      detail::set_int8(p, std::move(q), PackFormat::Dense);
      p.reason =
          "forced sparse, but conv layers have no sparse int8 kernel: int8 dense" + at() + range;
    } else if (opt.pack.format == PackFormat::Csr) {
      detail::set_int8(p, std::move(q), PackFormat::Csr);
      p.reason = "forced csr" + at() + range;
    } else if (opt.pack.format == PackFormat::Bsr) {
      detail::set_int8(p, std::move(q), PackFormat::Bsr, opt.pack.block_rows);
      p.reason = "forced bsr" + at() + range;
    } else {
      choose_fastest(p, std::move(q), opt, r);
      p.reason += range;
    }
  }
}

std::map<std::string, nn::OnnxExportOptions::QdqLayer> qdq_layers(const InferenceModel& m) {
  std::map<std::string, nn::OnnxExportOptions::QdqLayer> out;
  for (const PackedLayer& p : m.layers) {
    if (!p.int8) continue;
    nn::OnnxExportOptions::QdqLayer& q = out[p.name];
    q.input_scale = p.int8->input.scale;
    q.input_zero = p.int8->input.zero;
    q.weight = p.int8->weight;
    q.weight_scales = p.int8->scales;
  }
  return out;
}

}  // namespace sprig::infer
