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
  if (fake_quant)
    return linear(fake_quantize(x, fake_quant->input_scale, fake_quant->input_zero),
                  fake_quantize_per_channel(weight->value), bias ? bias->value : Tensor());
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
  if (fake_quant)
    return conv2d(fake_quantize(x, fake_quant->input_scale, fake_quant->input_zero),
                  fake_quantize_per_channel(weight->value), bias ? bias->value : Tensor(), opt);
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

// ---- BatchNorm ---------------------------------------------------------------------------
BatchNorm::BatchNorm(int64_t c, float e, float m) : num_features(c), eps(e), momentum(m) {
  SPRIG_CHECK(c > 0, "bn: features must be positive, got ", c);
  weight = std::make_shared<Parameter>("weight", Tensor::full({c}, 1.0f));
  bias = std::make_shared<Parameter>("bias", Tensor::zeros({c}));
  weight->norm_affine = bias->norm_affine = true;
  running_mean = Tensor::zeros({c});
  running_var = Tensor::full({c}, 1.0f);
}

void BatchNorm::fold_into(int64_t cols, float* w, float* b) const {
  const float* gamma = weight->value.data();  // (K), each of these
  const float* beta = bias->value.data();
  const float* mean = running_mean.data();
  const float* var = running_var.data();
  for (int64_t k = 0; k < num_features; ++k) {
    const double s = double(gamma[k]) / std::sqrt(double(var[k]) + double(eps));
    for (int64_t j = 0; j < cols; ++j) w[k * cols + j] = float(double(w[k * cols + j]) * s);
    b[k] = float((double(b[k]) - double(mean[k])) * s + double(beta[k]));
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  return batch_norm(x, weight->value, bias->value, running_mean, running_var, is_training(),
                    momentum, eps, sum_across);
}

Shape BatchNorm::output_shape(const Shape& in) const {
  SPRIG_CHECK((in.size() == 1 || in.size() == 3) && in[0] == num_features, "bn expects (",
              num_features, ") or (", num_features, ", H, W) per sample, got ", to_string(in));
  return in;
}

std::vector<std::pair<std::string, ParameterPtr>> BatchNorm::local_parameters() const {
  return {{"weight", weight}, {"bias", bias}};
}

std::vector<std::pair<std::string, Tensor*>> BatchNorm::local_buffers() {
  return {{"running_mean", &running_mean}, {"running_var", &running_var}};
}

// ---- Pool2d (max and average) -------------------------------------------------------------
Pool2d::Pool2d(const char* name, int64_t k, int64_t s, int64_t p)
    : kernel(k), stride(s == 0 ? k : s), padding(p), name_(name) {
  SPRIG_CHECK(k >= 1 && stride >= 1 && p >= 0 && 2 * p <= k, name,
              ": need kernel >= 1, stride >= 1, 0 <= pad <= kernel/2 (got ", k, ", ", s, ", ", p,
              ")");
}

std::string Pool2d::spec() const {
  std::string s = std::string(name_) + "(" + std::to_string(kernel);
  if (stride != kernel) s += ",stride=" + std::to_string(stride);
  if (padding != 0) s += ",pad=" + std::to_string(padding);
  return s + ")";
}

Shape Pool2d::output_shape(const Shape& in) const {
  SPRIG_CHECK(in.size() == 3, spec(), " expects (C, H, W) per sample, got ", to_string(in));
  // Checked before dividing: truncation toward zero would turn a window up to stride - 1
  // wider than the input into P = 1.
  SPRIG_CHECK(kernel <= std::min(in[1], in[2]) + 2 * padding, spec(), ": input ", to_string(in),
              " is smaller than the window");
  int64_t P = (in[1] + 2 * padding - kernel) / stride + 1;
  int64_t Q = (in[2] + 2 * padding - kernel) / stride + 1;
  return {in[0], P, Q};
}

// ---- GlobalAvgPool2d ---------------------------------------------------------------------
Shape GlobalAvgPool2d::output_shape(const Shape& in) const {
  SPRIG_CHECK(in.size() == 3, "gap expects (C, H, W) per sample, got ", to_string(in));
  return {in[0], 1, 1};
}

// ---- Shortcut ----------------------------------------------------------------------------
Shortcut::Shortcut(int64_t out, int64_t s, int64_t pad)
    : out_channels(out), stride(s), pad_lo(pad) {
  SPRIG_CHECK(out > 0 && s >= 1 && pad >= -1,
              "shortcut: need out > 0, stride >= 1 and pad >= 0, got ", out, ", ", s, ", ", pad);
}

std::string Shortcut::spec() const {
  return "shortcut(" + std::to_string(out_channels) +
         (stride != 1 ? ",stride=" + std::to_string(stride) : "") +
         (pad_lo >= 0 ? ",pad=" + std::to_string(pad_lo) : "") + ")";
}

int64_t Shortcut::pad_lo_for(int64_t C) const {
  return shortcut_pad_lo(out_channels, C, pad_lo);
}

Shape Shortcut::output_shape(const Shape& in) const {
  SPRIG_CHECK(in.size() == 3 && in[0] <= out_channels, spec(),
              " expects (C, H, W) per sample with C <= ", out_channels, ", got ", to_string(in));
  SPRIG_CHECK(pad_lo <= out_channels - in[0], spec(), ": ", pad_lo, " zero channels before the ",
              in[0], " input channels do not fit in ", out_channels);
  return {out_channels, (in[1] - 1) / stride + 1, (in[2] - 1) / stride + 1};
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
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!s.empty()) s += " ";
    if (i < names.size() && !names[i].empty()) s += names[i] + ":";
    const bool nested = dynamic_cast<const Sequential*>(layers[i].get()) != nullptr;
    s += nested ? "seq[" + layers[i]->spec() + "]" : layers[i]->spec();
  }
  return s;
}

std::string Sequential::name_of(size_t i) const {
  return i < names.size() && !names[i].empty() ? names[i] : std::to_string(i);
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
  for (size_t i = 0; i < layers.size(); ++i) out.push_back({name_of(i), layers[i].get()});
  return out;
}

// ---- Residual ----------------------------------------------------------------------------
Residual::Residual(std::shared_ptr<Sequential> b, std::shared_ptr<Sequential> s, bool relu)
    : body(std::move(b)), shortcut(std::move(s)), relu_out(relu) {
  SPRIG_CHECK(body && !body->layers.empty(), "res: the body branch is empty");
  for (size_t i = 0; i < body->layers.size(); ++i)
    SPRIG_CHECK(body->name_of(i) != "shortcut",
                "res: a body layer may not be named 'shortcut' (that is the other branch)");
}

Tensor Residual::forward(const Tensor& x) {
  Tensor y = add((*body)(x), identity_shortcut() ? x : (*shortcut)(x));
  return relu_out ? relu(y) : y;
}

std::string Residual::spec() const {
  std::string s = relu_out ? "res[" : "res(relu=0)[";
  s += body->spec();
  if (!identity_shortcut()) s += " | " + shortcut->spec();
  return s + "]";
}

Shape Residual::output_shape(const Shape& in) const {
  Shape main = body->output_shape(in);
  Shape side = identity_shortcut() ? in : shortcut->output_shape(in);
  SPRIG_CHECK(main == side, "res: the body gives ", to_string(main), " per sample but the ",
              identity_shortcut() ? "identity shortcut passes " : "shortcut gives ",
              to_string(side), " (they are added)");
  return main;
}

int64_t Residual::flops(const Shape& in) const {
  return body->flops(in) + (identity_shortcut() ? 0 : shortcut->flops(in));
}

std::vector<std::pair<std::string, Module*>> Residual::children() const {
  auto out = body->children();
  if (!identity_shortcut()) out.push_back({"shortcut", shortcut.get()});
  return out;
}

}  // namespace sprig::nn
