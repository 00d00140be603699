#include "nn/model.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "engine/rng.h"

namespace sprig::nn {

std::vector<std::string> zoo_names() {
  return {"mlp", "cnn2", "lenet5"};
}

std::string zoo_spec(const std::string& name) {
  static const std::map<std::string, std::string> zoo = {
      // LeNet-300-100 (LeCun et al. 1998), the classic pruning benchmark (Han et al. 2015).
      {"mlp", "flatten linear(300) relu linear(100) relu linear(10)"},
      // Seed 002: 126,698 parameters on 1x28x28 inputs.
      {"cnn2", "conv(8,3,pad=1) relu conv(16,3,pad=1) relu flatten linear(10)"},
      // LeNet-5 with ReLU and max-pooling; pad=2 makes 28x28 inputs act like the original 32x32.
      {"lenet5",
       "conv(6,5,pad=2) relu maxpool(2) conv(16,5) relu maxpool(2) flatten linear(120) relu "
       "linear(84) relu linear(10)"},
  };
  auto it = zoo.find(name);
  return it == zoo.end() ? "" : it->second;
}

namespace {

struct LayerSpec {
  std::string name;
  std::vector<int64_t> positional;
  std::map<std::string, int64_t> named;
  size_t pos = 0;  // character offset in the spec, for messages
};

[[noreturn]] void spec_error(const std::string& spec, size_t pos, const std::string& what) {
  // One line, so the command line can print it as its single error line.
  throw Error("model spec '" + spec + "', at character " + std::to_string(pos + 1) + ": " + what);
}

int64_t parse_int(const std::string& spec, size_t& i) {
  size_t start = i;
  if (i < spec.size() && spec[i] == '-') ++i;
  while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i]))) ++i;
  std::string digits = spec.substr(start, i - start);
  if (digits.empty() || digits == "-") spec_error(spec, start, "expected an integer");
  if (digits.size() > 12) spec_error(spec, start, "integer " + digits + " is too large");
  return std::stoll(digits);
}

std::vector<LayerSpec> tokenize(const std::string& spec) {
  std::vector<LayerSpec> layers;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < spec.size() && std::isspace(static_cast<unsigned char>(spec[i]))) ++i;
  };
  skip_space();
  while (i < spec.size()) {
    LayerSpec layer;
    layer.pos = i;
    while (i < spec.size() && (std::isalnum(static_cast<unsigned char>(spec[i])) || spec[i] == '_'))
      layer.name += char(std::tolower(static_cast<unsigned char>(spec[i++])));
    if (layer.name.empty()) spec_error(spec, i, std::string("unexpected '") + spec[i] + "'");
    skip_space();
    if (i < spec.size() && spec[i] == '(') {
      ++i;
      skip_space();
      while (i < spec.size() && spec[i] != ')') {
        size_t arg_pos = i;
        if (std::isalpha(static_cast<unsigned char>(spec[i]))) {
          std::string key;
          while (i < spec.size() &&
                 (std::isalnum(static_cast<unsigned char>(spec[i])) || spec[i] == '_'))
            key += spec[i++];
          skip_space();
          if (i >= spec.size() || spec[i] != '=') spec_error(spec, i, "expected '=' after " + key);
          ++i;
          skip_space();
          if (layer.named.count(key)) spec_error(spec, arg_pos, "argument " + key + " given twice");
          layer.named[key] = parse_int(spec, i);
        } else {
          if (!layer.named.empty())
            spec_error(spec, arg_pos, "positional argument after a named one");
          layer.positional.push_back(parse_int(spec, i));
        }
        skip_space();
        if (i < spec.size() && spec[i] == ',') {
          ++i;
          skip_space();
          if (i < spec.size() && spec[i] == ')')
            spec_error(spec, i, "expected an argument after ','");
        } else if (i < spec.size() && spec[i] != ')') {
          spec_error(spec, i, "expected ',' or ')'");
        }
      }
      if (i >= spec.size()) spec_error(spec, layer.pos, "missing ')' for " + layer.name);
      ++i;  // ')'
    }
    layers.push_back(std::move(layer));
    skip_space();
  }
  if (layers.empty()) throw Error("model spec is empty");
  return layers;
}

// Reads the arguments of one layer against its signature: names in order, with defaults
// (missing default = required).
struct Arg {
  const char* name;
  bool required;
  int64_t fallback;
};

std::map<std::string, int64_t> bind_args(const std::string& spec, const LayerSpec& l,
                                         const std::vector<Arg>& sig) {
  if (l.positional.size() > sig.size())
    spec_error(spec, l.pos,
               l.name + " takes at most " + std::to_string(sig.size()) + " arguments, got " +
                   std::to_string(l.positional.size()));
  std::map<std::string, int64_t> out;
  for (size_t k = 0; k < sig.size(); ++k) {
    const Arg& a = sig[k];
    bool pos_given = k < l.positional.size();
    bool named_given = l.named.count(a.name) > 0;
    if (pos_given && named_given) spec_error(spec, l.pos, std::string(a.name) + " given twice");
    if (pos_given)
      out[a.name] = l.positional[k];
    else if (named_given)
      out[a.name] = l.named.at(a.name);
    else if (a.required)
      spec_error(spec, l.pos, l.name + " needs argument " + a.name);
    else
      out[a.name] = a.fallback;
  }
  auto bias = out.find("bias");
  if (bias != out.end() && bias->second != 0 && bias->second != 1)
    spec_error(spec, l.pos, l.name + ": bias must be 0 or 1, got " + std::to_string(bias->second));
  for (auto& kv : l.named) {
    bool known = false;
    for (const Arg& a : sig) known = known || kv.first == a.name;
    if (!known) {
      std::string names;
      for (const Arg& a : sig) names += (names.empty() ? "" : ", ") + std::string(a.name);
      spec_error(spec, l.pos,
                 l.name + " has no argument '" + kv.first + "' (it takes " + names + ")");
    }
  }
  return out;
}

}  // namespace

Model build_model(const std::string& name_or_spec, const Shape& input_shape, uint64_t seed) {
  std::string spec = zoo_spec(name_or_spec);
  if (spec.empty()) spec = name_or_spec;
  SPRIG_CHECK(!input_shape.empty(), "build_model: empty input shape");
  for (int64_t d : input_shape)
    SPRIG_CHECK(d > 0, "build_model: input shape ", to_string(input_shape),
                " has a zero or negative dimension");
  Rng rng(seed);
  auto net = std::make_shared<Sequential>();
  Shape shape = input_shape;  // per sample, tracked layer by layer to infer in-features
  for (const LayerSpec& l : tokenize(spec)) {
    ModulePtr layer;
    try {
      if (l.name == "conv" || l.name == "conv2d") {
        SPRIG_CHECK(shape.size() == 3, "conv needs (C, H, W) input, got ", to_string(shape));
        auto a = bind_args(spec, l,
                           {{"out", true, 0},
                            {"kernel", true, 0},
                            {"stride", false, 1},
                            {"pad", false, 0},
                            {"dilation", false, 1},
                            {"bias", false, 1}});
        // Refuse a kernel wider than the padded input before its weight is allocated:
        // conv(1,100000) would otherwise ask for 40 GB first and fail only afterwards.
        int64_t span = 0;
        SPRIG_CHECK(a["kernel"] < 1 || a["dilation"] < 1 || a["pad"] < 0 ||
                        (!__builtin_mul_overflow(a["dilation"], a["kernel"] - 1, &span) &&
                         span < std::min(shape[1], shape[2]) + 2 * a["pad"]),
                    "conv: input ", to_string(shape), " padded by ", a["pad"],
                    " is smaller than the kernel ", a["kernel"], " (dilation ", a["dilation"], ")");
        Conv2dOptions opt{a["stride"], a["pad"], a["dilation"]};
        layer = std::make_shared<Conv2d>(shape[0], a["out"], a["kernel"], opt, a["bias"] != 0, rng);
      } else if (l.name == "linear" || l.name == "dense") {
        SPRIG_CHECK(shape.size() == 1, "linear needs flat input, got ", to_string(shape),
                    " (add flatten before it)");
        auto a = bind_args(spec, l, {{"out", true, 0}, {"bias", false, 1}});
        layer = std::make_shared<Linear>(shape[0], a["out"], a["bias"] != 0, rng);
      } else if (l.name == "relu") {
        bind_args(spec, l, {});
        layer = std::make_shared<ReLU>();
      } else if (l.name == "maxpool" || l.name == "maxpool2d") {
        auto a = bind_args(spec, l, {{"kernel", true, 0}, {"stride", false, 0}, {"pad", false, 0}});
        layer = std::make_shared<MaxPool2d>(a["kernel"], a["stride"], a["pad"]);
      } else if (l.name == "flatten") {
        bind_args(spec, l, {});
        layer = std::make_shared<Flatten>();
      } else {
        spec_error(spec, l.pos,
                   "unknown layer '" + l.name +
                       "' (known: conv, linear, relu, maxpool, flatten; zoo: mlp, cnn2, lenet5)");
      }
      shape = layer->output_shape(shape);
    } catch (const Error& e) {
      std::string msg = e.what();
      if (msg.rfind("model spec", 0) == 0) throw;
      spec_error(spec, l.pos, msg);
    }
    net->layers.push_back(layer);
  }
  Model m;
  m.spec = net->spec();
  m.input_shape = input_shape;
  m.net = net;
  for (auto& [name, p] : m.named_parameters()) p->name = name;
  return m;
}

}  // namespace sprig::nn
