// sprig experiment pipeline: the main job in one command. Train cnn2, prune its filters with the
// Taylor criterion (seed 002's recipe), remove them (shrink) and fine-tune, prune most of the
// classifier's weights, pack the model for sparse inference with a plan measured on this
// machine, run it, and write one report with every stage side by side.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/experiments/experiment.h"
#include "datasets/dataloader.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/checkpoint.h"
#include "nn/summary.h"
#include "prune/pack.h"
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
  int64_t pack_batch = 1;  // the batch the inference plan is measured at
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
std::pair<double, double> run_inference(const prune::InferenceModel& m, const data::Dataset& test,
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

int run_pipeline(const PipelineArgs& a) {
  namespace fs = std::filesystem;
  Context ctx("pipeline", a.common);
  fs::create_directories(a.out_dir);
  track::Tracker& tr = *ctx.tracker;

  std::printf("== 1. train %s (%d epochs) ==\n", a.base.model.c_str(), a.base.epochs);
  std::fflush(stdout);
  BaseModel base = make_base(ctx, a.base);
  const train::DataSource& src = base.src;
  SPRIG_CHECK(src.task == train::Task::Classification,
              "experiment pipeline measures accuracy: dataset ", src.name,
              " is a regression problem");
  RunScope run(tr, tr.start_run("pipeline"));
  tr.set_tag(run.id(), "sprig.experiment", "pipeline");
  tr.log_param(run.id(), "model", base.model.spec);
  tr.log_param(run.id(), "dataset", src.name);
  tr.log_param(run.id(), "base", base.origin);
  tr.log_param(run.id(), "filter_amount", report::fmt(a.filter_amount, 4));
  tr.log_param(run.id(), "classifier_amount", report::fmt(a.classifier_amount, 4));
  tr.log_param(run.id(), "finetune_epochs", std::to_string(a.finetune_epochs));
  tr.log_param(run.id(), "pack_batch", std::to_string(a.pack_batch));
  log_epochs(ctx, run.id(), base.history, src.task);
  std::vector<Stage> stages;
  auto save_stage = [&](const std::string& name, const std::string& file, const nn::Model& m,
                        double accuracy) {
    std::string path = (fs::path(a.out_dir) / file).string();
    nn::save_checkpoint(path, m, {{"dataset", src.name}, {"created_by", "experiment pipeline"}});
    stages.push_back({name, path, nn::summarize(m), accuracy, file_size(path)});
    std::printf("%s: test accuracy %s, %s parameters (%s nonzero) -> %s\n", name.c_str(),
                pct(accuracy).c_str(), with_commas(stages.back().summary.params).c_str(),
                with_commas(stages.back().summary.nonzero).c_str(), path.c_str());
    std::fflush(stdout);
  };
  save_stage("trained", "cnn2.safetensors", base.model, base.test.accuracy);

  std::printf("== 2. Taylor filter pruning (%.1f%% per layer), shrink, fine-tune %d epochs ==\n",
              100.0 * a.filter_amount, a.finetune_epochs);
  std::fflush(stdout);
  nn::Model model = prune::copy_model(base.model);
  train::PrunePlan filters = finetune_plan(a, a.finetune_epochs);
  filters.spec.criterion = prune::Criterion::Taylor;
  filters.spec.granularity = prune::Granularity::Filter;
  filters.spec.amount = a.filter_amount;
  filters.shrink = true;
  prune::validate_spec(model, filters.spec);
  train::PruneOutcome shrunk = train::run_prune_plan(model, src, filters);
  const train::PruneStep& fstep = shrunk.steps.back();
  log_epochs(ctx, run.id(), fstep.epochs, src.task, 0, "finetune_");
  save_stage("filters pruned + shrunk", "cnn2_pruned.safetensors", model, shrunk.after.accuracy);

  std::string classifier = model.named_parameters().back().first;  // the last layer's bias
  classifier = classifier.substr(0, classifier.rfind('.')) + ".weight";
  std::printf("== 3. prune %.0f%% of the classifier's weights (%s), fine-tune %d epoch(s) ==\n",
              100.0 * a.classifier_amount, classifier.c_str(), a.classifier_finetune_epochs);
  std::fflush(stdout);
  train::PrunePlan weights = finetune_plan(a, a.classifier_finetune_epochs);
  weights.spec.criterion = prune::Criterion::Magnitude;
  weights.spec.amount = a.classifier_amount;
  weights.spec.include = {classifier};
  prune::validate_spec(model, weights.spec);
  train::PruneOutcome sparse = train::run_prune_plan(model, src, weights);
  save_stage("classifier pruned", "cnn2_sparse.safetensors", model, sparse.after.accuracy);

  std::printf("== 4. pack for sparse inference (plan measured at batch %lld), run ==\n",
              (long long)a.pack_batch);
  std::fflush(stdout);
  prune::PackOptions po;
  po.batch = a.pack_batch;
  po.seed = a.common.seed;
  prune::InferenceModel packed = prune::pack_model(model, po);
  std::string packed_path = (fs::path(a.out_dir) / "cnn2_packed.safetensors").string();
  prune::save_packed(packed_path, packed, {{"dataset", src.name}});
  prune::InferenceModel dense_baseline = prune::pack_model(base.model, [&] {
    prune::PackOptions d = po;
    d.format = prune::PackFormat::Dense;
    d.shrink = false;
    return d;
  }());
  auto [packed_acc, packed_ms] = run_inference(packed, src.data.test, a.pack_batch);
  auto [dense_acc, dense_ms] = run_inference(dense_baseline, src.data.test, a.pack_batch);
  prune::SizeReport sizes = prune::size_report(base.model, packed_path);
  std::printf(
      "packed: test accuracy %s, %.4f ms per batch of %lld (dense original %.4f ms, "
      "%.2fx), file %s bytes (%.1f%% of the dense file)\n",
      pct(packed_acc).c_str(), packed_ms, (long long)a.pack_batch, dense_ms,
      packed_ms > 0 ? dense_ms / packed_ms : 0.0, with_commas(sizes.packed_bytes).c_str(),
      100.0 * sizes.ratio());
  tr.log_metric(run.id(), "test_accuracy_trained", base.test.accuracy);
  tr.log_metric(run.id(), "test_accuracy_shrunk", shrunk.after.accuracy);
  tr.log_metric(run.id(), "test_accuracy_sparse", sparse.after.accuracy);
  tr.log_metric(run.id(), "test_accuracy_packed", packed_acc);
  tr.log_metric(run.id(), "params_trained", double(stages[0].summary.params));
  tr.log_metric(run.id(), "nonzero_final", double(stages.back().summary.nonzero));
  tr.log_metric(run.id(), "dense_ms", dense_ms);
  tr.log_metric(run.id(), "packed_ms", packed_ms);
  tr.log_metric(run.id(), "packed_bytes", double(sizes.packed_bytes));
  tr.log_text(run.id(), "summary_trained.txt", nn::format_summary(stages.front().summary));
  tr.log_text(run.id(), "summary_final.txt", nn::format_summary(stages.back().summary));
  tr.log_artifact(run.id(), packed_path, "model");

  // The report.
  report::Table stage_table{
      "Stages", {"stage", "test accuracy", "parameters", "nonzero", "FLOPs", "file"}, {}};
  for (const Stage& s : stages)
    stage_table.rows.push_back({s.name, pct(s.accuracy), with_commas(s.summary.params),
                                with_commas(s.summary.nonzero), with_commas(s.summary.flops),
                                s.file + " (" + with_commas(s.file_bytes) + " B)"});
  stage_table.rows.push_back({"packed (sparse inference)", pct(packed_acc),
                              with_commas(packed.model.num_parameters()),
                              with_commas(packed.nonzero()), "-",
                              packed_path + " (" + with_commas(sizes.packed_bytes) + " B)"});
  report::Table plan_table{"Inference plan at batch " + std::to_string(a.pack_batch),
                           {"layer", "shape", "sparsity", "measured (ms)", "chosen", "why"},
                           {}};
  for (const prune::PackedLayer& l : packed.layers) {
    std::string times;
    for (const prune::CandidateTime& t : l.times)
      times += (times.empty() ? "" : ", ") + t.format + " " + report::fmt(t.ms, 4);
    plan_table.rows.push_back({l.name, std::to_string(l.rows) + "x" + std::to_string(l.cols),
                               pct(l.sparsity()), times.empty() ? "-" : times, l.format(),
                               l.reason});
  }
  report::Table speed{"Inference at batch " + std::to_string(a.pack_batch),
                      {"model", "ms per batch", "speed-up", "test accuracy"},
                      {}};
  speed.rows.push_back({"trained cnn2, dense", report::fmt(dense_ms, 4), "1.00x", pct(dense_acc)});
  speed.rows.push_back({"pruned, packed", report::fmt(packed_ms, 4),
                        report::fmt(packed_ms > 0 ? dense_ms / packed_ms : 0.0, 2) + "x",
                        pct(packed_acc)});

  report::Chart curves{report::Chart::Kind::Line,
                       "accuracy",
                       "Test accuracy per epoch",
                       "epoch (training, then fine-tuning)",
                       "test accuracy",
                       {},
                       {},
                       false};
  report::Series train{"training", {}, {}, {}},
      tune{"fine-tuning after filter pruning", {}, {}, {}};
  for (const train::EpochStats& e : base.history) {
    train.x.push_back(e.epoch);
    train.y.push_back(e.test.accuracy);
  }
  double offset = double(base.history.size());
  tune.x.push_back(offset);
  tune.y.push_back(fstep.after_prune.accuracy);
  for (const train::EpochStats& e : fstep.epochs) {
    tune.x.push_back(offset + e.epoch);
    tune.y.push_back(e.test.accuracy);
  }
  if (!train.x.empty()) curves.series.push_back(train);
  curves.series.push_back(tune);

  report::Chart layer_bars{report::Chart::Kind::Bar,
                           "layer-sparsity",
                           "Sparsity per layer of the final model",
                           "layer",
                           "sparsity",
                           {},
                           {},
                           false};
  report::Series ls{"sparsity", {}, {}, {}};
  for (const nn::LayerSummary& l : stages.back().summary.layers) {
    if (l.params == 0) continue;
    ls.x.push_back(double(layer_bars.categories.size()));
    ls.y.push_back(l.sparsity());
    layer_bars.categories.push_back(l.name + " " + l.spec);
  }
  layer_bars.series.push_back(ls);
  report::Chart size_bars{report::Chart::Kind::Bar,
                          "sizes",
                          "Model size on disk",
                          "file",
                          "bytes",
                          {},
                          {"dense", "dense gzipped", "packed sparse"},
                          false};
  size_bars.series.push_back(
      {"bytes",
       {0, 1, 2},
       {double(sizes.dense_file_bytes), double(sizes.dense_gzip_bytes), double(sizes.packed_bytes)},
       {}});

  report::Report& r = ctx.report;
  r.add_heading("The main job: train, prune, fine-tune, sparse inference");
  r.add_paragraph(
      base.model.spec + " on " + src.name + " (" + with_commas(int64_t(src.data.train.size())) +
      " training samples, " + with_commas(int64_t(src.data.test.size())) + " test samples), " +
      base.origin + "; Taylor filter pruning of " + report::fmt(100.0 * a.filter_amount, 1) +
      "% of each conv layer's filters, shrink, " + plural(a.finetune_epochs, "fine-tuning epoch") +
      "; magnitude pruning of " + report::fmt(100.0 * a.classifier_amount, 1) + "% of " +
      classifier + ", " + plural(a.classifier_finetune_epochs, "fine-tuning epoch") +
      "; packed with a per-layer plan measured on this machine at batch " +
      std::to_string(a.pack_batch) + ".");
  r.add_table(stage_table);
  r.add_chart(curves);
  r.add_table(speed);
  r.add_table(plan_table);
  r.add_chart(layer_bars);
  r.add_chart(size_bars);
  r.add_heading("Trained model");
  r.add_preformatted(nn::format_summary(stages.front().summary));
  r.add_heading("Final model");
  r.add_preformatted(nn::format_summary(stages.back().summary));
  std::printf("\n%s\n%s\n%s\n", report::format_table(stage_table).c_str(),
              report::format_table(speed).c_str(), report::format_table(plan_table).c_str());
  finish(ctx, run.id());
  run.end();
  return 0;
}
}  // namespace

Command add_pipeline(CLI::App& app) {
  auto a = std::make_shared<PipelineArgs>();
  add_common_flags(app, a->common);
  add_base_flags(app, a->base, true);
  app.add_option("--epochs", a->base.epochs, "training epochs of the base model")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--finetune-epochs", a->finetune_epochs,
                 "fine-tuning epochs after the filter pruning")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--classifier-finetune-epochs", a->classifier_finetune_epochs,
                 "fine-tuning epochs after pruning the classifier")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--filter-amount", a->filter_amount, "fraction of each conv layer's filters")
      ->check(FractionBelowOne)
      ->capture_default_str();
  app.add_option("--classifier-amount", a->classifier_amount,
                 "fraction of the classifier's weights pruned")
      ->check(FractionBelowOne)
      ->capture_default_str();
  app.add_option("--pack-batch", a->pack_batch, "batch size the inference plan is measured at")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--out-dir", a->out_dir, "where the checkpoints and the packed model go")
      ->capture_default_str();
  return [a] { return run_pipeline(*a); };
}

}  // namespace sprig::app::experiments
