// sprig experiment prune-quantize (issue 17): dense -> pruned -> pruned + int8, the path a
// pruned model takes to deployment (TF-MOT's pruning-preserving quantisation), with accuracy,
// file size and latency of each stage in one table, one MLflow run per stage and one report.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "apps/experiments/experiment.h"
#include "engine/autograd.h"
#include "kernels/error.h"
#include "engine/rng.h"
#include "infer/pack.h"
#include "prune/shrink.h"
#include "train/prune_driver.h"
#include "train/qat.h"

namespace sprig::app::experiments {

namespace {

struct PruneQuantizeArgs {
  PruneQuantizeArgs() {
    base.model = "cnn2";
    base.epochs = 5;
  }
  CommonFlags common;
  BaseFlags base;
  double amount = 0.9;  // global magnitude, unstructured
  int finetune_epochs = 2;
  int64_t calibrate = 1000;
  std::string calibration = "minmax";
  int qat_epochs = 0;
  std::vector<int64_t> batches = {1, 64};
  int repeats = 20;
};

// One column of the story: a model as it would be deployed.
struct Stage {
  std::string label, run_name;
  double accuracy = 0.0;
  int64_t nonzero = 0;     // nonzero weights and biases of the packed model
  int64_t file_bytes = 0;  // its packed file
  std::vector<double> ms;  // median forward time at each --batches size
  std::string formats;     // per layer, "0 int8 dense, 2 csr, ..."
};

// Accuracy, the packed file's size and the forward time at each batch size of model m.
Stage measure(const std::string& label, const std::string& run_name, const infer::InferenceModel& m,
              const data::Dataset& test, const PruneQuantizeArgs& a) {
  Stage s;
  s.label = label;
  s.run_name = run_name;
  s.accuracy = train::evaluate([&m](const Tensor& x) { return m.forward(x); }, test,
                               train::Task::Classification)
                   .accuracy;
  s.nonzero = m.nonzero();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("sprig_prune_quantize_" + std::to_string(::getpid()) + ".safetensors"))
                               .string();
  infer::save_packed(path, m);
  s.file_bytes = int64_t(std::filesystem::file_size(path));
  std::filesystem::remove(path);
  Rng rng(a.common.seed);
  for (int64_t b : a.batches) {
    Shape xs = m.model.input_shape;
    xs.insert(xs.begin(), b);
    const Tensor x = Tensor::uniform(xs, -1.0f, 1.0f, rng);
    s.ms.push_back(infer::time_median_ms([&] { m.forward(x); }, a.repeats));
  }
  for (const infer::PackedLayer& l : m.layers)
    s.formats += (s.formats.empty() ? "" : ", ") + l.name + " " + l.format();
  return s;
}

void log_stage(Context& ctx, const std::string& run, const Stage& s, const PruneQuantizeArgs& a) {
  track::Tracker& tr = *ctx.tracker;
  tr.log_param(run, "formats", s.formats);
  tr.log_metric(run, "test_accuracy", s.accuracy);
  tr.log_metric(run, "nonzero", double(s.nonzero));
  tr.log_metric(run, "file_bytes", double(s.file_bytes));
  for (size_t i = 0; i < a.batches.size(); ++i)
    tr.log_metric(run, "ms_batch_" + std::to_string(a.batches[i]), s.ms[i]);
}

report::Table stage_table(const std::vector<Stage>& stages, const PruneQuantizeArgs& a) {
  report::Table t{"Dense, pruned and pruned + int8",
                  {"model", "test accuracy", "nonzero", "file", "file / dense"},
                  {}};
  for (int64_t b : a.batches) t.header.push_back("ms at batch " + std::to_string(b));
  for (const Stage& s : stages) {
    std::vector<std::string> row = {
        s.label, pct(s.accuracy), with_commas(s.nonzero), with_commas(s.file_bytes) + " B",
        report::fmt(double(s.file_bytes) / double(stages.front().file_bytes), 3)};
    for (double ms : s.ms) row.push_back(report::fmt(ms, 4));
    t.rows.push_back(row);
  }
  return t;
}

std::vector<report::Chart> stage_charts(const std::vector<Stage>& stages,
                                        const PruneQuantizeArgs& a) {
  using Kind = report::Chart::Kind;
  report::Chart acc{Kind::Bar, "accuracy", "Test accuracy", "model", "test accuracy", {},
                    {},        false};
  report::Chart size{Kind::Bar, "size", "Packed file size", "model", "bytes", {}, {}, false};
  report::Chart speed{Kind::Bar, "latency", "Forward time", "model", "ms", {}, {}, false};
  report::Series acc_s{"test accuracy", {}, {}, {}}, size_s{"file bytes", {}, {}, {}};
  std::vector<report::Series> ms_s;
  for (int64_t b : a.batches) ms_s.push_back({"batch " + std::to_string(b), {}, {}, {}});
  for (size_t i = 0; i < stages.size(); ++i) {
    const double x = double(i);
    for (report::Chart* c : {&acc, &size, &speed}) c->categories.push_back(stages[i].label);
    acc_s.x.push_back(x);
    acc_s.y.push_back(stages[i].accuracy);
    size_s.x.push_back(x);
    size_s.y.push_back(double(stages[i].file_bytes));
    for (size_t j = 0; j < ms_s.size(); ++j) {
      ms_s[j].x.push_back(x);
      ms_s[j].y.push_back(stages[i].ms[j]);
    }
  }
  acc.series = {acc_s};
  size.series = {size_s};
  speed.series = ms_s;
  return {acc, size, speed};
}

int run_prune_quantize(const PruneQuantizeArgs& a) {
  Context ctx("prune-quantize", a.common);
  std::printf("dense -> pruned -> pruned + int8: base %s\n", describe_base(a.base).c_str());
  std::fflush(stdout);
  BaseModel base = make_base(ctx, a.base);
  SPRIG_CHECK(base.src.task == train::Task::Classification,
              "experiment prune-quantize compares accuracies: dataset ", base.src.name,
              " is a regression problem");
  const data::Dataset& test = base.src.data.test;
  track::Tracker& tr = *ctx.tracker;
  RunScope parent(tr, tr.start_run("dense"));
  tr.set_tag(parent.id(), "sprig.experiment", "prune-quantize");
  tr.log_param(parent.id(), "model", base.model.spec);
  tr.log_param(parent.id(), "dataset", base.src.name);
  tr.log_param(parent.id(), "base", base.origin);
  tr.log_param(parent.id(), "amount", report::fmt(a.amount, 4));
  tr.log_param(parent.id(), "finetune_epochs", std::to_string(a.finetune_epochs));
  tr.log_param(parent.id(), "calibration", a.calibration);
  tr.log_param(parent.id(), "calibrate", std::to_string(a.calibrate));
  tr.log_param(parent.id(), "qat_epochs", std::to_string(a.qat_epochs));
  log_epochs(ctx, parent.id(), base.history, base.src.task);

  // Every stage is planned at the first --batches size and timed at each.
  infer::PackOptions dense_opt;
  dense_opt.format = infer::PackFormat::Dense;
  dense_opt.shrink = false;
  dense_opt.batch = a.batches.front();
  std::vector<Stage> stages;
  {
    NoGradGuard no_grad;
    stages.push_back(
        measure("dense float", "dense", infer::pack_model(base.model, dense_opt), test, a));
  }
  log_stage(ctx, parent.id(), stages.back(), a);

  // Pruned: global magnitude, unstructured, fine-tuned with the masks.
  nn::Model pruned = prune::copy_model(base.model);
  train::PrunePlan plan;
  plan.spec.criterion = prune::Criterion::Magnitude;
  plan.spec.granularity = prune::Granularity::Element;
  plan.spec.scope = prune::Scope::Global;
  plan.spec.amount = a.amount;
  plan.spec.seed = a.common.seed;
  plan.schedule.kind = prune::ScheduleSpec::OneShot;
  plan.finetune_epochs = a.finetune_epochs;
  plan.optim = a.base.optim;
  plan.fit.batch_size = a.base.batch_size;
  plan.fit.seed = a.common.seed;
  train::validate_plan(pruned, plan);
  train::PruneOutcome outcome = train::run_prune_plan(pruned, base.src, plan);
  infer::PackOptions plan_opt = dense_opt;
  plan_opt.format = infer::PackFormat::Auto;
  plan_opt.shrink = true;
  plan_opt.repeats = 3;
  {
    RunScope child(tr, tr.start_run("pruned", parent.id()));
    log_epochs(ctx, child.id(), outcome.steps.back().epochs, base.src.task, 0, "finetune_");
    NoGradGuard no_grad;
    stages.push_back(
        measure("pruned float", "pruned", infer::pack_model(pruned, plan_opt), test, a));
    tr.log_metric(child.id(), "sparsity", outcome.sparsity);
    log_stage(ctx, child.id(), stages.back(), a);
    child.end();
  }

  // Pruned + int8: every layer int8, calibrated on the first training samples, with optional
  // quantisation-aware training.
  {
    RunScope child(tr, tr.start_run("pruned-int8", parent.id()));
    infer::QuantizeOptions qo;
    qo.pack = plan_opt;
    qo.int8_only = true;
    qo.calibration = infer::parse_calibration(a.calibration);
    train::QatConfig qat;
    qat.epochs = a.qat_epochs;
    qat.batch_size = a.base.batch_size;
    qat.seed = a.common.seed;
    const data::Dataset calib = data::take(base.src.data.train, a.calibrate);
    train::QuantizeOutcome q =
        train::quantize_with_qat(pruned, calib, base.src.data.train, test, base.src.task, qo, qat);
    log_epochs(ctx, child.id(), q.qat_epochs, base.src.task, 0, "qat_");
    NoGradGuard no_grad;
    stages.push_back(measure(a.qat_epochs > 0 ? "pruned + int8 (QAT)" : "pruned + int8",
                             "pruned-int8", q.model, test, a));
    log_stage(ctx, child.id(), stages.back(), a);
    child.end();
  }

  const report::Table table = stage_table(stages, a);
  report::Report& r = ctx.report;
  r.add_heading("Dense, pruned and pruned + int8");
  r.add_paragraph(
      base.model.spec + " on " + base.src.name + " (" + base.origin + "), pruned " +
      report::fmt(100.0 * a.amount, 0) + "% by global magnitude and fine-tuned " +
      plural(a.finetune_epochs, "epoch") + ", then quantised to int8 (per-channel weights, " +
      a.calibration + " calibration on " + std::to_string(a.calibrate) + " training samples" +
      (a.qat_epochs > 0 ? ", " + plural(a.qat_epochs, "epoch") + " of quantisation-aware training"
                        : std::string()) +
      "). Files are sprig's packed files; times are medians of " + std::to_string(a.repeats) +
      " forward passes on this machine, each model planned at batch " +
      std::to_string(a.batches.front()) + ".");
  r.add_table(table);
  for (const report::Chart& c : stage_charts(stages, a)) r.add_chart(c);
  r.add_heading("Layers");
  std::string layers;
  for (const Stage& s : stages) layers += s.label + ": " + s.formats + "\n";
  r.add_preformatted(layers);
  std::printf("\n%s\n", report::format_table(table).c_str());
  finish(ctx, parent.id());
  parent.end();
  return 0;
}

}  // namespace

Command add_prune_quantize(CLI::App& app) {
  auto a = std::make_shared<PruneQuantizeArgs>();
  add_common_flags(app, a->common);
  add_base_flags(app, a->base, true);
  app.add_option("--base-epochs", a->base.epochs,
                 "epochs to train the dense model (without --base)")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--amount", a->amount, "fraction of the weights pruned (global magnitude)")
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--finetune-epochs", a->finetune_epochs, "fine-tuning epochs after pruning")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--calibrate", a->calibrate, "calibration samples (the first training samples)")
      ->check(IntRange(int64_t(1), int64_t(1) << 24))
      ->capture_default_str();
  app.add_option("--calibration", a->calibration, "minmax, percentile or entropy")
      ->check(CLI::IsMember({"minmax", "percentile", "entropy"}))
      ->capture_default_str();
  app.add_option("--qat-epochs", a->qat_epochs, "quantisation-aware training epochs before int8")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--batches", a->batches, "batch sizes to time each model at")
      ->delimiter(',')
      ->check(IntRange(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--repeats", a->repeats, "timed forward passes per batch size (median)")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  return [a] { return run_prune_quantize(*a); };
}

}  // namespace sprig::app::experiments
