// sprig experiment pipeline: the main job in one command. Train cnn2, prune its filters with the
// Taylor criterion (seed 002's recipe), remove them (shrink) and fine-tune, prune most of the
// classifier's weights, pack the model for sparse inference with a plan measured on this
// machine, run it, and write one report with every stage side by side.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <tuple>

#include "apps/experiments/experiment.h"
#include "datasets/dataloader.h"
#include "engine/ops.h"
#include "infer/pack.h"
#include "kernels/error.h"
#include "nn/checkpoint.h"
#include "nn/summary.h"
#include "prune/shrink.h"
#include "train/prune_driver.h"

namespace sprig::app::experiments {

namespace {
struct PipelineArgs {
  PipelineArgs() {
    base.model = "cnn2";
    base.epochs = 5;
  }
  CommonFlags common;
  BaseFlags base;
  std::string out_dir = "out";
  double filter_amount = 0.375;    // Taylor: fraction of each conv layer's filters
  double classifier_amount = 0.9;  // magnitude: fraction of the last layer's weights
  int finetune_epochs = 5;         // after the filter pruning
  int classifier_finetune_epochs = 1;
  int64_t pack_batch = 1;            // the batch the inference plan is measured at
  std::string pack_format = "auto";  // every layer's format, or auto: the plan measures
};

struct Stage {
  std::string name, file;
  nn::ModelSummary summary;
  double accuracy = 0.0;
  int64_t file_bytes = 0;
};

int64_t file_size(const std::string& path) {
  return int64_t(std::filesystem::file_size(path));
}

// Accuracy of the packed model and the mean forward time per batch of `batch` samples.
std::pair<double, double> run_inference(const infer::InferenceModel& m, const data::Dataset& test,
                                        int64_t batch) {
  data::DataLoader loader(test, batch, false);
  loader.start_epoch();
  data::Batch b;
  int64_t samples = 0, correct = 0, batches = 0;
  double seconds = 0.0;
  while (loader.next(b)) {
    auto t0 = std::chrono::steady_clock::now();
    Tensor out = m.forward(b.x);  // (n, 10); only the forward pass is timed
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    correct += train::count_correct(out, b.y);
    samples += b.x.size(0);
    ++batches;
  }
  return {samples ? double(correct) / double(samples) : 0.0,
          batches ? 1e3 * seconds / double(batches) : 0.0};
}

train::PrunePlan finetune_plan(const PipelineArgs& a, int epochs) {
  train::PrunePlan plan;
  plan.spec.seed = a.common.seed;
  plan.schedule.kind = prune::ScheduleSpec::OneShot;
  plan.finetune_epochs = epochs;
  plan.optim = a.base.optim;
  plan.fit.batch_size = a.base.batch_size;
  plan.fit.seed = a.common.seed + 1;
  return plan;
}

void log_setup(Context& ctx, const std::string& run, const PipelineArgs& a, const BaseModel& base) {
  track::Tracker& tr = *ctx.tracker;
  tr.set_tag(run, "sprig.experiment", "pipeline");
  tr.log_param(run, "model", base.model.spec);
  tr.log_param(run, "dataset", base.src.name);
  tr.log_param(run, "base", base.origin);
  tr.log_param(run, "filter_amount", report::fmt(a.filter_amount, 4));
  tr.log_param(run, "classifier_amount", report::fmt(a.classifier_amount, 4));
  tr.log_param(run, "finetune_epochs", std::to_string(a.finetune_epochs));
  tr.log_param(run, "pack_batch", std::to_string(a.pack_batch));
  log_epochs(ctx, run, base.history, base.src.task);
}

// Saves the model of one stage under --out-dir and records it for the stage table.
void save_stage(std::vector<Stage>& stages, const PipelineArgs& a, const std::string& dataset,
                const std::string& name, const std::string& file, const nn::Model& m,
                double accuracy) {
  std::string path = (std::filesystem::path(a.out_dir) / file).string();
  nn::save_checkpoint(path, m, {{"dataset", dataset}, {"created_by", "experiment pipeline"}});
  stages.push_back({name, path, nn::summarize(m), accuracy, file_size(path)});
  std::printf("%s: test accuracy %s, %s parameters (%s nonzero) -> %s\n", name.c_str(),
              pct(accuracy).c_str(), with_commas(stages.back().summary.params).c_str(),
              with_commas(stages.back().summary.nonzero).c_str(), path.c_str());
  std::fflush(stdout);
}

// Stage 2: Taylor filter pruning, shrink and fine-tuning, in place.
train::PruneOutcome prune_filters(const PipelineArgs& a, const train::DataSource& src,
                                  nn::Model& model) {
  std::printf("== 2. Taylor filter pruning (%.1f%% per layer), shrink, fine-tune %d epochs ==\n",
              100.0 * a.filter_amount, a.finetune_epochs);
  std::fflush(stdout);
  train::PrunePlan filters = finetune_plan(a, a.finetune_epochs);
  filters.spec.criterion = prune::Criterion::Taylor;
  filters.spec.granularity = prune::Granularity::Filter;
  filters.spec.amount = a.filter_amount;
  filters.shrink = true;
  prune::validate_spec(model, filters.spec);
  return train::run_prune_plan(model, src, filters);
}

// The last layer's weight, named from its bias (the model's last parameter).
std::string classifier_weight(const nn::Model& model) {
  std::string bias = model.named_parameters().back().first;
  return bias.substr(0, bias.rfind('.')) + ".weight";
}

// Stage 3: magnitude pruning of the classifier's weights and fine-tuning, in place.
train::PruneOutcome prune_classifier(const PipelineArgs& a, const train::DataSource& src,
                                     const std::string& classifier, nn::Model& model) {
  std::printf("== 3. prune %.0f%% of the classifier's weights (%s), fine-tune %d epoch(s) ==\n",
              100.0 * a.classifier_amount, classifier.c_str(), a.classifier_finetune_epochs);
  std::fflush(stdout);
  train::PrunePlan weights = finetune_plan(a, a.classifier_finetune_epochs);
  weights.spec.criterion = prune::Criterion::Magnitude;
  weights.spec.amount = a.classifier_amount;
  weights.spec.include = {classifier};
  prune::validate_spec(model, weights.spec);
  return train::run_prune_plan(model, src, weights);
}

struct Packed {
  infer::InferenceModel model;
  std::string path;
  infer::SizeReport sizes;
  double accuracy = 0.0, ms = 0.0;              // the packed model's
  double dense_accuracy = 0.0, dense_ms = 0.0;  // the trained model's, run dense
  double speedup() const { return ms > 0 ? dense_ms / ms : 0.0; }
};

// Stage 4: packs the pruned model with a plan measured here, and runs it beside the trained
// model packed dense, so both go through the same inference path.
Packed pack_and_run(const PipelineArgs& a, const BaseModel& base, const nn::Model& model) {
  std::printf("== 4. pack for sparse inference (plan measured at batch %lld), run ==\n",
              (long long)a.pack_batch);
  std::fflush(stdout);
  Packed p;
  infer::PackOptions po;
  po.batch = a.pack_batch;
  po.format = infer::parse_pack_format(a.pack_format);
  po.seed = a.common.seed;
  p.model = infer::pack_model(model, po);
  p.path = (std::filesystem::path(a.out_dir) / "cnn2_packed.safetensors").string();
  infer::save_packed(p.path, p.model, {{"dataset", base.src.name}});
  infer::PackOptions dense = po;
  dense.format = infer::PackFormat::Dense;
  dense.shrink = false;
  infer::InferenceModel dense_baseline = infer::pack_model(base.model, dense);
  std::tie(p.accuracy, p.ms) = run_inference(p.model, base.src.data.test, a.pack_batch);
  std::tie(p.dense_accuracy, p.dense_ms) =
      run_inference(dense_baseline, base.src.data.test, a.pack_batch);
  p.sizes = infer::size_report(base.model, p.path);
  std::printf(
      "packed: test accuracy %s, %.4f ms per batch of %lld (dense original %.4f ms, "
      "%.2fx), file %s bytes (%.1f%% of the dense file)\n",
      pct(p.accuracy).c_str(), p.ms, (long long)a.pack_batch, p.dense_ms, p.speedup(),
      with_commas(p.sizes.packed_bytes).c_str(), 100.0 * p.sizes.ratio());
  return p;
}

struct Outcome {
  std::vector<Stage> stages;  // trained, filters pruned + shrunk, classifier pruned
  train::PruneStep filters;   // stage 2's pruning step and fine-tuning epochs
  std::string classifier;     // the weight stage 3 prunes
  Packed packed;
};

// Stages 2 to 4 on a copy of the trained model, each saved under --out-dir.
Outcome run_stages(Context& ctx, const std::string& run, const PipelineArgs& a,
                   const BaseModel& base) {
  const train::DataSource& src = base.src;
  Outcome o;
  save_stage(o.stages, a, src.name, "trained", "cnn2.safetensors", base.model, base.test.accuracy);
  nn::Model model = prune::copy_model(base.model);
  train::PruneOutcome shrunk = prune_filters(a, src, model);
  o.filters = shrunk.steps.back();
  log_epochs(ctx, run, o.filters.epochs, src.task, 0, "finetune_");
  save_stage(o.stages, a, src.name, "filters pruned + shrunk", "cnn2_pruned.safetensors", model,
             shrunk.after.accuracy);
  o.classifier = classifier_weight(model);
  train::PruneOutcome sparse = prune_classifier(a, src, o.classifier, model);
  save_stage(o.stages, a, src.name, "classifier pruned", "cnn2_sparse.safetensors", model,
             sparse.after.accuracy);
  o.packed = pack_and_run(a, base, model);
  return o;
}

void log_results(track::Tracker& tr, const std::string& run, const Outcome& o) {
  const Packed& p = o.packed;
  tr.log_metric(run, "test_accuracy_trained", o.stages[0].accuracy);
  tr.log_metric(run, "test_accuracy_shrunk", o.stages[1].accuracy);
  tr.log_metric(run, "test_accuracy_sparse", o.stages[2].accuracy);
  tr.log_metric(run, "test_accuracy_packed", p.accuracy);
  tr.log_metric(run, "params_trained", double(o.stages[0].summary.params));
  tr.log_metric(run, "nonzero_final", double(o.stages.back().summary.nonzero));
  tr.log_metric(run, "dense_ms", p.dense_ms);
  tr.log_metric(run, "packed_ms", p.ms);
  tr.log_metric(run, "packed_bytes", double(p.sizes.packed_bytes));
  tr.log_text(run, "summary_trained.txt", nn::format_summary(o.stages.front().summary));
  tr.log_text(run, "summary_final.txt", nn::format_summary(o.stages.back().summary));
  tr.log_artifact(run, p.path, "model");
}

report::Table stage_table(const Outcome& o) {
  report::Table table{
      "Stages", {"stage", "test accuracy", "parameters", "nonzero", "FLOPs", "file"}, {}};
  for (const Stage& s : o.stages)
    table.rows.push_back({s.name, pct(s.accuracy), with_commas(s.summary.params),
                          with_commas(s.summary.nonzero), with_commas(s.summary.flops),
                          s.file + " (" + with_commas(s.file_bytes) + " B)"});
  const Packed& p = o.packed;
  table.rows.push_back({"packed (sparse inference)", pct(p.accuracy),
                        with_commas(p.model.model.num_parameters()), with_commas(p.model.nonzero()),
                        "-", p.path + " (" + with_commas(p.sizes.packed_bytes) + " B)"});
  return table;
}

// Per packed layer: the formats timed and the one chosen, with the reason.
report::Table plan_table(const PipelineArgs& a, const infer::InferenceModel& packed) {
  report::Table table{"Inference plan at batch " + std::to_string(a.pack_batch),
                      {"layer", "shape", "sparsity", "measured (ms)", "chosen", "why"},
                      {}};
  for (const infer::PackedLayer& l : packed.layers) {
    std::string times;
    for (const infer::CandidateTime& t : l.times)
      times += (times.empty() ? "" : ", ") + t.format + " " + report::fmt(t.ms, 4);
    table.rows.push_back({l.name, std::to_string(l.rows) + "x" + std::to_string(l.cols),
                          pct(l.sparsity()), times.empty() ? "-" : times, l.format(), l.reason});
  }
  return table;
}

report::Table speed_table(const PipelineArgs& a, const Packed& p) {
  report::Table table{"Inference at batch " + std::to_string(a.pack_batch),
                      {"model", "ms per batch", "speed-up", "test accuracy"},
                      {}};
  table.rows.push_back(
      {"trained cnn2, dense", report::fmt(p.dense_ms, 4), "1.00x", pct(p.dense_accuracy)});
  table.rows.push_back(
      {"pruned, packed", report::fmt(p.ms, 4), report::fmt(p.speedup(), 2) + "x", pct(p.accuracy)});
  return table;
}

// Training, then the fine-tuning after filter pruning from just pruned on, on one epoch axis.
report::Chart accuracy_chart(const BaseModel& base, const train::PruneStep& filters) {
  report::Chart chart{report::Chart::Kind::Line,
                      "accuracy",
                      "Test accuracy per epoch",
                      "epoch (training, then fine-tuning)",
                      "test accuracy",
                      {},
                      {},
                      false};
  report::Series training{"training", {}, {}, {}};
  append_test_accuracy(training, base.history);
  const double offset = double(base.history.size());
  report::Series tuning{
      "fine-tuning after filter pruning", {offset}, {filters.after_prune.accuracy}, {}};
  append_test_accuracy(tuning, filters.epochs, offset);
  if (!training.x.empty()) chart.series.push_back(training);
  chart.series.push_back(tuning);
  return chart;
}

report::Chart size_chart(const infer::SizeReport& sizes) {
  report::Chart chart{report::Chart::Kind::Bar,
                      "sizes",
                      "Model size on disk",
                      "file",
                      "bytes",
                      {},
                      {"dense", "dense gzipped", "packed sparse"},
                      false};
  chart.series.push_back(
      {"bytes",
       {0, 1, 2},
       {double(sizes.dense_file_bytes), double(sizes.dense_gzip_bytes), double(sizes.packed_bytes)},
       {}});
  return chart;
}

std::string describe_pipeline(const PipelineArgs& a, const BaseModel& base,
                              const std::string& classifier) {
  const train::DataSource& src = base.src;
  return base.model.spec + " on " + src.name + " (" + with_commas(int64_t(src.data.train.size())) +
         " training samples, " + with_commas(int64_t(src.data.test.size())) + " test samples), " +
         base.origin + "; Taylor filter pruning of " + report::fmt(100.0 * a.filter_amount, 1) +
         "% of each conv layer's filters, shrink, " +
         plural(a.finetune_epochs, "fine-tuning epoch") + "; magnitude pruning of " +
         report::fmt(100.0 * a.classifier_amount, 1) + "% of " + classifier + ", " +
         plural(a.classifier_finetune_epochs, "fine-tuning epoch") +
         "; packed with a per-layer plan measured on this machine at batch " +
         std::to_string(a.pack_batch) + ".";
}

void write_report(Context& ctx, const std::string& run, const PipelineArgs& a,
                  const BaseModel& base, const Outcome& o) {
  const report::Table stages = stage_table(o);
  const report::Table speed = speed_table(a, o.packed);
  const report::Table plan = plan_table(a, o.packed.model);
  report::Report& r = ctx.report;
  r.add_heading("The main job: train, prune, fine-tune, sparse inference");
  r.add_paragraph(describe_pipeline(a, base, o.classifier));
  r.add_table(stages);
  r.add_chart(accuracy_chart(base, o.filters));
  r.add_table(speed);
  r.add_table(plan);
  r.add_chart(layer_sparsity_chart("layer-sparsity", "Sparsity per layer of the final model",
                                   o.stages.back().summary));
  r.add_chart(size_chart(o.packed.sizes));
  r.add_heading("Trained model");
  r.add_preformatted(nn::format_summary(o.stages.front().summary));
  r.add_heading("Final model");
  r.add_preformatted(nn::format_summary(o.stages.back().summary));
  std::printf("\n%s\n%s\n%s\n", report::format_table(stages).c_str(),
              report::format_table(speed).c_str(), report::format_table(plan).c_str());
  finish(ctx, run);
}

int run_pipeline(const PipelineArgs& a) {
  Context ctx("pipeline", a.common);
  std::filesystem::create_directories(a.out_dir);
  std::printf("== 1. train %s (%d epochs) ==\n", a.base.model.c_str(), a.base.epochs);
  std::fflush(stdout);
  const BaseModel base = make_base(ctx, a.base);
  SPRIG_CHECK(base.src.task == train::Task::Classification,
              "experiment pipeline measures accuracy: dataset ", base.src.name,
              " is a regression problem");

  track::Tracker& tr = *ctx.tracker;
  RunScope run(tr, tr.start_run("pipeline"));
  log_setup(ctx, run.id(), a, base);
  const Outcome outcome = run_stages(ctx, run.id(), a, base);
  log_results(tr, run.id(), outcome);
  write_report(ctx, run.id(), a, base, outcome);
  run.end();
  return 0;
}
}  // namespace

Command add_pipeline(CLI::App& app) {
  auto a = std::make_shared<PipelineArgs>();
  add_common_flags(app, a->common);
  add_base_flags(app, a->base, true);
  app.add_option("--epochs", a->base.epochs, "training epochs of the base model")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--finetune-epochs", a->finetune_epochs,
                 "fine-tuning epochs after the filter pruning")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--classifier-finetune-epochs", a->classifier_finetune_epochs,
                 "fine-tuning epochs after pruning the classifier")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--filter-amount", a->filter_amount, "fraction of each conv layer's filters")
      ->check(FractionBelowOne)
      ->capture_default_str();
  app.add_option("--classifier-amount", a->classifier_amount,
                 "fraction of the classifier's weights pruned")
      ->check(FractionBelowOne)
      ->capture_default_str();
  app.add_option("--pack-batch", a->pack_batch, "batch size the inference plan is measured at")
      ->check(IntRange(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--pack-format", a->pack_format,
                 "dense, csr, bsr, nm, or auto (per layer, measured at --pack-batch)")
      ->check(PackFormatName)
      ->capture_default_str();
  app.add_option("--out-dir", a->out_dir, "where the checkpoints and the packed model go")
      ->check(NonEmptyPath)
      ->capture_default_str();
  return [a] { return run_pipeline(*a); };
}

}  // namespace sprig::app::experiments
