// sprig export: a checkpoint as a model file for other runtimes (ONNX for now), in eval mode.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "engine/atomic_file.h"
#include "kernels/error.h"
#include "engine/safetensors.h"
#include "infer/quantize.h"
#include "nn/checkpoint.h"
#include "nn/onnx_export.h"

namespace sprig::app {

namespace {
struct ExportArgs {
  std::string in, format = "onnx", out;
  bool json = false, no_fold_bn = false;
};

const char* const kFormats = "onnx";

int run_export(const ExportArgs& a) {
  check_output_path("--out", a.out, {{"--in", a.in}});
  SPRIG_CHECK(a.format == "onnx", "--format '", a.format, "' is not supported (allowed: ", kFormats,
              ")");
  // load_checkpoint / load_packed check every tensor against the spec; nothing is written until
  // the whole ONNX file is in memory, and then only through a temporary file.
  nn::OnnxExportOptions opt;
  opt.fold_bn = !a.no_fold_bn;
  // A packed file (sprig pack / quantize) exports its dense model, BN folded and shrunk, with
  // its int8 layers in QDQ form.
  const TensorFile file = load_safetensors(a.in);
  const auto format = file.metadata.find("format");
  const bool is_packed = format != file.metadata.end() && format->second == infer::kPackedFormat;
  nn::Checkpoint ck;
  infer::PackedFile pf;
  const nn::Model* model = nullptr;
  if (is_packed) {
    pf = infer::load_packed(a.in);
    opt.qdq = infer::qdq_layers(pf.model);
    model = &pf.model.model;
  } else {
    ck = nn::load_checkpoint(a.in);
    model = &ck.model;
  }
  nn::export_onnx(*model, a.out, opt);
  const int64_t bytes = static_cast<int64_t>(std::filesystem::file_size(a.out));
  if (a.json) {
    nlohmann::json j = {{"in", a.in},
                        {"out", a.out},
                        {"format", a.format},
                        {"bytes", bytes},
                        {"params", model->num_parameters()},
                        {"int8_layers", opt.qdq.size()},
                        {"ir_version", nn::kOnnxIrVersion},
                        {"opset", nn::kOnnxOpset},
                        {"fold_bn", opt.fold_bn}};
    print_json_line(j);
  } else {
    std::printf("%s -> %s (ONNX IR %lld, opset %lld, %lld parameters, %lld bytes)\n", a.in.c_str(),
                a.out.c_str(), (long long)nn::kOnnxIrVersion, (long long)nn::kOnnxOpset,
                (long long)model->num_parameters(), (long long)bytes);
    if (!opt.qdq.empty())
      std::printf("%zu int8 layers in QDQ form (QuantizeLinear / DequantizeLinear)\n",
                  opt.qdq.size());
  }
  return 0;
}
}  // namespace

Command add_export_command(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  app.add_option("--in,model", a->in,
                 "checkpoint, or packed model file from sprig pack / quantize (.safetensors)")
      ->check(NonEmptyPath)
      ->required();
  app.add_option("--format", a->format, std::string("output format: ") + kFormats)
      ->capture_default_str();
  app.add_option("--out", a->out, "output file (replaced atomically)")
      ->check(NonEmptyPath)
      ->required();
  app.add_flag("--no-fold-bn", a->no_fold_bn,
               "keep BatchNorm layers as BatchNormalization nodes (default: fold each BN that "
               "directly follows a conv into that conv)");
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_export(*a); };
}

}  // namespace sprig::app
