// sprig pack / quantize / run / plan: sparse and int8 inference from the command line.
//   pack      checkpoint -> packed sparse model file (per-layer format chosen by measurement or
//             forced), with the per-layer table and the size report
//   quantize  checkpoint -> packed int8 model file, calibrated on training samples
//   run   evaluates a packed file on a dataset's test split: accuracy and throughput
//   plan  what pack --format auto would choose for a checkpoint at a batch size, and why
// run and plan take --device cuda: the layers then run on the GPU (prune/pack_cuda.cpp), each
// linear layer on cuBLAS, cuSPARSE or one of sprig's SpMM kernels, measured at the batch.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "datasets/dataloader.h"
#include "engine/atomic_file.h"
#include "engine/ops.h"
#include "engine/text.h"
#include "infer/pack.h"
#include "infer/quantize.h"
#include "kernels/cpu/threads.h"
#include "nn/checkpoint.h"
#include "train/qat.h"
#include "train/trainer.h"

namespace sprig::app {

namespace {

struct SparseArgs {
  std::string in, out, format = "auto", block = "1x4", dataset, data_dir, device = "cpu";
  std::string gpu_kernel;  // --gpu-kernel: every layer on it (with --device cuda)
  int64_t batch = 1, batch_size = 256, limit_test = -1;
  int repeats = 5, threads = 0;
  bool no_shrink = false, json = false;
  // quantize
  std::string calibration = "minmax";
  int64_t calibrate = 1000;
  double percentile = 99.99;
  int finetune_epochs = 0;  // quantisation-aware training
  float lr = 1e-4f;
  int64_t limit_train = -1;
  bool quiet = false, int8_only = false;
};

infer::CudaPlanOptions cuda_plan_options(const SparseArgs& a, int64_t batch, Device dev) {
  infer::CudaPlanOptions o;
  o.format = infer::parse_pack_format(a.format);
  o.batch = batch;
  o.repeats = a.repeats;
  o.device = dev.index;
  o.force_kernel = a.gpu_kernel;
  return o;
}

// --device, checked before any work (no GPU: one error line), and --gpu-kernel only with a GPU.
Device device_of(const SparseArgs& a) {
  const Device dev = device_from_flag(a.device);
  SPRIG_CHECK(a.gpu_kernel.empty() || !dev.is_cpu(), "--gpu-kernel ", a.gpu_kernel,
              " needs --device cuda");
  return dev;
}

void add_gpu_flags(CLI::App& app, SparseArgs& a) {
  add_device_flag(app, a.device);
  app.add_option("--gpu-kernel", a.gpu_kernel,
                 "with --device cuda: run every layer on this kernel instead of measuring")
      ->check(CLI::IsMember({"dense", "cusparse", "rowsplit", "coltile"}));
}

// The GPU plan's layers: kernel, measured candidates and why.
nlohmann::json cuda_layers_json(const infer::CudaInferenceModel& g) {
  nlohmann::json layers = nlohmann::json::array();
  for (const infer::PackedLayer& l : g.layers()) {
    nlohmann::json times = nlohmann::json::object();
    for (auto& t : l.times) times[t.format] = t.ms;
    layers.push_back({{"name", l.name},
                      {"type", l.conv ? "conv" : "linear"},
                      {"rows", l.rows},
                      {"cols", l.cols},
                      {"nonzero", l.nonzero},
                      {"sparsity", l.sparsity()},
                      {"kernel", l.format()},
                      {"times_ms", times},
                      {"reason", l.reason}});
  }
  return layers;
}

infer::PackOptions pack_options(const SparseArgs& a) {
  infer::PackOptions o;
  o.format = infer::parse_pack_format(a.format);
  o.batch = a.batch;
  o.repeats = a.repeats;
  o.shrink = !a.no_shrink;
  std::tie(o.block_rows, o.block_cols) = parse_block_flag(a.block);
  return o;
}

// "dense 0.4500, csr 0.1200": a plan's measured candidates, for the plan tables.
std::string times_str(const std::vector<infer::CandidateTime>& times) {
  std::string out;
  for (const infer::CandidateTime& t : times) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s %.4f", out.empty() ? "" : ", ", t.format.c_str(), t.ms);
    out += buf;
  }
  return out;
}

std::string shape_str(int64_t r, int64_t c) {
  return std::to_string(r) + "x" + std::to_string(c);
}

nlohmann::json layers_json(const infer::InferenceModel& m) {
  nlohmann::json layers = nlohmann::json::array();
  for (const infer::PackedLayer& l : m.layers) {
    nlohmann::json times = nlohmann::json::object();
    for (auto& t : l.times) times[t.format] = t.ms;
    layers.push_back({{"name", l.name},
                      {"type", l.conv ? "conv" : "linear"},
                      {"rows", l.rows},
                      {"cols", l.cols},
                      {"rows_before", l.rows_before},
                      {"cols_before", l.cols_before},
                      {"nonzero", l.nonzero},
                      {"sparsity", l.sparsity()},
                      {"format", l.format()},
                      {"weight_bytes", l.weight_bytes()},
                      {"times_ms", times},
                      {"reason", l.reason}});
  }
  return layers;
}

// The width of the layer column: the longest name ("layer3.2.conv2" in a ResNet), at least 5.
template <class Layers>
int name_width(const Layers& layers) {
  size_t w = 5;
  for (auto& l : layers) w = std::max(w, l.name.size());
  return int(w);
}

// One line per layer: name, kind, shape (and the shape before shrink), sparsity, format, bytes,
// then the measured times and the reason.
void print_layers(const infer::InferenceModel& m) {
  const int nw = name_width(m.layers);
  std::printf("%-*s %-6s %-11s %-11s %8s  %-12s %10s  %s\n", nw, "layer", "type", "shape", "was",
              "sparsity", "format", "bytes", "why");
  for (const infer::PackedLayer& l : m.layers) {
    std::printf("%-*s %-6s %-11s %-11s %7.1f%%  %-12s %10zu  %s\n", nw, l.name.c_str(),
                l.conv ? "conv" : "linear", shape_str(l.rows, l.cols).c_str(),
                l.shrunk ? shape_str(l.rows_before, l.cols_before).c_str() : "-",
                100.0 * l.sparsity(), l.format().c_str(), l.weight_bytes(), l.reason.c_str());
  }
}

// Writes m to a.out and prints its layers and the size report against the checkpoint.
int save_and_report(const SparseArgs& a, const nn::Checkpoint& ck, const infer::InferenceModel& m,
                    const std::map<std::string, std::string>& extra_meta) {
  std::map<std::string, std::string> extra = extra_meta;
  extra["source"] = printable(a.in);  // UTF-8 metadata
  auto ds = ck.metadata.find("dataset");
  if (ds != ck.metadata.end()) extra["dataset"] = ds->second;
  infer::save_packed(a.out, m, extra);
  infer::SizeReport s = infer::size_report(ck.model, a.out);
  if (a.json) {
    nlohmann::json j = {
        {"in", a.in},
        {"out", a.out},
        {"format", a.format},
        {"batch", a.batch},
        {"threads", cpu::num_threads()},
        {"spec", m.model.spec},
        {"source_spec", m.source_spec},
        {"params_before", m.source_params},
        {"nonzero", m.nonzero()},
        {"layers", layers_json(m)},
        {"dense_bytes", s.dense_bytes},
        {"dense_file_bytes", s.dense_file_bytes},
        {"dense_gzip_bytes", s.dense_gzip_bytes},
        {"packed_bytes", s.packed_bytes},
        {"ratio", s.ratio()},
        {"gzip_ratio",
         s.dense_file_bytes ? double(s.dense_gzip_bytes) / double(s.dense_file_bytes) : 0.0}};
    for (auto& [k, v] : extra_meta) j[k] = v;
    print_json_line(j);
    return 0;
  }
  std::printf("%s -> %s (format %s, batch %lld, %d threads)\n", a.in.c_str(), a.out.c_str(),
              a.format.c_str(), (long long)a.batch, cpu::num_threads());
  if (m.model.spec != m.source_spec)
    std::printf("runs as (shrunk, BatchNorm folded): %s\n", m.model.spec.c_str());
  print_layers(m);
  std::printf(
      "size: dense %lld B (float32 params), dense file %lld B, gzipped %lld B (%.1f%%), "
      "packed %lld B (%.1f%% of the dense file)\n",
      (long long)s.dense_bytes, (long long)s.dense_file_bytes, (long long)s.dense_gzip_bytes,
      100.0 * double(s.dense_gzip_bytes) / double(std::max<int64_t>(1, s.dense_file_bytes)),
      (long long)s.packed_bytes, 100.0 * s.ratio());
  return 0;
}

int run_pack(const SparseArgs& a) {
  check_output_path("--out", a.out, {{"--in", a.in}});
  use_threads(a.threads);
  infer::PackOptions opt = pack_options(a);  // flags first: bad input fails before any work
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  infer::InferenceModel m = infer::pack_model(ck.model, opt);
  return save_and_report(a, ck, m, {});
}

int run_quantize(const SparseArgs& a) {
  check_output_path("--out", a.out, {{"--in", a.in}});
  use_threads(a.threads);
  infer::QuantizeOptions opt;  // flags first: bad input fails before any work
  opt.pack = pack_options(a);
  opt.calibration = infer::parse_calibration(a.calibration);
  opt.percentile = a.percentile;
  opt.int8_only = a.int8_only;
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  std::string dataset;
  train::DataSource src =
      train::load_data_for(ck.model, ck.metadata, a.in, a.dataset, a.data_dir, 0, &dataset);
  // The first N training samples: the test split stays unseen, as it is for training.
  data::Dataset calib = data::take(src.data.train, a.calibrate);
  train::QatConfig qat;
  qat.epochs = a.finetune_epochs;
  qat.lr = a.lr;
  qat.log_lines = !a.quiet && !a.json;
  const data::Dataset train_split =
      a.limit_train >= 0 ? data::take(src.data.train, a.limit_train) : src.data.train;
  train::QuantizeOutcome q =
      train::quantize_with_qat(ck.model, calib, train_split, src.data.test, src.task, opt, qat);
  const infer::InferenceModel& m = q.model;
  std::map<std::string, std::string> meta = {
      {"calibration", infer::calibration_name(opt.calibration)},
      {"calibration_samples", std::to_string(calib.size())},
      {"calibration_data", dataset + "/train"}};
  if (opt.calibration == infer::Calibration::Percentile)
    meta["calibration"] += " " + std::to_string(a.percentile);
  if (a.finetune_epochs > 0) {
    meta["qat_epochs"] = std::to_string(a.finetune_epochs);
    meta["qat_lr"] = std::to_string(a.lr);
    if (src.task == train::Task::Classification)
      meta["qat_test_accuracy"] = std::to_string(q.qat_epochs.back().test.accuracy);
  }
  return save_and_report(a, ck, m, meta);
}

int run_plan_cuda(const SparseArgs& a, Device dev) {
  infer::PackOptions opt = pack_options(a);
  infer::CudaPlanOptions gopt = cuda_plan_options(a, a.batch, dev);
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  opt.format = infer::PackFormat::Dense;  // only the shrink; the GPU plan measures its own
  infer::InferenceModel m = infer::pack_model(ck.model, opt);
  infer::CudaInferenceModel g(m, gopt);
  const std::string& gpu = g.device();
  if (a.json) {
    nlohmann::json j = {{"in", a.in},
                        {"batch", a.batch},
                        {"format", a.format},
                        {"device", dev.str()},
                        {"gpu", gpu},
                        {"spec", m.model.spec},
                        {"source_spec", m.source_spec},
                        {"layers", cuda_layers_json(g)}};
    print_json_line(j);
    return 0;
  }
  std::printf("GPU plan for %s at batch %lld on %s (median of %d runs per candidate)\n",
              a.in.c_str(), (long long)a.batch, gpu.c_str(), a.repeats);
  if (m.model.spec != m.source_spec)
    std::printf("runs as (shrunk, BatchNorm folded): %s\n", m.model.spec.c_str());
  const int nw = name_width(g.layers());
  std::printf("%-*s %-6s %-11s %8s  %-64s  %-9s  %s\n", nw, "layer", "type", "shape", "sparsity",
              "measured ms", "choice", "why");
  for (const infer::PackedLayer& l : g.layers()) {
    const std::string times = times_str(l.times);
    std::printf("%-*s %-6s %-11s %7.1f%%  %-64s  %-9s  %s\n", nw, l.name.c_str(),
                l.conv ? "conv" : "linear", shape_str(l.rows, l.cols).c_str(), 100.0 * l.sparsity(),
                times.empty() ? "-" : times.c_str(), l.format().c_str(), l.reason.c_str());
  }
  return 0;
}

int run_plan(const SparseArgs& a) {
  use_threads(a.threads);
  const Device dev = device_of(a);
  if (!dev.is_cpu()) return run_plan_cuda(a, dev);
  infer::PackOptions opt = pack_options(a);
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  infer::InferenceModel m = infer::pack_model(ck.model, opt);
  if (a.json) {
    nlohmann::json j = {{"in", a.in},
                        {"batch", a.batch},
                        {"format", a.format},
                        {"threads", cpu::num_threads()},
                        {"spec", m.model.spec},
                        {"source_spec", m.source_spec},
                        {"layers", layers_json(m)}};
    print_json_line(j);
    return 0;
  }
  std::printf("plan for %s at batch %lld (%d threads; median of %d runs per candidate)\n",
              a.in.c_str(), (long long)a.batch, cpu::num_threads(), a.repeats);
  if (m.model.spec != m.source_spec)
    std::printf("runs as (shrunk, BatchNorm folded): %s\n", m.model.spec.c_str());
  const int nw = name_width(m.layers);
  std::printf("%-*s %-6s %-11s %8s  %-32s  %-12s  %s\n", nw, "layer", "type", "shape", "sparsity",
              "measured ms", "choice", "why");
  for (const infer::PackedLayer& l : m.layers) {
    const std::string times = times_str(l.times);
    std::printf("%-*s %-6s %-11s %7.1f%%  %-32s  %-12s  %s\n", nw, l.name.c_str(),
                l.conv ? "conv" : "linear", shape_str(l.rows, l.cols).c_str(), 100.0 * l.sparsity(),
                times.empty() ? "-" : times.c_str(), l.format().c_str(), l.reason.c_str());
  }
  return 0;
}

int run_packed_eval(const SparseArgs& a) {
  use_threads(a.threads);
  const Device dev = device_of(a);
  infer::PackedFile pf = infer::load_packed(a.in);
  const infer::InferenceModel& m = pf.model;
  // On the GPU the layers are re-planned there at the run's batch size (the file's formats
  // were measured on a CPU); forward copies each batch in and its outputs back, timed too.
  std::unique_ptr<infer::CudaInferenceModel> gpu;
  if (!dev.is_cpu())
    gpu = std::make_unique<infer::CudaInferenceModel>(m, cuda_plan_options(a, a.batch_size, dev));
  std::string dataset;
  train::DataSource src =
      train::load_data_for(m.model, pf.metadata, a.in, a.dataset, a.data_dir, 0, &dataset);
  data::Dataset test = a.limit_test >= 0 ? data::take(src.data.test, a.limit_test) : src.data.test;
  data::DataLoader loader(test, a.batch_size, false);
  loader.start_epoch();
  data::Batch b;
  int64_t samples = 0, correct = 0;
  double loss_sum = 0.0, seconds = 0.0;
  while (loader.next(b)) {
    auto t0 = std::chrono::steady_clock::now();
    Tensor out = gpu ? gpu->forward(b.x) : m.forward(b.x);  // only the forward pass is timed
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t n = b.x.size(0);
    if (src.task == train::Task::Classification) {
      loss_sum += double(cross_entropy(out, b.y).item()) * double(n);
      correct += train::count_correct(out, b.y);
    } else {
      loss_sum += double(mse_loss(out, b.y).item()) * double(n);
    }
    samples += n;
  }
  double loss = samples ? loss_sum / double(samples) : 0.0;
  double acc = samples ? double(correct) / double(samples) : 0.0;
  double per_s = seconds > 0 ? double(samples) / seconds : 0.0;
  if (a.json) {
    nlohmann::json formats = nlohmann::json::object();
    if (gpu)
      for (auto& l : gpu->layers()) formats[l.name] = l.format();
    else
      for (auto& l : m.layers) formats[l.name] = l.format();
    nlohmann::json j = {
        {"in", a.in},         {"device", a.device},         {"dataset", dataset},
        {"samples", samples}, {"batch_size", a.batch_size}, {"threads", cpu::num_threads()},
        {"test_loss", loss},  {"forward_seconds", seconds}, {"samples_per_second", per_s},
        {"formats", formats}};
    if (src.task == train::Task::Classification)
      j["test_accuracy"] = acc;
    else
      j["test_mse"] = loss;
    if (gpu) j["gpu"] = gpu->device();
    print_json_line(j);
    return 0;
  }
  std::string formats;
  if (gpu)
    for (auto& l : gpu->layers())
      formats += (formats.empty() ? "" : ", ") + l.name + " " + l.format();
  else
    for (auto& l : m.layers) formats += (formats.empty() ? "" : ", ") + l.name + " " + l.format();
  std::printf("%s (%s) on %s test (%lld samples): ", a.in.c_str(), formats.c_str(), dataset.c_str(),
              (long long)samples);
  if (src.task == train::Task::Classification)
    std::printf("accuracy %.2f%%, loss %.4f", 100.0 * acc, loss);
  else
    std::printf("mse %.4f", loss);
  std::printf("; forward %.3f s, %.0f samples/s at batch %lld", seconds, per_s,
              (long long)a.batch_size);
  if (gpu) std::printf(" on %s (copies included)", gpu->device().c_str());
  std::printf("\n");
  return 0;
}

void add_plan_flags(CLI::App& app, SparseArgs& a) {
  app.add_option("--format", a.format, "dense, csr, bsr, nm, or auto (measure and pick)")
      ->check(PackFormatName)
      ->capture_default_str();
  app.add_option("--batch", a.batch, "batch size the plan measures at")
      ->check(IntRange(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--repeats", a.repeats, "timed runs per candidate (median)")
      ->check(IntRange(1, 1000))
      ->capture_default_str();
  app.add_option("--block", a.block, "BSR block for --format bsr when the zeros have none")
      ->capture_default_str();
  app.add_flag("--no-shrink", a.no_shrink, "do not shrink zeroed neurons / filters first");
  app.add_option("--threads", a.threads, "OpenMP threads")->check(IntRange(0, 1024));
}

}  // namespace

Command add_pack_command(CLI::App& app) {
  auto a = std::make_shared<SparseArgs>();
  app.add_option("--in,model", a->in, "checkpoint (.safetensors)")->check(NonEmptyPath)->required();
  app.add_option("--out", a->out, "packed model file to write (.safetensors)")
      ->check(NonEmptyPath)
      ->required();
  add_plan_flags(app, *a);
  app.add_flag("--json", a->json, "print one JSON object with the layers and the size report");
  return [a] { return run_pack(*a); };
}

Command add_quantize_command(CLI::App& app) {
  auto a = std::make_shared<SparseArgs>();
  app.add_option("--in,model", a->in, "checkpoint (.safetensors)")->check(NonEmptyPath)->required();
  app.add_option("--out", a->out, "packed int8 model file to write (.safetensors)")
      ->check(NonEmptyPath)
      ->required();
  add_checkpoint_data_flags(app, a->dataset, a->data_dir);
  app.add_option("--calibrate", a->calibrate,
                 "calibrate the activation ranges on the first N training samples")
      ->check(IntRange(int64_t(1), int64_t(1) << 24))
      ->capture_default_str();
  app.add_option("--calibration", a->calibration,
                 "minmax, percentile (clip the tails) or entropy (KL, as TensorRT)")
      ->check(CLI::IsMember({"minmax", "percentile", "entropy"}))
      ->capture_default_str();
  app.add_option("--percentile", a->percentile,
                 "with --calibration percentile: the share (%) of values kept in range")
      ->check(FiniteNumber & CLI::Range(50.001, 100.0))
      ->capture_default_str();
  app.add_option("--format", a->format,
                 "auto (per layer, the fastest of int8 dense, int8 csr, int8 blocks and the float "
                 "plan's kernels, measured), or int8 throughout: dense, csr or bsr (linear "
                 "layers; blocks of --block)")
      ->check(CLI::IsMember({"auto", "dense", "csr", "bsr"}))
      ->capture_default_str();
  app.add_option("--block", a->block, "int8 block for --format bsr: 1x4 or 4x4")
      ->check(CLI::IsMember({"1x4", "4x4"}))
      ->capture_default_str();
  app.add_option("--batch", a->batch, "batch size the plan measures at")
      ->check(IntRange(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--repeats", a->repeats, "timed runs per candidate (median)")
      ->check(IntRange(1, 1000))
      ->capture_default_str();
  app.add_flag("--int8-only", a->int8_only,
               "with --format auto: int8 kernels only, every layer int8 (the smallest file)");
  app.add_flag("--no-shrink", a->no_shrink, "do not shrink zeroed neurons / filters first");
  app.add_option("--finetune-epochs", a->finetune_epochs,
                 "quantisation-aware training: epochs of Adam with fake-quantised inputs and "
                 "weights (straight-through gradients, masks kept) before quantising")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--lr", a->lr, "quantisation-aware training: learning rate")
      ->check(FiniteNumber & CLI::Range(0.0, 1e3))
      ->capture_default_str();
  app.add_option("--limit-train", a->limit_train,
                 "quantisation-aware training: only the first N training samples")
      ->check(IntRange(int64_t(1), int64_t(1) << 40));
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  app.add_flag("--json", a->json, "print one JSON object with the layers and the size report");
  app.add_flag("--quiet", a->quiet, "no per-epoch lines while fine-tuning");
  return [a] { return run_quantize(*a); };
}

Command add_plan_command(CLI::App& app) {
  auto a = std::make_shared<SparseArgs>();
  app.add_option("--in,model", a->in, "checkpoint (.safetensors)")->check(NonEmptyPath)->required();
  add_plan_flags(app, *a);
  add_gpu_flags(app, *a);  // GPU: dense / cuSPARSE / sprig's kernels, measured
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_plan(*a); };
}

Command add_run_command(CLI::App& app) {
  auto a = std::make_shared<SparseArgs>();
  app.add_option("--in,model", a->in, "packed model file (from sprig pack)")
      ->check(NonEmptyPath)
      ->required();
  add_checkpoint_data_flags(app, a->dataset, a->data_dir);
  app.add_option("--batch-size", a->batch_size, "samples per forward pass")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--limit-test", a->limit_test, "evaluate only the first N test samples")
      ->check(IntRange(int64_t(1), int64_t(1) << 40));
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  add_gpu_flags(app, *a);  // GPU: the layers re-planned there at --batch-size
  app.add_option("--repeats", a->repeats, "with --device cuda: timed runs per GPU candidate")
      ->check(IntRange(1, 1000))
      ->capture_default_str();
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_packed_eval(*a); };
}

}  // namespace sprig::app
