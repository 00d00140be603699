#include "nn/layers.h"

#include <algorithm>
#include <cmath>

#include "nn/init.h"

namespace sprig::nn {

// PyTorch's reset_parameters for Linear and Conv2d.
static void default_init(Parameter& weight, Parameter* bias, Rng& rng) {
  init::kaiming_uniform_(weight.value, rng, std::sqrt(5.0f));
  if (bias) {
    float bound = 1.0f / std::sqrt(float(init::fan_in(weight.value.shape())));
    init::uniform_(bias->value, -bound, bound, rng);
  }
}

// ---- Linear ------------------------------------------------------------------------------
Linear::Linear(int64_t in, int64_t out, bool has_bias, Rng& rng)
    : in_features(in), out_features(out) {
  SPRIG_CHECK(in > 0 && out > 0, "linear: features must be positive, got in=", in, " out=", out);
  weight = std::make_shared<Parameter>("weight", Tensor::empty({out, in}));
  if (has_bias) bias = std::make_shared<Parameter>("bias", Tensor::empty({out}));
  default_init(*weight, bias.get(), rng);
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight->value, bias ? bias->value : Tensor());
}

std::string Linear::spec() const {
  return "linear(" + std::to_string(out_features) + (bias ? "" : ",bias=0") + ")";
}

Shape Linear::output_shape(const Shape& in) const {
  SPRIG_CHECK(in.size() == 1 && in[0] == in_features, spec(), " expects ", in_features,
              " input features per sample, got shape ", to_string(in),
              in.size() > 1 ? " (add flatten before it)" : "");
  return {out_features};
}

int64_t Linear::flops(const Shape&) const {
  return 2 * in_features * out_features + (bias ? out_features : 0);
}

std::vector<std::pair<std::string, ParameterPtr>> Linear::local_parameters() const {
  if (bias) return {{"weight", weight}, {"bias", bias}};
  return {{"weight", weight}};
}

// ---- Conv2d ------------------------------------------------------------------------------
Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, const Conv2dOptions& o, bool has_bias, Rng& rng)
    : in_channels(in), out_channels(out), kernel(k), opt(o) {
  SPRIG_CHECK(in > 0 && out > 0 && k > 0, "conv: channels and kernel must be positive, got in=", in,
              " out=", out, " kernel=", k);
  SPRIG_CHECK(o.stride >= 1 && o.padding >= 0 && o.dilation >= 1,
              "conv: need stride >= 1, pad >= 0, dilation >= 1");
  weight = std::make_shared<Parameter>("weight", Tensor::empty({out, in, k, k}));
  if (has_bias) bias = std::make_shared<Parameter>("bias", Tensor::empty({out}));
  default_init(*weight, bias.get(), rng);
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight->value, bias ? bias->value : Tensor(), opt);
}

std::string Conv2d::spec() const {
  std::string s = "conv(" + std::to_string(out_channels) + "," + std::to_string(kernel);
  if (opt.stride != 1) s += ",stride=" + std::to_string(opt.stride);
  if (opt.padding != 0) s += ",pad=" + std::to_string(opt.padding);
  if (opt.dilation != 1) s += ",dilation=" + std::to_string(opt.dilation);
  if (!bias) s += ",bias=0";
  return s + ")";
}

Shape Conv2d::output_shape(const Shape& in) const {
  SPRIG_CHECK(in.size() == 3 && in[0] == in_channels, spec(), " expects (", in_channels,
              ", H, W) per sample, got ", to_string(in));
  // The numerators must not be negative: C++ division truncates toward zero, so a kernel up to
  // stride - 1 wider than the input would otherwise give P = 1. Checked against overflow too.
  int64_t span = 0;
  const bool fits = !__builtin_mul_overflow(opt.dilation, kernel - 1, &span) &&
                    span < std::min(in[1], in[2]) + 2 * opt.padding;
  SPRIG_CHECK(fits, spec(), ": input ", to_string(in), " is smaller than the kernel");
  int64_t P = (in[1] + 2 * opt.padding - span - 1) / opt.stride + 1;
  int64_t Q = (in[2] + 2 * opt.padding - span - 1) / opt.stride + 1;
  return {out_channels, P, Q};
}

int64_t Conv2d::flops(const Shape& in) const {
  Shape out = output_shape(in);
  int64_t positions = out[1] * out[2];
  return positions * out_channels * (2 * in_channels * kernel * kernel + (bias ? 1 : 0));
}

std::vector<std::pair<std::string, ParameterPtr>> Conv2d::local_parameters() const {
  if (bias) return {{"weight", weight}, {"bias", bias}};
  return {{"weight", weight}};
}

// ---- MaxPool2d ---------------------------------------------------------------------
MaxPool2d::MaxPool2d(int64_t k, int64_t s, int64_t p)
    : kernel(k), stride(s == 0 ? k : s), padding(p) {
  SPRIG_CHECK(k >= 1 && stride >= 1 && p >= 0 && 2 * p <= k,
              "maxpool: need kernel >= 1, stride >= 1, 0 <= pad <= kernel/2 (got ", k, ", ", s,
              ", ", p, ")");
}

std::string MaxPool2d::spec() const {
  std::string s = "maxpool(" + std::to_string(kernel);
  if (stride != kernel) s += ",stride=" + std::to_string(stride);
  if (padding != 0) s += ",pad=" + std::to_string(padding);
  return s + ")";
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  SPRIG_CHECK(in.size() == 3, spec(), " expects (C, H, W) per sample, got ", to_string(in));
  // Checked before dividing: truncation toward zero would turn a window up to stride - 1
  // wider than the input into P = 1.
  SPRIG_CHECK(kernel <= std::min(in[1], in[2]) + 2 * padding, spec(), ": input ", to_string(in),
              " is smaller than the window");
  int64_t P = (in[1] + 2 * padding - kernel) / stride + 1;
  int64_t Q = (in[2] + 2 * padding - kernel) / stride + 1;
  return {in[0], P, Q};
}

// ---- Flatten -----------------------------------------------------------------------------
Shape Flatten::output_shape(const Shape& in) const {
  // Shapes come from specs and files; an absurd one must not wrap around.
  int64_t n = 1;
  for (int64_t d : in)
    SPRIG_CHECK(!__builtin_mul_overflow(n, d, &n), "flatten: input ", to_string(in),
                " has too many elements");
  return {n};
}

// ---- Sequential --------------------------------------------------------------------------
Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& layer : layers) h = (*layer)(h);
  return h;
}

std::string Sequential::spec() const {
  std::string s;
  for (auto& layer : layers) s += (s.empty() ? "" : " ") + layer->spec();
  return s;
}

Shape Sequential::output_shape(const Shape& in) const {
  Shape s = in;
  for (auto& layer : layers) s = layer->output_shape(s);
  return s;
}

int64_t Sequential::flops(const Shape& in) const {
  Shape s = in;
  int64_t total = 0;
  for (auto& layer : layers) {
    total += layer->flops(s);
    s = layer->output_shape(s);
  }
  return total;
}

std::vector<std::pair<std::string, Module*>> Sequential::children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (size_t i = 0; i < layers.size(); ++i) out.push_back({std::to_string(i), layers[i].get()});
  return out;
}

}  // namespace sprig::nn
