// sprig experiment l1-vs-fpgm (seed 001): filter pruning of cnn2 by L1 norm (Li et al. 2017)
// and by FPGM (He et al. 2019) at several amounts, each shrunk and fine-tuned, against the
// original in accuracy, parameters, FLOPs and training time per epoch.
#include <cmath>
#include <cstdio>

#include "apps/experiments/experiment.h"
#include "apps/experiments/sweep.h"
#include "kernels/error.h"
#include "nn/summary.h"
#include "prune/shrink.h"
#include "train/prune_driver.h"

namespace sprig::app::experiments {

namespace {
struct L1FpgmArgs {
  L1FpgmArgs() {
    base.model = "cnn2";
    base.epochs = 5;
  }
  CommonFlags common;
  BaseFlags base;
  std::vector<std::string> methods = {"l1", "fpgm"};
  std::vector<double> amounts = {0.5, 0.75};
  int finetune_epochs = 3;
};

struct Variant {
  std::string label, method;
  std::string spec;        // short, for the table and the terminal
  std::string spec_after;  // the whole spec, for the run
  double amount = 0.0, accuracy = 0.0, accuracy_after_prune = 0.0, sparsity = 0.0;
  nn::ModelSummary summary;
  std::vector<train::EpochStats> epochs;  // of fine-tuning
};

double mean_seconds(const std::vector<train::EpochStats>& epochs) {
  double s = 0.0;
  for (const train::EpochStats& e : epochs) s += e.seconds;
  return epochs.empty() ? 0.0 : s / double(epochs.size());
}

// Seconds per training epoch for the table: "-" when there was no training to time.
std::string seconds_cell(const std::vector<train::EpochStats>& epochs) {
  return epochs.empty() ? "-" : report::fmt(mean_seconds(epochs), 2);
}

// The same for the chart, where NaN leaves a gap.
double seconds_point(const std::vector<train::EpochStats>& epochs) {
  return epochs.empty() ? std::nan("") : mean_seconds(epochs);
}

// The parent run holds the original model.
void log_setup(Context& ctx, const std::string& parent, const L1FpgmArgs& a, const BaseModel& base,
               const nn::ModelSummary& base_summary) {
  track::Tracker& tr = *ctx.tracker;
  const train::DataSource& src = base.src;
  tr.set_tag(parent, "sprig.experiment", "l1-vs-fpgm");
  tr.log_param(parent, "model", base.model.spec);
  tr.log_param(parent, "dataset", src.name);
  tr.log_param(parent, "base", base.origin);
  tr.log_param(parent, "finetune_epochs", std::to_string(a.finetune_epochs));
  tr.log_param(parent, "batch_size", std::to_string(a.base.batch_size));
  tr.log_param(parent, "lr", report::fmt(a.base.optim.lr, 6));
  tr.log_param(parent, "seed", std::to_string(a.common.seed));
  tr.log_param(parent, "train_samples", std::to_string(src.data.train.size()));
  log_epochs(ctx, parent, base.history, src.task);
  if (base.history.empty()) tr.log_metric(parent, "test_accuracy", base.test.accuracy);
  tr.log_metric(parent, "params", double(base_summary.params));
  tr.log_metric(parent, "flops", double(base_summary.flops));
  if (!base.history.empty())
    tr.log_metric(parent, "mean_epoch_seconds", mean_seconds(base.history));
  tr.log_text(parent, "summary.txt", nn::format_summary(base_summary));
  std::printf("original: test accuracy %s, %s parameters, %s FLOPs\n",
              pct(base.test.accuracy).c_str(), with_commas(base_summary.params).c_str(),
              with_commas(base_summary.flops).c_str());
}

// A copy of the original with `amount` of each layer's filters pruned by `method`, removed and
// fine-tuned.
Variant prune_variant(const L1FpgmArgs& a, const BaseModel& base, const std::string& method,
                      double amount) {
  Variant v;
  v.method = method;
  v.amount = amount;
  v.label = method + " " + report::fmt(100.0 * amount, 0) + "%";
  nn::Model model = prune::copy_model(base.model);
  train::PrunePlan plan;
  plan.spec.criterion = prune::parse_criterion(method);
  plan.spec.granularity = prune::Granularity::Filter;
  plan.spec.scope = prune::Scope::Layer;
  plan.spec.amount = amount;
  plan.spec.seed = a.common.seed;
  plan.schedule.kind = prune::ScheduleSpec::OneShot;
  plan.finetune_epochs = a.finetune_epochs;
  plan.optim = a.base.optim;
  plan.fit.batch_size = a.base.batch_size;
  plan.fit.seed = a.common.seed;
  plan.shrink = true;
  train::validate_plan(model, plan);
  train::PruneOutcome out = train::run_prune_plan(model, base.src, plan);
  v.summary = nn::summarize(model);
  v.spec = short_spec(model);
  v.spec_after = model.spec;
  v.accuracy = out.after.accuracy;
  v.accuracy_after_prune = out.steps.back().after_prune.accuracy;
  v.sparsity = out.sparsity;
  v.epochs = out.steps.back().epochs;
  return v;
}

void log_variant(Context& ctx, const std::string& child, const L1FpgmArgs& a, const Variant& v,
                 train::Task task) {
  track::Tracker& tr = *ctx.tracker;
  tr.log_param(child, "method", v.method);
  tr.log_param(child, "amount", report::fmt(v.amount, 4));
  tr.log_param(child, "granularity", "filter");
  tr.log_param(child, "shrink", "true");
  tr.log_param(child, "finetune_epochs", std::to_string(a.finetune_epochs));
  tr.log_param(child, "spec_after", v.spec_after);
  tr.log_metric(child, "finetune_test_accuracy", v.accuracy_after_prune, 0);
  log_epochs(ctx, child, v.epochs, task, 0, "finetune_");
  tr.log_metric(child, "test_accuracy_after_prune", v.accuracy_after_prune);
  tr.log_metric(child, "test_accuracy", v.accuracy);
  tr.log_metric(child, "params", double(v.summary.params));
  tr.log_metric(child, "flops", double(v.summary.flops));
  tr.log_metric(child, "sparsity", v.sparsity);
  if (!v.epochs.empty()) tr.log_metric(child, "mean_epoch_seconds", mean_seconds(v.epochs));
  tr.log_text(child, "summary.txt", nn::format_summary(v.summary));
}

nlohmann::json variant_to_json(const Variant& v) {
  return {{"label", v.label},
          {"method", v.method},
          {"spec", v.spec},
          {"spec_after", v.spec_after},
          {"amount", v.amount},
          {"accuracy", v.accuracy},
          {"accuracy_after_prune", v.accuracy_after_prune},
          {"sparsity", v.sparsity},
          {"summary", nn::summary_json(v.summary)},
          {"epochs", epochs_to_json(v.epochs)}};
}
Variant variant_from_json(const nlohmann::json& j) {
  Variant v;
  v.label = j["label"];
  v.method = j["method"];
  v.spec = j["spec"];
  v.spec_after = j["spec_after"];
  v.amount = j["amount"];
  v.accuracy = j["accuracy"];
  v.accuracy_after_prune = j["accuracy_after_prune"];
  v.sparsity = j["sparsity"];
  v.summary = nn::summary_from_json(j["summary"]);
  v.epochs = epochs_from_json(j["epochs"]);
  return v;
}

// Every (method, amount), spread over comm's ranks (each variant alone on one rank); rank 0
// (`ctx` null on the others) logs each as a child run and prints it, in one process's order.
std::vector<Variant> run_variants(const dist::Comm& comm, Context* ctx, const std::string& parent,
                                  const L1FpgmArgs& a, const BaseModel& base) {
  std::vector<std::pair<std::string, double>> cells;
  for (const std::string& method : a.methods)
    for (double amount : a.amounts) cells.push_back({method, amount});
  std::vector<Variant> variants;
  spread_tasks(
      comm, int64_t(cells.size()),
      [&](int64_t i) {
        return variant_to_json(
            prune_variant(a, base, cells[size_t(i)].first, cells[size_t(i)].second));
      },
      [&](int64_t, const nlohmann::json& j) {
        if (!ctx) return;
        Variant v = variant_from_json(j);
        track::Tracker& tr = *ctx->tracker;
        RunScope child(tr, tr.start_run(v.method + "-" + report::fmt(v.amount, 2), parent));
        log_variant(*ctx, child.id(), a, v, base.src.task);
        child.end();
        std::printf("%s: %s, test accuracy %s (after pruning %s), %s parameters\n", v.label.c_str(),
                    v.spec.c_str(), pct(v.accuracy).c_str(), pct(v.accuracy_after_prune).c_str(),
                    with_commas(v.summary.params).c_str());
        std::fflush(stdout);
        variants.push_back(std::move(v));
      });
  return variants;
}

report::Table comparison_table(const L1FpgmArgs& a, const BaseModel& base,
                               const nn::ModelSummary& base_summary,
                               const std::vector<Variant>& variants) {
  report::Table table{"Original and pruned models",
                      {"model", "spec", "params", "FLOPs", "test accuracy", "s / training epoch"},
                      {}};
  table.rows.push_back({"original (" + base.origin + ")", short_spec(base.model),
                        with_commas(base_summary.params), with_commas(base_summary.flops),
                        pct(base.test.accuracy), seconds_cell(base.history)});
  for (const Variant& v : variants)
    table.rows.push_back({v.label + ", " + plural(a.finetune_epochs, "fine-tuning epoch"), v.spec,
                          with_commas(v.summary.params), with_commas(v.summary.flops),
                          pct(v.accuracy), seconds_cell(v.epochs)});
  return table;
}

// Bars per model: test accuracy, size relative to the original, seconds per training epoch.
std::vector<report::Chart> comparison_charts(const BaseModel& base,
                                             const nn::ModelSummary& base_summary,
                                             const std::vector<Variant>& variants) {
  using Kind = report::Chart::Kind;
  report::Chart acc{Kind::Bar, "accuracy", "Test accuracy", "model", "test accuracy", {},
                    {},        false};
  report::Chart size{
      Kind::Bar, "size", "Size relative to the original", "model", "fraction of the original", {},
      {},        false};
  report::Chart speed{Kind::Bar, "epoch-time", "Training time per epoch", "model", "seconds", {},
                      {},        false};
  report::Series acc_s{"test accuracy", {}, {}, {}}, params_s{"parameters", {}, {}, {}},
      flops_s{"FLOPs", {}, {}, {}}, speed_s{"s / epoch", {}, {}, {}};
  auto add_bar = [&](const std::string& label, double accuracy, const nn::ModelSummary& summary,
                     double seconds) {
    double x = double(acc.categories.size());
    for (report::Chart* c : {&acc, &size, &speed}) c->categories.push_back(label);
    acc_s.x.push_back(x);
    acc_s.y.push_back(accuracy);
    params_s.x.push_back(x);
    params_s.y.push_back(double(summary.params) / double(base_summary.params));
    flops_s.x.push_back(x);
    flops_s.y.push_back(double(summary.flops) / double(base_summary.flops));
    speed_s.x.push_back(x);
    speed_s.y.push_back(seconds);
  };
  add_bar("original", base.test.accuracy, base_summary, seconds_point(base.history));
  for (const Variant& v : variants)
    add_bar(v.label, v.accuracy, v.summary, seconds_point(v.epochs));
  acc.series = {acc_s};
  size.series = {params_s, flops_s};
  speed.series = {speed_s};
  return {acc, size, speed};
}

// Each variant from just pruned (epoch 0) through fine-tuning, beside the original's training.
report::Chart finetune_chart(const BaseModel& base, const std::vector<Variant>& variants) {
  report::Chart chart{report::Chart::Kind::Line,
                      "finetune-curves",
                      "Test accuracy during fine-tuning",
                      "fine-tuning epoch (0: just pruned)",
                      "test accuracy",
                      {},
                      {},
                      false};
  for (const Variant& v : variants) {
    report::Series s{v.label, {0.0}, {v.accuracy_after_prune}, {}};
    append_test_accuracy(s, v.epochs);
    chart.series.push_back(s);
  }
  if (!base.history.empty()) {
    report::Series s{"original (training)", {}, {}, {}};
    append_test_accuracy(s, base.history);
    chart.series.push_back(s);
  }
  return chart;
}

void write_report(Context& ctx, const std::string& parent, const L1FpgmArgs& a,
                  const BaseModel& base, const nn::ModelSummary& base_summary,
                  const std::vector<Variant>& variants) {
  const report::Table table = comparison_table(a, base, base_summary, variants);
  std::string intro =
      "Each variant prunes whole filters of every layer but the classifier (" +
      std::string("L1 norm: smallest sum |w|; FPGM: closest to the layer's geometric median") +
      "), removes them physically (shrink) and fine-tunes for " +
      plural(a.finetune_epochs, "epoch") + " on " + base.src.name + " (" +
      std::to_string(base.src.data.train.size()) + " training samples). Epoch times are " +
      "wall-clock seconds of training on this machine at the time of the run.";
  report::Report& r = ctx.report;
  r.add_heading("L1-norm vs FPGM filter pruning (seed 001)");
  r.add_paragraph(intro);
  r.add_table(table);
  for (const report::Chart& c : comparison_charts(base, base_summary, variants)) r.add_chart(c);
  r.add_chart(finetune_chart(base, variants));
  r.add_heading("Original model");
  r.add_preformatted(nn::format_summary(base_summary));

  std::printf("\n%s\n", report::format_table(table).c_str());
  finish(ctx, parent);
}

int run_l1_vs_fpgm(const L1FpgmArgs& a) {
  // Under mpirun the variants are spread over the ranks; rank 0 alone makes the base model,
  // tracks, reports and prints.
  const dist::Comm& comm = dist::Comm::world();
  if (!comm.is_root()) {
    use_threads(a.common.threads);
    BaseModel base;
    share_base(comm, a.common, base);
    run_variants(comm, nullptr, "", a, base);
    return 0;
  }
  Context ctx("l1-vs-fpgm", a.common);
  std::printf("L1-norm vs FPGM filter pruning (seed 001): base %s\n",
              describe_base(a.base).c_str());
  std::fflush(stdout);
  BaseModel base = make_base(ctx, a.base);
  SPRIG_CHECK(base.src.task == train::Task::Classification,
              "experiment l1-vs-fpgm compares accuracies: ", "dataset ", base.src.name,
              " is a regression problem");
  share_base(comm, a.common, base);
  const nn::ModelSummary base_summary = nn::summarize(base.model);

  track::Tracker& tr = *ctx.tracker;
  RunScope parent(tr, tr.start_run("original"));
  log_setup(ctx, parent.id(), a, base, base_summary);
  if (comm.size() > 1) tr.log_param(parent.id(), "ranks", std::to_string(comm.size()));
  const std::vector<Variant> variants = run_variants(comm, &ctx, parent.id(), a, base);
  write_report(ctx, parent.id(), a, base, base_summary, variants);
  parent.end();
  return 0;
}
}  // namespace

Command add_l1_vs_fpgm(CLI::App& app) {
  auto a = std::make_shared<L1FpgmArgs>();
  add_common_flags(app, a->common);
  add_base_flags(app, a->base, true);
  app.add_option("--base-epochs", a->base.epochs, "epochs to train the original (without --base)")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--methods", a->methods, "filter criteria to compare: l1, l2, fpgm")
      ->delimiter(',')
      ->check(CLI::IsMember({"l1", "l2", "fpgm"}))
      ->capture_default_str();
  app.add_option("--amounts", a->amounts, "fractions of each layer's filters pruned, in [0, 1)")
      ->delimiter(',')
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--finetune-epochs", a->finetune_epochs, "fine-tuning epochs after pruning")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  return [a] { return run_l1_vs_fpgm(*a); };
}

}  // namespace sprig::app::experiments
