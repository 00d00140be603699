// sprig experiment iterative (seed 000): train a base model and log it as the parent run, then
// let Bayesian optimisation choose the amount of iterative global magnitude pruning, one nested
// child run per trial (prune in steps from the base model, fine-tuning after each step).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "apps/experiments/bayes_opt.h"
#include "apps/experiments/experiment.h"
#include "apps/experiments/sweep.h"
#include "kernels/error.h"
#include "nn/summary.h"
#include "prune/shrink.h"
#include "train/prune_driver.h"

namespace sprig::app::experiments {

namespace {
struct IterativeArgs {
  IterativeArgs() {
    base.model = "mlp";
    base.epochs = 2;
  }
  CommonFlags common;
  BaseFlags base;
  int max_epochs = 2;
  int total_trials = 8;
  int initial_trials = 3;
  int prune_iterations = 2;
  double min_amount = 0.1, max_amount = 0.99;
  std::string objective = "test_accuracy", method = "magnitude", scope = "global";
  double max_accuracy_drop = 0.02;
  int trial_batch = 0;  // trials proposed at once; 0: one per rank
};

// Trials the optimiser proposes at once: --trial-batch, else one per rank.
int trial_batch(const IterativeArgs& a, const dist::Comm& comm) {
  return a.trial_batch > 0 ? a.trial_batch : comm.size();
}

// One pruning step of a trial: its cumulative target and what it reached.
struct TrialStep {
  double target = 0.0, sparsity = 0.0, accuracy_after_prune = 0.0, accuracy_after_finetune = 0.0;
};

struct Trial {
  int index = 0;  // from 1
  double amount = 0.0, accuracy = 0.0, sparsity = 0.0, objective = 0.0, seconds = 0.0;
  int64_t nonzero = 0;
  bool feasible = true;
  std::vector<TrialStep> steps;
  std::vector<train::EpochStats> epochs;
  nn::ModelSummary summary;
};

nlohmann::json trial_to_json(const Trial& t) {
  nlohmann::json steps = nlohmann::json::array();
  for (const TrialStep& s : t.steps)
    steps.push_back({s.target, s.sparsity, s.accuracy_after_prune, s.accuracy_after_finetune});
  return {{"index", t.index},
          {"amount", t.amount},
          {"accuracy", t.accuracy},
          {"sparsity", t.sparsity},
          {"objective", t.objective},
          {"seconds", t.seconds},
          {"nonzero", t.nonzero},
          {"feasible", t.feasible},
          {"steps", steps},
          {"epochs", epochs_to_json(t.epochs)},
          {"summary", nn::summary_json(t.summary)}};
}
Trial trial_from_json(const nlohmann::json& j) {
  Trial t;
  t.index = j["index"];
  t.amount = j["amount"];
  t.accuracy = j["accuracy"];
  t.sparsity = j["sparsity"];
  t.objective = j["objective"];
  t.seconds = j["seconds"];
  t.nonzero = j["nonzero"];
  t.feasible = j["feasible"];
  for (const auto& s : j["steps"]) t.steps.push_back({s[0], s[1], s[2], s[3]});
  t.epochs = epochs_from_json(j["epochs"]);
  t.summary = nn::summary_from_json(j["summary"]);
  return t;
}

// Fine-tuning epochs after each of `steps` pruning steps, `total` in all; earlier steps get
// the remainder so the last step is never the only one trained.
std::vector<int> split_epochs(int total, int steps) {
  std::vector<int> e(steps, total / steps);
  for (int k = 0; k < total % steps; ++k) ++e[k];
  return e;
}

bool by_sparsity(const IterativeArgs& a) {
  return a.objective == "sparsity";
}

// With --objective sparsity, the lowest test accuracy a trial may reach and still count.
double accuracy_floor(const IterativeArgs& a, const BaseModel& base) {
  return base.test.accuracy - a.max_accuracy_drop;
}

// The parent run holds the base model: the search's settings, its training and its checkpoint.
void log_setup(Context& ctx, const std::string& parent, const IterativeArgs& a,
               const BaseModel& base, const nn::ModelSummary& base_summary) {
  track::Tracker& tr = *ctx.tracker;
  const train::DataSource& src = base.src;
  tr.set_tag(parent, "sprig.experiment", "iterative");
  std::map<std::string, std::string> params = {
      {"model", base.model.spec},
      {"dataset", src.name},
      {"base", base.origin},
      {"max_epochs", std::to_string(a.max_epochs)},
      {"batch_size", std::to_string(a.base.batch_size)},
      {"optimizer", "adam"},
      {"lr", report::fmt(a.base.optim.lr, 6)},
      {"seed", std::to_string(a.common.seed)},
      {"train_samples", std::to_string(src.data.train.size())},
      {"test_samples", std::to_string(src.data.test.size())},
      {"total_trials", std::to_string(a.total_trials)},
      {"prune_iterations", std::to_string(a.prune_iterations)},
      {"method", a.method},
      {"scope", a.scope},
      {"objective", a.objective},
      {"amount_bounds", report::fmt(a.min_amount, 4) + "," + report::fmt(a.max_amount, 4)},
      {"trial_batch", std::to_string(trial_batch(a, dist::Comm::world()))}};
  if (by_sparsity(a)) params["max_accuracy_drop"] = report::fmt(a.max_accuracy_drop, 4);
  for (auto& [k, v] : params) tr.log_param(parent, k, v);
  log_epochs(ctx, parent, base.history, src.task);
  if (base.history.empty()) tr.log_metric(parent, "test_accuracy", base.test.accuracy);
  tr.log_metric(parent, "params", double(base_summary.params));
  tr.log_text(parent, "summary.txt", nn::format_summary(base_summary));
  log_model_artifact(ctx, parent, base.model, src.name, "base.safetensors");
  std::printf("base model: test accuracy %s, %s parameters\n", pct(base.test.accuracy).c_str(),
              with_commas(base_summary.params).c_str());
}

void log_trial_params(track::Tracker& tr, const std::string& child, const IterativeArgs& a,
                      double amount, const std::vector<double>& targets) {
  tr.log_param(child, "amount", report::fmt(amount, 6));
  tr.log_param(child, "method", a.method);
  tr.log_param(child, "scope", a.scope);
  tr.log_param(child, "granularity", "element");
  tr.log_param(child, "prune_iterations", std::to_string(a.prune_iterations));
  tr.log_param(child, "finetune_epochs", std::to_string(a.max_epochs));
  std::string target_list;
  for (double v : targets) target_list += (target_list.empty() ? "" : ",") + report::fmt(v, 4);
  tr.log_param(child, "targets", target_list);
}

// Prunes `model` to each cumulative target in turn, fine-tuning after each step; records each
// step, the fine-tuning epochs (numbered across steps) and the final accuracy and sparsity in
// `tri`.
void prune_in_steps(const IterativeArgs& a, const train::DataSource& src,
                    const std::vector<double>& targets, nn::Model& model, Trial& tri) {
  const std::vector<int> phase_epochs = split_epochs(a.max_epochs, a.prune_iterations);
  for (size_t k = 0; k < targets.size(); ++k) {
    train::PrunePlan plan;
    plan.spec.criterion = prune::parse_criterion(a.method);
    plan.spec.granularity = prune::Granularity::Element;
    plan.spec.scope = a.scope == "global" ? prune::Scope::Global : prune::Scope::Layer;
    plan.spec.amount = targets[k];
    plan.spec.seed = a.common.seed + uint64_t(tri.index);
    plan.schedule.kind = prune::ScheduleSpec::OneShot;
    plan.finetune_epochs = phase_epochs[k];
    plan.optim = a.base.optim;
    plan.fit.batch_size = a.base.batch_size;
    plan.fit.seed = a.common.seed + uint64_t(1000 * tri.index + k);
    train::PruneOutcome out = train::run_prune_plan(model, src, plan);
    const train::PruneStep& s = out.steps.back();
    tri.steps.push_back({s.target, s.sparsity, s.after_prune.accuracy, s.after_finetune.accuracy});
    for (train::EpochStats e : s.epochs) {
      e.epoch = int(tri.epochs.size()) + 1;
      tri.epochs.push_back(e);
    }
    tri.accuracy = out.after.accuracy;
    tri.sparsity = out.sparsity;
    tri.nonzero = out.nonzero_after;
  }
}

void score_trial(const IterativeArgs& a, double floor, Trial& tri) {
  tri.feasible = tri.accuracy >= floor;
  // Infeasible trials score below every feasible one (feasible scores lie in [0, 1]), and
  // less so the closer they come to the accuracy floor, so the GP still sees a slope.
  tri.objective = !by_sparsity(a) ? tri.accuracy
                  : tri.feasible  ? tri.sparsity
                                  : tri.sparsity - 1.0 - 10.0 * (floor - tri.accuracy);
}

void log_trial_result(track::Tracker& tr, const std::string& child, const Trial& tri,
                      double base_accuracy) {
  tr.log_metric(child, "test_accuracy", tri.accuracy);
  tr.log_metric(child, "sparsity", tri.sparsity);
  tr.log_metric(child, "nonzero_params", double(tri.nonzero));
  tr.log_metric(child, "accuracy_drop", base_accuracy - tri.accuracy);
  tr.log_metric(child, "objective", tri.objective);
  tr.log_metric(child, "trial_seconds", tri.seconds);
  tr.set_tag(child, "feasible", tri.feasible ? "true" : "false");
  tr.log_text(child, "summary.txt", nn::format_summary(tri.summary));
}

// Trial `index`: the base model pruned to `amount` and fine-tuned, scored against `floor`.
Trial run_trial(const IterativeArgs& a, const BaseModel& base, int index, double amount,
                double floor) {
  auto t0 = std::chrono::steady_clock::now();
  Trial tri;
  tri.index = index;
  tri.amount = amount;
  nn::Model model = prune::copy_model(base.model);
  prune_in_steps(a, base.src, prune::iterative_targets(amount, a.prune_iterations), model, tri);
  tri.summary = nn::summarize(model);
  score_trial(a, floor, tri);
  tri.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return tri;
}

// A finished trial as a child run of `parent`.
void log_trial(Context& ctx, const std::string& parent, const IterativeArgs& a, const Trial& tri,
               const BaseModel& base) {
  track::Tracker& tr = *ctx.tracker;
  RunScope child(tr, tr.start_run("trial-" + std::to_string(tri.index), parent));
  log_trial_params(tr, child.id(), a, tri.amount,
                   prune::iterative_targets(tri.amount, a.prune_iterations));
  for (size_t k = 0; k < tri.steps.size(); ++k) {
    const TrialStep& s = tri.steps[k];
    const int64_t step = int64_t(k) + 1;
    tr.log_metric(child.id(), "step_target", s.target, step);
    tr.log_metric(child.id(), "step_sparsity", s.sparsity, step);
    tr.log_metric(child.id(), "step_accuracy_after_prune", s.accuracy_after_prune, step);
    tr.log_metric(child.id(), "step_accuracy_after_finetune", s.accuracy_after_finetune, step);
  }
  log_epochs(ctx, child.id(), tri.epochs, base.src.task, 0, "finetune_");
  log_trial_result(tr, child.id(), tri, base.test.accuracy);
  child.end();
}

// The search: the optimiser proposes --trial-batch amounts at a time, the batch's trials are
// spread over comm's ranks (each alone on one rank), and every rank's optimiser learns every
// result, so all propose the same next batch. Rank 0 (`ctx` null on the others) logs each trial
// as a child run and prints it.
std::vector<Trial> run_trials(const dist::Comm& comm, Context* ctx, const std::string& parent,
                              const IterativeArgs& a, const BaseModel& base) {
  BayesOptOptions bo_opt;
  bo_opt.initial_points = a.initial_trials;
  bo_opt.seed = a.common.seed;
  BayesOpt bo({{a.min_amount, a.max_amount}}, bo_opt);
  const double floor = accuracy_floor(a, base);
  const int batch = trial_batch(a, comm);
  std::vector<Trial> trials;
  for (int first = 1; first <= a.total_trials; first += batch) {
    const int n = std::min(batch, a.total_trials - first + 1);
    const std::vector<std::vector<double>> amounts = bo.suggest_batch(n);
    spread_tasks(
        comm, n,
        [&](int64_t i) {
          return trial_to_json(run_trial(a, base, first + int(i), amounts[size_t(i)][0], floor));
        },
        [&](int64_t, const nlohmann::json& j) {
          Trial tri = trial_from_json(j);
          bo.observe({tri.amount}, tri.objective);
          if (ctx) {
            log_trial(*ctx, parent, a, tri, base);
            std::printf(
                "trial %d/%d: amount %.4f -> sparsity %s, test accuracy %s%s (%.1f s)\n", tri.index,
                a.total_trials, tri.amount, pct(tri.sparsity).c_str(), pct(tri.accuracy).c_str(),
                by_sparsity(a) && !tri.feasible ? ", below the accuracy floor" : "", tri.seconds);
            std::fflush(stdout);
          }
          trials.push_back(std::move(tri));
        });
  }
  return trials;
}

// The first trial with the highest objective.
const Trial& best_trial(const std::vector<Trial>& trials) {
  size_t best = 0;
  for (size_t i = 1; i < trials.size(); ++i)
    if (trials[i].objective > trials[best].objective) best = i;
  return trials[best];
}

report::Table trials_table(const IterativeArgs& a, const std::vector<Trial>& trials,
                           const Trial& best, double base_accuracy) {
  report::Table table{
      "Trials (objective: " + a.objective + ")",
      {"trial", "amount", "sparsity", "test accuracy", "drop", "objective", "seconds"},
      {}};
  if (by_sparsity(a)) table.header.insert(table.header.begin() + 5, "feasible");
  for (const Trial& t : trials) {
    std::vector<std::string> row = {std::to_string(t.index) + (&t == &best ? " *" : ""),
                                    report::fmt(t.amount, 4),
                                    pct(t.sparsity),
                                    pct(t.accuracy),
                                    report::fmt(100.0 * (base_accuracy - t.accuracy), 2) + " pp",
                                    report::fmt(t.objective, 4),
                                    report::fmt(t.seconds, 1)};
    if (by_sparsity(a)) row.insert(row.begin() + 5, t.feasible ? "yes" : "no");
    table.rows.push_back(row);
  }
  return table;
}

report::Table layers_table(const Trial& best) {
  report::Table table{"Best trial (" + std::to_string(best.index) + "): sparsity per layer",
                      {"layer", "spec", "params", "nonzero", "sparsity"},
                      {}};
  for (const nn::LayerSummary& l : best.summary.layers) {
    if (l.params == 0) continue;
    table.rows.push_back(
        {l.name, l.spec, with_commas(l.params), with_commas(l.nonzero), pct(l.sparsity())});
  }
  return table;
}

report::Chart accuracy_vs_sparsity_chart(const std::vector<Trial>& trials, const Trial& best,
                                         double base_accuracy) {
  report::Chart chart{report::Chart::Kind::Scatter,
                      "accuracy-vs-sparsity",
                      "Test accuracy vs sparsity",
                      "sparsity",
                      "test accuracy",
                      {},
                      {},
                      false};
  report::Series trial_points{"trials", {}, {}, {}};
  for (const Trial& t : trials) {
    trial_points.x.push_back(t.sparsity);
    trial_points.y.push_back(t.accuracy);
  }
  chart.series = {trial_points,
                  {"base model", {0.0}, {base_accuracy}, {}},
                  {"best trial", {best.sparsity}, {best.accuracy}, {}}};
  return chart;
}

// Each trial's objective beside the best one so far.
report::Chart search_trace_chart(const IterativeArgs& a, const std::vector<Trial>& trials) {
  report::Chart chart{report::Chart::Kind::Line,
                      "bo-trace",
                      "Bayesian optimisation trace",
                      "trial",
                      a.objective + " objective",
                      {},
                      {},
                      false};
  report::Series observed{"trial objective", {}, {}, {}}, so_far{"best so far", {}, {}, {}};
  double running = -std::numeric_limits<double>::infinity();
  for (const Trial& t : trials) {
    running = std::max(running, t.objective);
    observed.x.push_back(t.index);
    observed.y.push_back(t.objective);
    so_far.x.push_back(t.index);
    so_far.y.push_back(running);
  }
  chart.series = {observed, so_far};
  return chart;
}

report::Chart base_accuracy_chart(const std::vector<train::EpochStats>& history) {
  report::Chart chart{report::Chart::Kind::Line,
                      "base-curves",
                      "Base model: test accuracy",
                      "epoch",
                      "test accuracy",
                      {},
                      {},
                      false};
  report::Series accuracy{"test accuracy", {}, {}, {}};
  append_test_accuracy(accuracy, history);
  chart.series = {accuracy};
  return chart;
}

report::Chart base_loss_chart(const std::vector<train::EpochStats>& history) {
  report::Chart chart{report::Chart::Kind::Line,
                      "base-loss",
                      "Base model: training loss",
                      "epoch",
                      "mean training loss",
                      {},
                      {},
                      false};
  report::Series loss{"train loss", {}, {}, {}};
  for (const train::EpochStats& e : history) {
    loss.x.push_back(e.epoch);
    loss.y.push_back(e.train_loss);
  }
  chart.series = {loss};
  return chart;
}

std::string describe_search(const IterativeArgs& a, double floor, int batch) {
  return "Each trial prunes the base model's weights (" + a.method + ", " + a.scope +
         " scope) to the proposed amount in " + plural(a.prune_iterations, "step") + " with " +
         plural(a.max_epochs, "fine-tuning epoch") +
         " in all; a Gaussian-process Bayesian optimiser proposes the amount in [" +
         report::fmt(a.min_amount, 2) + ", " + report::fmt(a.max_amount, 2) + "] (" +
         plural(a.initial_trials, "random trial") + " first) to maximise " + a.objective +
         (by_sparsity(a) ? " subject to test accuracy >= " + pct(floor) : std::string()) + "." +
         (batch > 1 ? " It proposes " + std::to_string(batch) +
                          " amounts at a time, each after the first as if those before it had "
                          "already scored the lowest value seen so far (constant liar)."
                    : std::string());
}

// The best trial's metrics on the parent run, then the report and the tables on the terminal.
void write_report(Context& ctx, const std::string& parent, const IterativeArgs& a,
                  const BaseModel& base, const nn::ModelSummary& base_summary,
                  const std::vector<Trial>& trials) {
  track::Tracker& tr = *ctx.tracker;
  const Trial& b = best_trial(trials);
  tr.log_metric(parent, "best_trial", double(b.index));
  tr.log_metric(parent, "best_amount", b.amount);
  tr.log_metric(parent, "best_test_accuracy", b.accuracy);
  tr.log_metric(parent, "best_sparsity", b.sparsity);
  tr.log_metric(parent, "best_objective", b.objective);

  const report::Table trials_tab = trials_table(a, trials, b, base.test.accuracy);
  const report::Table layers_tab = layers_table(b);
  std::string base_line = "Base model " + base.model.spec + " on " + base.src.name + " (" +
                          base.origin + "): test accuracy " + pct(base.test.accuracy) + ", " +
                          with_commas(base_summary.params) + " parameters.";
  std::string best_line = "Best: trial " + std::to_string(b.index) + ", amount " +
                          report::fmt(b.amount, 4) + ", sparsity " + pct(b.sparsity) +
                          ", test accuracy " + pct(b.accuracy) + ".";

  report::Report& r = ctx.report;
  r.add_heading("Iterative pruning with Bayesian optimisation (seed 000)");
  r.add_paragraph(base_line);
  r.add_paragraph(describe_search(a, accuracy_floor(a, base), trial_batch(a, dist::Comm::world())));
  r.add_table(trials_tab);
  r.add_paragraph(best_line);
  r.add_chart(accuracy_vs_sparsity_chart(trials, b, base.test.accuracy));
  r.add_chart(search_trace_chart(a, trials));
  r.add_heading("Base model");
  r.add_preformatted(nn::format_summary(base_summary));
  if (!base.history.empty()) {
    r.add_chart(base_accuracy_chart(base.history));
    r.add_chart(base_loss_chart(base.history));
  }
  r.add_heading("Best trial");
  r.add_table(layers_tab);
  r.add_chart(
      layer_sparsity_chart("best-layer-sparsity", "Best trial: sparsity per layer", b.summary));
  r.add_preformatted(nn::format_summary(b.summary));

  std::printf("\n%s\n%s\n%s\n%s\n", base_line.c_str(), report::format_table(trials_tab).c_str(),
              best_line.c_str(), report::format_table(layers_tab).c_str());
  finish(ctx, parent);
}

int run_iterative(const IterativeArgs& a) {
  SPRIG_CHECK(a.min_amount < a.max_amount, "--min-amount ", a.min_amount,
              " must be below --max-amount ", a.max_amount);
  // Under mpirun the trials of each batch are spread over the ranks; rank 0 alone makes the
  // base model, tracks, reports and prints.
  const dist::Comm& comm = dist::Comm::world();
  if (!comm.is_root()) {
    use_threads(a.common.threads);
    BaseModel base;
    share_base(comm, a.common, base);
    run_trials(comm, nullptr, "", a, base);
    return 0;
  }
  Context ctx("iterative", a.common);
  // The base model trains for as many epochs as each trial fine-tunes.
  BaseFlags bf = a.base;
  bf.epochs = a.max_epochs;
  const int batch = trial_batch(a, comm);
  std::printf("iterative pruning (seed 000): base model %s, then %s%s\n", describe_base(bf).c_str(),
              plural(a.total_trials, "trial").c_str(),
              batch > 1 ? (", proposed " + std::to_string(batch) + " at a time").c_str() : "");
  std::fflush(stdout);
  BaseModel base = make_base(ctx, bf);
  SPRIG_CHECK(base.src.task == train::Task::Classification,
              "experiment iterative optimises test accuracy: ", "dataset ", base.src.name,
              " is a regression problem");
  share_base(comm, a.common, base);
  const nn::ModelSummary base_summary = nn::summarize(base.model);

  track::Tracker& tr = *ctx.tracker;
  RunScope parent(tr, tr.start_run("base-model"));
  log_setup(ctx, parent.id(), a, base, base_summary);
  if (comm.size() > 1) tr.log_param(parent.id(), "ranks", std::to_string(comm.size()));
  const std::vector<Trial> trials = run_trials(comm, &ctx, parent.id(), a, base);
  write_report(ctx, parent.id(), a, base, base_summary, trials);
  parent.end();
  return 0;
}
}  // namespace

Command add_iterative(CLI::App& app) {
  auto a = std::make_shared<IterativeArgs>();
  add_common_flags(app, a->common);
  add_base_flags(app, a->base, true);
  app.add_option("--max-epochs", a->max_epochs,
                 "epochs of base training, and of fine-tuning in each trial (split over the "
                 "pruning steps)")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  app.add_option("--total-trials", a->total_trials, "pruning trials (child runs)")
      ->check(IntRange(1, 10000))
      ->capture_default_str();
  app.add_option("--initial-trials", a->initial_trials,
                 "trials with random amounts before the Gaussian process proposes them")
      ->check(IntRange(1, 10000))
      ->capture_default_str();
  app.add_option("--prune-iterations", a->prune_iterations,
                 "pruning steps per trial (each prunes the same share of what is left, then "
                 "fine-tunes)")
      ->check(IntRange(1, 1000))
      ->capture_default_str();
  app.add_option("--min-amount", a->min_amount, "lowest pruning amount searched")
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--max-amount", a->max_amount, "highest pruning amount searched")
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--objective", a->objective,
                 "test_accuracy (maximise it) or sparsity (maximise it with test accuracy at "
                 "least the base's minus --max-accuracy-drop)")
      ->check(CLI::IsMember({"test_accuracy", "sparsity"}))
      ->capture_default_str();
  app.add_option("--max-accuracy-drop", a->max_accuracy_drop,
                 "with --objective sparsity: accuracy the pruned model may lose, in [0, 1]")
      ->check(FiniteNumber & CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--method", a->method, "weight criterion: magnitude, gradient, taylor or random")
      ->check(CLI::IsMember({"magnitude", "gradient", "taylor", "random"}))
      ->capture_default_str();
  app.add_option("--scope", a->scope, "global (one threshold for all layers) or layer")
      ->check(CLI::IsMember({"global", "layer"}))
      ->capture_default_str();
  app.add_option("--trial-batch", a->trial_batch,
                 "trials the optimiser proposes at once (under mpirun they run side by side; "
                 "0: one per rank). The same value gives the same search on any number of ranks")
      ->check(IntRange(0, 10000))
      ->capture_default_str();
  return [a] { return run_iterative(*a); };
}

}  // namespace sprig::app::experiments
