// sprig predict: the model's outputs for a batch of inputs, both in safetensors files. The
// weights may come from another framework (a PyTorch state_dict saved as safetensors): when the
// file has no sprig metadata, --model and --input-shape give the architecture and the tensors
// are matched to it by PyTorch-style name ("0.weight").
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "apps/commands.h"
#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "kernels/cpu/threads.h"
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

// A model from a safetensors file that has no sprig metadata: build the architecture, then
// take every parameter from the file by name, insisting on an exact match both ways.
nn::Model model_from_foreign_weights(const PredictArgs& a, const TensorFile& file) {
  SPRIG_CHECK(!a.model.empty(), a.in,
              " is not a sprig checkpoint (no sprig metadata): give --model (a zoo name or spec) "
              "and --input-shape for its weights");
  Shape shape = parse_shape_flag("--input-shape", a.input_shape);
  nn::Model model = nn::build_model(a.model, shape, 0);
  std::set<std::string> used;
  for (auto& [name, p] : model.named_parameters()) {
    const Tensor* t = file.find(name);
    SPRIG_CHECK(t, a.in, " has no tensor '", name, "', which model '", model.spec, "' needs (",
                to_string(p->value.shape()), ")");
    SPRIG_CHECK(t->dtype() == DType::F32 && t->shape() == p->value.shape(), "tensor '", name,
                "' in ", a.in, " is ", dtype_name(t->dtype()), " ", to_string(t->shape()),
                " but model '", model.spec, "' needs float32 ", to_string(p->value.shape()));
    p->value.copy_(*t);
    used.insert(name);
  }
  for (auto& [name, t] : file.tensors)
    SPRIG_CHECK(used.count(name), a.in, " has tensor '", name, "' ", to_string(t.shape()),
                ", which is not a parameter of model '", model.spec, "'");
  return model;
}

int run_predict(const PredictArgs& a) {
  if (a.threads > 0) cpu::set_num_threads(a.threads);
  TensorFile weights = load_safetensors(a.in);
  auto format = weights.metadata.find("format");
  nn::Model model;
  if (format != weights.metadata.end() && format->second == nn::kCheckpointFormat) {
    model = nn::load_checkpoint(a.in).model;
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
    model = model_from_foreign_weights(a, weights);
  }

  TensorFile xs = load_safetensors(a.input);
  const Tensor* xp = xs.find("input");
  SPRIG_CHECK(xp, a.input, " has no tensor named 'input' (the batch to run)");
  const Tensor& x = *xp;  // (N, *input_shape)
  Shape want = model.input_shape;
  want.insert(want.begin(), x.dim() > 0 ? x.size(0) : 0);
  SPRIG_CHECK(x.dtype() == DType::F32 && x.shape() == want, "tensor 'input' in ", a.input, " is ",
              dtype_name(x.dtype()), " ", to_string(x.shape()), " but the model takes float32 ",
              to_string(want), " (samples of ", to_string(model.input_shape), ")");

  NoGradGuard no_grad;
  model.net->eval();
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
    Tensor yb = model.forward(xb);
    std::memcpy(y.data() + i * out_row, yb.data(), size_t(b * out_row) * sizeof(float));
  }
  save_safetensors(a.out, {{"logits", y}}, {{"spec", model.spec}, {"weights", a.in}});
  if (a.json)
    std::printf("%s\n", nlohmann::json({{"in", a.in},
                                        {"spec", model.spec},
                                        {"samples", n},
                                        {"output_shape", y.shape()},
                                        {"out", a.out}})
                            .dump()
                            .c_str());
  return 0;
}
}  // namespace

Command add_predict_command(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  a->app = &app;
  app.add_option("--in", a->in,
                 "weights: a sprig checkpoint, or any safetensors file with PyTorch-style "
                 "parameter names (then --model is needed)")
      ->required();
  app.add_option("--model", a->model,
                 "zoo name or spec of the architecture (needed when --in has no sprig metadata)");
  app.add_option("--input-shape", a->input_shape, "per-sample input shape for --model")
      ->capture_default_str();
  app.add_option("--input", a->input, "safetensors file with a float32 tensor named 'input'")
      ->required();
  app.add_option("--out", a->out, "write the outputs here as tensor 'logits' (N, outputs)")
      ->required();
  app.add_option("--batch-size", a->batch_size, "samples per forward pass")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--threads", a->threads, "OpenMP threads")->check(CLI::Range(0, 1024));
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_predict(*a); };
}

}  // namespace sprig::app
