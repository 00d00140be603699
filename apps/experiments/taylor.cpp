// sprig experiment taylor (seed 002): cnn2 on Fashion-MNIST, Taylor filter pruning (Molchanov
// et al. 2017; seed 002's recipe: 37.5% of each layer's filters), shrink, fine-tune; the model
// before and after, the accuracy per fine-tuning epoch beside the original's training curve, and
// the parameter counts beside seed 002's 126,698 -> 79,120.
#include <algorithm>
#include <cstdio>

#include "apps/experiments/experiment.h"
#include "kernels/error.h"
#include "nn/summary.h"
#include "prune/shrink.h"
#include "train/prune_driver.h"

namespace sprig::app::experiments {

namespace {
// Seed 002's torchinfo summaries of its CNN before and after pruning.
constexpr int64_t kSeedParamsBefore = 126698, kSeedParamsAfter = 79120;

struct TaylorArgs {
  TaylorArgs() {
    base.model = "cnn2";
    base.epochs = 5;
  }
  CommonFlags common;
  BaseFlags base;
  double amount = 0.375;
  int finetune_epochs = 5, criterion_batches = 10;
  std::string variant = "reference";
};

// The parent run holds the original model.
void log_setup(Context& ctx, const std::string& parent, const TaylorArgs& a, const BaseModel& base,
               const nn::ModelSummary& before) {
  track::Tracker& tr = *ctx.tracker;
  const train::DataSource& src = base.src;
  tr.set_tag(parent, "sprig.experiment", "taylor");
  tr.log_param(parent, "model", base.model.spec);
  tr.log_param(parent, "dataset", src.name);
  tr.log_param(parent, "base", base.origin);
  tr.log_param(parent, "batch_size", std::to_string(a.base.batch_size));
  tr.log_param(parent, "lr", report::fmt(a.base.optim.lr, 6));
  tr.log_param(parent, "seed", std::to_string(a.common.seed));
  tr.log_param(parent, "train_samples", std::to_string(src.data.train.size()));
  log_epochs(ctx, parent, base.history, src.task);
  if (base.history.empty()) tr.log_metric(parent, "test_accuracy", base.test.accuracy);
  tr.log_metric(parent, "params", double(before.params));
  tr.log_text(parent, "summary.txt", nn::format_summary(before));
  log_model_artifact(ctx, parent, base.model, src.name, "original.safetensors");
  std::printf("original: test accuracy %s, %s parameters\n", pct(base.test.accuracy).c_str(),
              with_commas(before.params).c_str());
}

train::PrunePlan taylor_plan(const TaylorArgs& a) {
  train::PrunePlan plan;
  plan.spec.criterion = prune::Criterion::Taylor;
  plan.spec.granularity = prune::Granularity::Filter;
  plan.spec.scope = prune::Scope::Layer;
  plan.spec.amount = a.amount;
  plan.spec.seed = a.common.seed;
  plan.schedule.kind = prune::ScheduleSpec::OneShot;
  plan.finetune_epochs = a.finetune_epochs;
  plan.criterion_batches = a.criterion_batches;
  plan.taylor_variant =
      a.variant == "paper" ? prune::TaylorVariant::Paper : prune::TaylorVariant::ReferenceCode;
  plan.optim = a.base.optim;
  plan.fit.batch_size = a.base.batch_size;
  plan.fit.seed = a.common.seed + 1;
  plan.shrink = true;
  return plan;
}

struct Pruned {
  nn::Model model;  // shrunk and fine-tuned
  train::PruneOutcome outcome;
  nn::ModelSummary after;
  const train::PruneStep& step() const { return outcome.steps.back(); }
};

void log_pruned(Context& ctx, const std::string& child, const TaylorArgs& a,
                const train::DataSource& src, const nn::ModelSummary& before, const Pruned& p) {
  track::Tracker& tr = *ctx.tracker;
  tr.log_param(child, "method", "taylor");
  tr.log_param(child, "taylor_variant", a.variant);
  tr.log_param(child, "granularity", "filter");
  tr.log_param(child, "amount", report::fmt(a.amount, 4));
  tr.log_param(child, "criterion_batches", std::to_string(a.criterion_batches));
  tr.log_param(child, "finetune_epochs", std::to_string(a.finetune_epochs));
  tr.log_param(child, "shrink", "true");
  tr.log_param(child, "spec_after", p.model.spec);
  tr.log_metric(child, "finetune_test_accuracy", p.step().after_prune.accuracy, 0);
  log_epochs(ctx, child, p.step().epochs, src.task, 0, "finetune_");
  tr.log_metric(child, "test_accuracy", p.outcome.after.accuracy);
  tr.log_metric(child, "test_accuracy_after_prune", p.step().after_prune.accuracy);
  tr.log_metric(child, "params", double(p.after.params));
  tr.log_metric(child, "flops", double(p.after.flops));
  tr.log_text(child, "summary_before.txt", nn::format_summary(before));
  tr.log_text(child, "summary_after.txt", nn::format_summary(p.after));
  log_model_artifact(ctx, child, p.model, src.name, "pruned.safetensors");
}

// Prunes a copy of the original, then logs it as the one child run.
Pruned run_pruning(Context& ctx, const std::string& parent, const TaylorArgs& a,
                   const BaseModel& base, const nn::ModelSummary& before) {
  Pruned p{prune::copy_model(base.model), {}, {}};
  const train::PrunePlan plan = taylor_plan(a);
  train::validate_plan(p.model, plan);
  p.outcome = train::run_prune_plan(p.model, base.src, plan);
  p.after = nn::summarize(p.model);

  track::Tracker& tr = *ctx.tracker;
  RunScope child(tr, tr.start_run("taylor-" + report::fmt(a.amount, 3), parent));
  log_pruned(ctx, child.id(), a, base.src, before, p);
  child.end();
  return p;
}

report::Table params_table(const TaylorArgs& a, const BaseModel& base,
                           const nn::ModelSummary& before, const Pruned& p) {
  report::Table table{"Parameters: sprig vs seed 002",
                      {"model", "seed 002 params", "sprig params", "sprig spec", "test accuracy"},
                      {}};
  table.rows.push_back({"original (" + base.origin + ")", with_commas(kSeedParamsBefore),
                        with_commas(before.params), base.model.spec, pct(base.test.accuracy)});
  table.rows.push_back({"Taylor " + report::fmt(100.0 * a.amount, 1) + "% filters, shrunk, " +
                            plural(a.finetune_epochs, "fine-tuning epoch"),
                        with_commas(kSeedParamsAfter), with_commas(p.after.params), p.model.spec,
                        pct(p.outcome.after.accuracy)});
  return table;
}

// Each layer with parameters before pruning beside the layer of the same name after it.
report::Table layers_table(const nn::ModelSummary& before, const nn::ModelSummary& after) {
  report::Table table{"Parameters per layer", {"layer", "before", "params", "after", "params"}, {}};
  for (const nn::LayerSummary& l : before.layers) {
    if (l.params == 0) continue;
    const nn::LayerSummary* m = nullptr;
    for (const nn::LayerSummary& k : after.layers)
      if (k.name == l.name) m = &k;
    table.rows.push_back({l.name, l.spec, with_commas(l.params), m ? m->spec : "-",
                          m ? with_commas(m->params) : "-"});
  }
  return table;
}

report::Table epochs_table(const BaseModel& base, const train::PruneStep& step) {
  report::Table table{
      "Test accuracy per epoch", {"epoch", "original (training)", "pruned (fine-tuning)"}, {}};
  size_t rows = std::max(base.history.size(), step.epochs.size());
  table.rows.push_back({"0", "-", pct(step.after_prune.accuracy) + " (just pruned)"});
  for (size_t i = 0; i < rows; ++i)
    table.rows.push_back({std::to_string(i + 1),
                          i < base.history.size() ? pct(base.history[i].test.accuracy) : "-",
                          i < step.epochs.size() ? pct(step.epochs[i].test.accuracy) : "-"});
  return table;
}

report::Chart accuracy_chart(const BaseModel& base, const train::PruneStep& step) {
  report::Chart chart{report::Chart::Kind::Line,
                      "accuracy-per-epoch",
                      "Test accuracy: original training vs pruned fine-tuning",
                      "epoch",
                      "test accuracy",
                      {},
                      {},
                      false};
  report::Series original{"original (training)", {}, {}, {}};
  append_test_accuracy(original, base.history);
  report::Series pruned{
      "pruned (fine-tuning; 0 = just pruned)", {0.0}, {step.after_prune.accuracy}, {}};
  append_test_accuracy(pruned, step.epochs);
  if (!base.history.empty()) chart.series.push_back(original);
  chart.series.push_back(pruned);
  return chart;
}

report::Chart params_chart(const nn::ModelSummary& before, const nn::ModelSummary& after) {
  report::Chart chart{report::Chart::Kind::Bar,
                      "params",
                      "Parameters before and after pruning",
                      "model",
                      "parameters",
                      {},
                      {"original", "pruned"},
                      false};
  chart.series = {{"seed 002", {0, 1}, {double(kSeedParamsBefore), double(kSeedParamsAfter)}, {}},
                  {"sprig", {0, 1}, {double(before.params), double(after.params)}, {}}};
  return chart;
}

void write_report(Context& ctx, const std::string& parent, const TaylorArgs& a,
                  const BaseModel& base, const nn::ModelSummary& before, const Pruned& p) {
  const report::Table params = params_table(a, base, before, p);
  const report::Table epochs = epochs_table(base, p.step());
  const double gain = p.outcome.after.accuracy - base.test.accuracy;
  std::string intro =
      "cnn2 (seed 002's model) on " + base.src.name + " (" +
      std::to_string(base.src.data.train.size()) +
      " training samples): Taylor filter scores (mean of activation x gradient over " +
      std::to_string(a.criterion_batches) + " batches, " + a.variant + " variant), " +
      report::fmt(100.0 * a.amount, 1) +
      "% of each conv layer's filters pruned, removed physically (shrink), then fine-tuned for " +
      plural(a.finetune_epochs, "epoch") + ". Seed 002 counts come from its write-up.";
  std::string result =
      "Parameters " + with_commas(before.params) + " -> " + with_commas(p.after.params) +
      " (seed 002: " + with_commas(kSeedParamsBefore) + " -> " + with_commas(kSeedParamsAfter) +
      "); test accuracy " + pct(base.test.accuracy) + " -> " + pct(p.outcome.after.accuracy) +
      " (" + (gain >= 0 ? "+" : "") + report::fmt(100.0 * gain, 2) + " pp).";
  report::Report& r = ctx.report;
  r.add_heading("Taylor filter pruning of cnn2 (seed 002)");
  r.add_paragraph(intro);
  r.add_paragraph(result);
  r.add_table(params);
  r.add_chart(params_chart(before, p.after));
  r.add_chart(accuracy_chart(base, p.step()));
  r.add_table(epochs);
  r.add_heading("Before pruning");
  r.add_preformatted(nn::format_summary(before));
  r.add_heading("After pruning");
  r.add_preformatted(nn::format_summary(p.after));
  r.add_table(layers_table(before, p.after));

  std::printf("\nbefore pruning:\n%s\nafter pruning:\n%s\n%s\n%s\n%s\n",
              nn::format_summary(before).c_str(), nn::format_summary(p.after).c_str(),
              report::format_table(params).c_str(), report::format_table(epochs).c_str(),
              result.c_str());
  finish(ctx, parent);
}

int run_taylor(const TaylorArgs& a) {
  Context ctx("taylor", a.common);
  std::printf("Taylor filter pruning (seed 002): base %s\n", describe_base(a.base).c_str());
  std::fflush(stdout);
  const BaseModel base = make_base(ctx, a.base);
  SPRIG_CHECK(base.src.task == train::Task::Classification,
              "experiment taylor compares accuracies: ", "dataset ", base.src.name,
              " is a regression problem");
  const nn::ModelSummary before = nn::summarize(base.model);

  track::Tracker& tr = *ctx.tracker;
  RunScope parent(tr, tr.start_run("original"));
  log_setup(ctx, parent.id(), a, base, before);
  const Pruned pruned = run_pruning(ctx, parent.id(), a, base, before);
  write_report(ctx, parent.id(), a, base, before, pruned);
  parent.end();
  return 0;
}
}  // namespace

Command add_taylor(CLI::App& app) {
  auto a = std::make_shared<TaylorArgs>();
  add_common_flags(app, a->common);
  add_base_flags(app, a->base, true);
  app.add_option("--base-epochs", a->base.epochs, "epochs to train the original (without --base)")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--amount", a->amount, "fraction of each conv layer's filters pruned, in [0, 1)")
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--finetune-epochs", a->finetune_epochs, "fine-tuning epochs after pruning")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--criterion-batches", a->criterion_batches,
                 "training batches the Taylor scores are averaged over")
      ->check(IntRange(1, 1000000))
      ->capture_default_str();
  app.add_option("--taylor-variant", a->variant,
                 "reference (Gildenblat's code, as seed 002) or paper (per example)")
      ->check(CLI::IsMember({"reference", "paper"}))
      ->capture_default_str();
  return [a] { return run_taylor(*a); };
}

}  // namespace sprig::app::experiments
