// sprig predict: the model's outputs for a batch of inputs, both in safetensors files. A packed
// file (sprig pack / quantize) runs on its packed kernels, int8 included. The
// weights may come from another framework (a PyTorch state_dict saved as safetensors): when the
// file has no sprig metadata, --model and --input-shape give the architecture and the tensors
// are matched to it by PyTorch-style name ("0.weight", "layer1.0.bn1.running_var"); PyTorch's
// "*.num_batches_tracked" are ignored.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "apps/commands.h"
#include "engine/atomic_file.h"
#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "infer/pack.h"
#include "nn/checkpoint.h"

namespace sprig::app {

namespace {
struct PredictArgs {
  std::string in, model, input_shape = "1,28,28", input, out;
  int64_t batch_size = 256;
  int threads = 0;
  bool json = false;
  CLI::App* app = nullptr;
};

// The spec `name_or_spec` stands for, built for input_shape (for comparing two spellings).
std::string canonical_spec(const std::string& name_or_spec, const Shape& input_shape) {
  return nn::build_model(name_or_spec, input_shape, 0).spec;
}

// PyTorch's BatchNorm counts its batches in "<bn>.num_batches_tracked" (int64, shape ()). sprig's
// BatchNorm has no use for it (it only matters with momentum=None), so the tensor is accepted
// beside each BatchNorm of the model and ignored.
const char* const kNumBatchesTracked = ".num_batches_tracked";

// "'a' (3), 'b' (3, 4)", at most 6 names, then how many more.
std::string name_list(const std::vector<std::pair<std::string, Shape>>& items) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < 6; ++i)
    s += (i ? ", '" : "'") + items[i].first + "' " + to_string(items[i].second);
  if (items.size() > 6) s += " and " + std::to_string(items.size() - 6) + " more";
  return s;
}

// A model from a safetensors file that has no sprig metadata (a PyTorch state_dict): build the
// architecture, then take every parameter and buffer (BatchNorm's running statistics) from the
// file by name, insisting on an exact match both ways, as load_state_dict(strict=True) does.
nn::Model model_from_foreign_weights(const PredictArgs& a, const TensorFile& file) {
  SPRIG_CHECK(!a.model.empty(), a.in,
              " is not a sprig checkpoint (no sprig metadata): give --model (a zoo name or spec) "
              "and --input-shape for its weights");
  Shape shape = parse_shape_flag("--input-shape", a.input_shape);
  nn::Model model = nn::build_model(a.model, shape, 0);
  std::vector<std::pair<std::string, Tensor*>> wanted;  // parameters, then buffers
  for (auto& [name, p] : model.named_parameters()) wanted.push_back({name, &p->value});
  for (auto& [name, b] : model.named_buffers()) wanted.push_back({name, b});

  std::set<std::string> used;
  std::vector<std::pair<std::string, Shape>> missing, unexpected;
  for (auto& [name, dst] : wanted) {
    const Tensor* t = file.find(name);
    if (!t) {
      missing.push_back({name, dst->shape()});
      continue;
    }
    SPRIG_CHECK(t->dtype() == DType::F32 && t->shape() == dst->shape(), "tensor '", name, "' in ",
                a.in, " is ", dtype_name(t->dtype()), " ", to_string(t->shape()), " but model '",
                a.model, "' needs float32 ", to_string(dst->shape()));
    const float* v = t->data_as<float>();
    const bool variance =
        name.size() > 12 && name.compare(name.size() - 12, 12, ".running_var") == 0;
    for (int64_t i = 0; i < t->numel(); ++i)
      SPRIG_CHECK(std::isfinite(v[i]) && !(variance && v[i] < 0), "tensor '", name, "' in ", a.in,
                  " holds ", v[i], " at element ", i,
                  variance ? " (a variance is finite and not negative)" : " (not finite)");
    dst->copy_(*t);
    used.insert(name);
  }
  for (auto& [name, t] : file.tensors)
    if (!used.count(name)) unexpected.push_back({name, t.shape()});
  const std::string suffix = kNumBatchesTracked;
  for (const SkippedTensor& t : file.skipped) {
    const std::string bn = t.name.substr(0, t.name.size() - suffix.size());
    bool beside_bn = false;
    for (auto& [name, b] : model.named_buffers()) beside_bn |= name == bn + ".running_mean";
    if (!beside_bn) {
      unexpected.push_back({t.name, t.shape});
      continue;
    }
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    SPRIG_CHECK(t.dtype == "I64" && numel == 1, "tensor '", t.name, "' in ", a.in, " is ", t.dtype,
                " ", to_string(t.shape), " but PyTorch's num_batches_tracked is one int64");
  }
  // Named by --model as given: a zoo model's whole spec would drown the names.
  SPRIG_CHECK(missing.empty(), a.in, " lacks ", missing.size(), " tensor(s) that model '", a.model,
              "' needs: ", name_list(missing));
  SPRIG_CHECK(unexpected.empty(), a.in, " has ", unexpected.size(),
              " tensor(s) that are not parameters or buffers of model '", a.model,
              "': ", name_list(unexpected));
  return model;
}

int run_predict(const PredictArgs& a) {
  check_output_path("--out", a.out, {{"--in", a.in}, {"--input", a.input}});
  use_threads(a.threads);
  TensorFile weights = load_safetensors(a.in, {kNumBatchesTracked});
  auto format = weights.metadata.find("format");
  nn::Model checkpoint_model;
  infer::PackedFile packed;  // a packed file (sprig pack / quantize) runs on its own kernels
  const bool is_packed = format != weights.metadata.end() && format->second == infer::kPackedFormat;
  if (is_packed || (format != weights.metadata.end() && format->second == nn::kCheckpointFormat)) {
    if (is_packed)
      packed = infer::load_packed(a.in);
    else
      checkpoint_model = nn::load_checkpoint(a.in).model;
    const nn::Model& model = is_packed ? packed.model.model : checkpoint_model;
    if (!a.model.empty()) {
      std::string given;
      try {
        given = canonical_spec(a.model, model.input_shape);
      } catch (const Error& e) {
        throw Error("--model '" + a.model + "' does not fit " + a.in + ": " + e.what());
      }
      SPRIG_CHECK(given == model.spec, "--model '", a.model, "' (", given, ") differs from ", a.in,
                  "'s spec '", model.spec, "'");
    }
    if (a.app->count("--input-shape")) {
      Shape s = parse_shape_flag("--input-shape", a.input_shape);
      SPRIG_CHECK(s == model.input_shape, "--input-shape ", a.input_shape, " differs from ", a.in,
                  "'s input shape ", to_string(model.input_shape));
    }
  } else {
    checkpoint_model = model_from_foreign_weights(a, weights);
  }
  const nn::Model& model = is_packed ? packed.model.model : checkpoint_model;

  TensorFile xs = load_safetensors(a.input);
  const Tensor* xp = xs.find("input");
  SPRIG_CHECK(xp, a.input, " has no tensor named 'input' (the batch to run)");
  const Tensor& x = *xp;  // (N, *input_shape)
  Shape want = model.input_shape;
  want.insert(want.begin(), x.dim() > 0 ? x.size(0) : 0);
  SPRIG_CHECK(x.dtype() == DType::F32 && x.shape() == want, "tensor 'input' in ", a.input, " is ",
              dtype_name(x.dtype()), " ", to_string(x.shape()), " but the model takes float32 ",
              to_string(want), " (samples of ", to_string(model.input_shape), ")");
  // ReLU passes NaN on, but a NaN pixel can still vanish in a pooling max: refuse it here.
  for (int64_t i = 0; i < x.numel(); ++i)
    SPRIG_CHECK(std::isfinite(x.data()[i]), "tensor 'input' in ", a.input, " holds ", x.data()[i],
                " at element ", i, " (sample ", i / (x.numel() / std::max<int64_t>(x.size(0), 1)),
                "): inputs must be finite");

  NoGradGuard no_grad;
  model.net->eval();  // (a packed model is in eval mode already)
  const int64_t n = x.size(0), row = x.numel() / std::max<int64_t>(n, 1);
  Shape out_shape = model.output_shape();
  out_shape.insert(out_shape.begin(), n);
  Tensor y = Tensor::empty(out_shape);  // (N, outputs)
  const int64_t out_row = y.numel() / std::max<int64_t>(n, 1);
  for (int64_t i = 0; i < n; i += a.batch_size) {
    int64_t b = std::min(a.batch_size, n - i);
    Shape bs = x.shape();
    bs[0] = b;
    Tensor xb = Tensor::empty(bs);
    std::memcpy(xb.data(), x.data() + i * row, size_t(b * row) * sizeof(float));
    Tensor yb = is_packed ? packed.model.forward(xb) : model.forward(xb);
    std::memcpy(y.data() + i * out_row, yb.data(), size_t(b * out_row) * sizeof(float));
  }
  for (int64_t i = 0; i < y.numel(); ++i)
    SPRIG_CHECK(std::isfinite(y.data()[i]), "the output of sample ",
                i / std::max<int64_t>(out_row, 1), " is ", y.data()[i], ": the weights of ", a.in,
                " overflow float32 on it (nothing was written)");
  save_safetensors(a.out, {{"logits", y}}, {{"spec", model.spec}, {"weights", a.in}});
  if (a.json)
    print_json_line({{"in", a.in},
                     {"spec", model.spec},
                     {"samples", n},
                     {"output_shape", y.shape()},
                     {"out", a.out}});
  return 0;
}
}  // namespace

Command add_predict_command(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  a->app = &app;
  app.add_option("--in", a->in,
                 "weights: a sprig checkpoint, or any safetensors file with PyTorch-style "
                 "parameter names (then --model is needed)")
      ->check(NonEmptyPath)
      ->required();
  app.add_option("--model", a->model,
                 "zoo name or spec of the architecture (needed when --in has no sprig metadata)");
  app.add_option("--input-shape", a->input_shape, "per-sample input shape for --model")
      ->capture_default_str();
  app.add_option("--input", a->input, "safetensors file with a float32 tensor named 'input'")
      ->check(NonEmptyPath)
      ->required();
  app.add_option("--out", a->out, "write the outputs here as tensor 'logits' (N, outputs)")
      ->check(NonEmptyPath)
      ->required();
  app.add_option("--batch-size", a->batch_size, "samples per forward pass")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_predict(*a); };
}

}  // namespace sprig::app
