#include "nn/model.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "engine/rng.h"
#include "engine/text.h"

namespace sprig::nn {

std::vector<std::string> zoo_names() {
  return {"mlp",      "cnn2",      "lenet5",    "resnet20", "resnet32",
          "resnet56", "resnet20b", "resnet32b", "resnet56b"};
}

namespace {

// He et al. 2016's CIFAR ResNet-(6n+2): a 3x3 conv to 16 channels, three stages of n basic
// blocks at 16, 32 and 64 channels (the first block of stages 2 and 3 has stride 2), global
// average pooling and a linear classifier. Layers are named as pytorch_resnet_cifar10's, so a
// PyTorch state_dict of its models loads by name. Option A: the shortcut of a downsampling
// block subsamples and pads channels with zeros (no weights); option B: 1x1 conv + BN.
std::string resnet_spec(int n, bool option_b) {
  auto conv_bn = [](int idx, int c, int stride) {
    std::string i = std::to_string(idx);
    return "conv" + i + ":conv(" + std::to_string(c) + ",3" +
           (stride != 1 ? ",stride=" + std::to_string(stride) : "") + ",pad=1,bias=0) bn" + i +
           ":bn";
  };
  std::string s = conv_bn(1, 16, 1) + " relu";
  int in = 16;
  for (int stage = 0; stage < 3; ++stage) {
    const int c = 16 << stage;
    s += " layer" + std::to_string(stage + 1) + ":seq[";
    for (int b = 0; b < n; ++b) {
      const int stride = (b == 0 && stage > 0) ? 2 : 1;
      s += std::string(b ? " " : "") + "res[" + conv_bn(1, c, stride) + " relu " + conv_bn(2, c, 1);
      if (stride != 1 || in != c)
        s += option_b
                 ? " | conv(" + std::to_string(c) + ",1,stride=" + std::to_string(stride) +
                       ",bias=0) bn"
                 : " | shortcut(" + std::to_string(c) + ",stride=" + std::to_string(stride) + ")";
      s += "]";
      in = c;
    }
    s += "]";
  }
  return s + " gap flatten linear:linear(10)";
}

}  // namespace

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
  if (name == "resnet20") return resnet_spec(3, false);
  if (name == "resnet32") return resnet_spec(5, false);
  if (name == "resnet56") return resnet_spec(9, false);
  if (name == "resnet20b") return resnet_spec(3, true);
  if (name == "resnet32b") return resnet_spec(5, true);
  if (name == "resnet56b") return resnet_spec(9, true);
  auto it = zoo.find(name);
  return it == zoo.end() ? "" : it->second;
}

namespace {

struct LayerSpec {
  std::string label;  // "conv1" in "conv1:conv(16,3)", or "" (named by its index)
  std::string name;
  std::vector<int64_t> positional;
  std::map<std::string, int64_t> named;
  // Containers: "seq[a b]" has one branch, "res[a b | c]" two (body and shortcut).
  std::vector<std::vector<LayerSpec>> branches;
  bool bracketed = false;
  size_t pos = 0;  // character offset in the spec, for messages
};

[[noreturn]] void spec_error(const std::string& spec, size_t pos, const std::string& what) {
  // One line, so the command line can print it as its single error line.
  throw Error("model spec '" + printable(spec) + "', at character " + std::to_string(pos + 1) +
              ": " + what);
}

// The character at spec[i] for a message: a whole UTF-8 character, else the byte as \xNN.
std::string char_at(const std::string& spec, size_t i) {
  return printable(spec.substr(i, std::max<size_t>(1, utf8_char_length(spec, i))));
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

bool is_word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// A wide pad or a huge input shape would make every forward pass allocate gigabytes per
// sample (and wrap FLOP counts): each per-sample shape stays under the limit.
void check_sample_size(const Shape& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape)
    SPRIG_CHECK(!__builtin_mul_overflow(n, d, &n) && n <= SpecLimits::kMaxSampleActivation, what,
                " ", to_string(shape), " has too many elements: more than ",
                SpecLimits::kMaxSampleActivation, " values per sample");
}

// Nesting deeper than this is refused, so a hostile spec cannot exhaust the stack.
constexpr int kMaxSpecDepth = 16;

class SpecTokenizer {
 public:
  explicit SpecTokenizer(const std::string& spec) : spec_(spec) {}

  std::vector<LayerSpec> parse() {
    std::vector<LayerSpec> layers = sequence(0);
    if (i_ < spec_.size()) spec_error(spec_, i_, "unexpected '" + char_at(spec_, i_) + "'");
    if (layers.empty()) throw Error("model spec is empty");
    return layers;
  }

 private:
  void skip_space() {
    while (i_ < spec_.size() && std::isspace(static_cast<unsigned char>(spec_[i_]))) ++i_;
  }

  // Layers up to the end, a '|' or a ']' (left for the caller).
  std::vector<LayerSpec> sequence(int depth) {
    std::vector<LayerSpec> layers;
    skip_space();
    while (i_ < spec_.size() && spec_[i_] != '|' && spec_[i_] != ']') {
      layers.push_back(layer(depth));
      skip_space();
    }
    return layers;
  }

  std::string word() {
    std::string w;
    while (i_ < spec_.size() && is_word_char(spec_[i_])) w += spec_[i_++];
    return w;
  }

  LayerSpec layer(int depth) {
    LayerSpec layer;
    layer.pos = i_;
    std::string w = word();
    if (w.empty()) spec_error(spec_, i_, "unexpected '" + char_at(spec_, i_) + "'");
    skip_space();
    if (i_ < spec_.size() && spec_[i_] == ':') {
      layer.label = w;
      ++i_;
      skip_space();
      w = word();
      if (w.empty()) spec_error(spec_, i_, "expected a layer after '" + layer.label + ":'");
    }
    for (char c : w) layer.name += char(std::tolower(static_cast<unsigned char>(c)));
    skip_space();
    if (i_ < spec_.size() && spec_[i_] == '(') arguments(layer);
    skip_space();
    if (i_ < spec_.size() && spec_[i_] == '[') {
      if (depth >= kMaxSpecDepth)
        spec_error(spec_, i_, "blocks nested more than " + std::to_string(kMaxSpecDepth) + " deep");
      layer.bracketed = true;
      ++i_;
      for (;;) {
        layer.branches.push_back(sequence(depth + 1));
        if (i_ >= spec_.size()) spec_error(spec_, layer.pos, "missing ']' for " + layer.name);
        if (spec_[i_++] == ']') break;  // else '|': another branch
      }
    }
    return layer;
  }

  void arguments(LayerSpec& layer) {
    ++i_;  // '('
    skip_space();
    while (i_ < spec_.size() && spec_[i_] != ')') {
      size_t arg_pos = i_;
      if (std::isalpha(static_cast<unsigned char>(spec_[i_]))) {
        std::string key = word();
        skip_space();
        if (i_ >= spec_.size() || spec_[i_] != '=')
          spec_error(spec_, i_, "expected '=' after " + key);
        ++i_;
        skip_space();
        if (layer.named.count(key)) spec_error(spec_, arg_pos, "argument " + key + " given twice");
        layer.named[key] = parse_int(spec_, i_);
      } else {
        if (!layer.named.empty())
          spec_error(spec_, arg_pos, "positional argument after a named one");
        layer.positional.push_back(parse_int(spec_, i_));
      }
      skip_space();
      if (i_ < spec_.size() && spec_[i_] == ',') {
        ++i_;
        skip_space();
        if (i_ < spec_.size() && spec_[i_] == ')')
          spec_error(spec_, i_, "expected an argument after ','");
      } else if (i_ < spec_.size() && spec_[i_] != ')') {
        spec_error(spec_, i_, "expected ',' or ')'");
      }
    }
    if (i_ >= spec_.size()) spec_error(spec_, layer.pos, "missing ')' for " + layer.name);
    ++i_;  // ')'
  }

  const std::string& spec_;
  size_t i_ = 0;
};

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

// Builds the layers of one branch for per-sample input `shape`, leaving `shape` at its output.
class ModelBuilder {
 public:
  ModelBuilder(const std::string& spec, uint64_t seed, const SpecLimits& limits)
      : spec_(spec), rng_(seed), limits_(limits) {}

  std::shared_ptr<Sequential> sequence(const std::vector<LayerSpec>& specs, Shape& shape) {
    auto seq = std::make_shared<Sequential>();
    std::set<std::string> labels;
    for (const LayerSpec& l : specs) {
      if (!l.label.empty()) {
        if (!labels.insert(l.label).second)
          spec_error(spec_, l.pos, "name '" + l.label + "' is used twice in one block");
        if (std::all_of(l.label.begin(), l.label.end(), ::isdigit))
          spec_error(spec_, l.pos,
                     "name '" + l.label +
                         "' is a number (unnamed layers are "
                         "named by their index)");
      }
      seq->layers.push_back(layer(l, shape));
      seq->names.push_back(l.label);
    }
    for (size_t i = 0; i < seq->layers.size(); ++i)
      if (specs[i].label.empty() && labels.count(seq->name_of(i)))
        spec_error(spec_, specs[i].pos,
                   "name '" + seq->name_of(i) + "' is used twice in one block");
    return seq;
  }

 private:
  ModulePtr layer(const LayerSpec& l, Shape& shape) {
    ModulePtr layer;
    const bool container = l.name == "seq" || l.name == "res";
    if (l.bracketed != container)
      spec_error(spec_, l.pos,
                 container
                     ? l.name + " needs its layers in brackets, e.g. " + l.name + "[conv(8,3) relu]"
                     : l.name + " takes no [...] block (only seq and res do)");
    try {
      if (l.name == "conv" || l.name == "conv2d") {
        SPRIG_CHECK(shape.size() == 3, "conv needs (C, H, W) input, got ", to_string(shape));
        auto a = bind_args(spec_, l,
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
        reserve({a["out"], shape[0], a["kernel"], a["kernel"]}, a["bias"] != 0 ? a["out"] : 0);
        Conv2dOptions opt{a["stride"], a["pad"], a["dilation"]};
        layer =
            std::make_shared<Conv2d>(shape[0], a["out"], a["kernel"], opt, a["bias"] != 0, rng_);
      } else if (l.name == "linear" || l.name == "dense") {
        SPRIG_CHECK(shape.size() == 1, "linear needs flat input, got ", to_string(shape),
                    " (add flatten before it)");
        auto a = bind_args(spec_, l, {{"out", true, 0}, {"bias", false, 1}});
        reserve({a["out"], shape[0]}, a["bias"] != 0 ? a["out"] : 0);
        layer = std::make_shared<Linear>(shape[0], a["out"], a["bias"] != 0, rng_);
      } else if (l.name == "bn" || l.name == "batchnorm") {
        bind_args(spec_, l, {});
        SPRIG_CHECK(shape.size() == 1 || shape.size() == 3, "bn needs (C) or (C, H, W) input, got ",
                    to_string(shape));
        reserve({4, shape[0]}, 0);  // scale, shift, running mean and variance
        layer = std::make_shared<BatchNorm>(shape[0]);
      } else if (l.name == "relu") {
        bind_args(spec_, l, {});
        layer = std::make_shared<ReLU>();
      } else if (l.name == "maxpool" || l.name == "maxpool2d") {
        auto a =
            bind_args(spec_, l, {{"kernel", true, 0}, {"stride", false, 0}, {"pad", false, 0}});
        layer = std::make_shared<MaxPool2d>(a["kernel"], a["stride"], a["pad"]);
      } else if (l.name == "avgpool" || l.name == "avgpool2d") {
        auto a =
            bind_args(spec_, l, {{"kernel", true, 0}, {"stride", false, 0}, {"pad", false, 0}});
        layer = std::make_shared<AvgPool2d>(a["kernel"], a["stride"], a["pad"]);
      } else if (l.name == "gap") {
        bind_args(spec_, l, {});
        layer = std::make_shared<GlobalAvgPool2d>();
      } else if (l.name == "shortcut") {
        auto a = bind_args(spec_, l, {{"out", true, 0}, {"stride", false, 1}, {"pad", false, -1}});
        layer = std::make_shared<Shortcut>(a["out"], a["stride"], a["pad"]);
      } else if (l.name == "flatten") {
        bind_args(spec_, l, {});
        layer = std::make_shared<Flatten>();
      } else if (l.name == "seq") {
        bind_args(spec_, l, {});
        if (l.branches.size() != 1) spec_error(spec_, l.pos, "seq takes one branch (no '|')");
        Shape out = shape;
        layer = sequence(l.branches[0], out);
      } else if (l.name == "res") {
        auto a = bind_args(spec_, l, {{"relu", false, 1}});
        SPRIG_CHECK(a["relu"] == 0 || a["relu"] == 1, "res: relu must be 0 or 1, got ", a["relu"]);
        if (l.branches.size() > 2)
          spec_error(spec_, l.pos, "res takes a body and at most one shortcut ('|' once)");
        if (l.branches[0].empty()) spec_error(spec_, l.pos, "res: the body branch is empty");
        Shape body_out = shape, side_out = shape;
        auto body = sequence(l.branches[0], body_out);
        std::shared_ptr<Sequential> side;
        if (l.branches.size() == 2) side = sequence(l.branches[1], side_out);
        layer = std::make_shared<Residual>(body, side, a["relu"] != 0);
      } else {
        spec_error(spec_, l.pos,
                   "unknown layer '" + l.name +
                       "' (known: conv, linear, bn, relu, maxpool, avgpool, gap, shortcut, "
                       "flatten, seq[...], res[...]; zoo: " +
                       zoo_list() + ")");
      }
      shape = layer->output_shape(shape);
      check_sample_size(shape, l.name + " output");
    } catch (const Error& e) {
      std::string msg = e.what();
      if (msg.rfind("model spec", 0) == 0) throw;
      spec_error(spec_, l.pos, msg);
    }
    return layer;
  }

  // Counts a layer's parameters (the product of dims, plus extra) against the model's limit
  // before the layer allocates them. Sizes the layer itself refuses (<= 0) are left to it, so
  // its message names them.
  void reserve(std::initializer_list<int64_t> dims, int64_t extra) {
    for (int64_t d : dims)
      if (d <= 0) return;
    int64_t n = 1;
    bool overflow = false;
    for (int64_t d : dims) overflow = overflow || __builtin_mul_overflow(n, d, &n);
    overflow = overflow || __builtin_add_overflow(n, extra, &n) ||
               __builtin_add_overflow(used_, n, &used_);
    SPRIG_CHECK(!overflow && used_ <= limits_.max_parameters,
                "the model is too large: it would hold ",
                overflow ? std::string("more than 2^63") : std::to_string(used_),
                " parameter and buffer values by this layer, but ", limits_.source);
  }

  static std::string zoo_list() {
    std::string out;
    for (auto& n : zoo_names()) out += (out.empty() ? "" : ", ") + n;
    return out;
  }

  const std::string& spec_;
  Rng rng_;
  SpecLimits limits_;
  int64_t used_ = 0;  // parameter and buffer values of the layers built so far
};

}  // namespace

Model build_model(const std::string& name_or_spec, const Shape& input_shape, uint64_t seed,
                  const SpecLimits& limits) {
  std::string spec = zoo_spec(name_or_spec);
  if (spec.empty()) spec = name_or_spec;
  SPRIG_CHECK(!input_shape.empty(), "build_model: empty input shape");
  for (int64_t d : input_shape)
    SPRIG_CHECK(d > 0, "build_model: input shape ", to_string(input_shape),
                " has a zero or negative dimension");
  check_sample_size(input_shape, "build_model: input shape");
  Shape shape = input_shape;  // per sample, tracked layer by layer to infer in-features
  auto net = ModelBuilder(spec, seed, limits).sequence(SpecTokenizer(spec).parse(), shape);
  Model m;
  m.spec = net->spec();
  m.input_shape = input_shape;
  m.net = net;
  for (auto& [name, p] : m.named_parameters()) p->name = name;
  return m;
}

}  // namespace sprig::nn
