// sprig experiment gradual-vs-instant (seed 003): for each final sparsity, prune once and train
// (instant) versus prune in k steps with training between (gradual), every variant getting the
// same number of optimizer steps, repeated over several seeds.
//
// Per seed one dense model is pretrained; every (sparsity, steps) variant starts from a copy of
// it and trains with the same shuffling order, so differences between variants of one seed are
// paired. The training budget is counted in optimizer steps T = epochs x batches: the k pruning
// steps happen at steps floor(j T / k), j = 0..k-1 (the first before any training), to the
// cumulative targets 1 - (1 - s)^(j / k) (each step removes the same fraction of the weights
// still left) or, with --spacing linear, s j / k. Pruning is global magnitude over all conv and
// linear weights, as in seed 003.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "apps/experiments/experiment.h"
#include "apps/experiments/sweep.h"
#include "datasets/dataloader.h"
#include "dist/comm.h"
#include "kernels/error.h"
#include "prune/prune.h"
#include "prune/schedule.h"
#include "prune/shrink.h"
#include "train/data_parallel.h"
#include "train/trainer.h"

namespace sprig::app::experiments {

namespace {

struct GradualArgs {
  CommonFlags common;
  std::string model = "mlp", spacing = "geometric";
  std::vector<double> sparsities{0.5, 0.8, 0.9, 0.95};
  std::vector<int> steps{1, 2, 4, 8};
  int seeds = 3, epochs = 2, pretrain_epochs = 2;
  int64_t eval_samples = 2000, batch_size = 64;
  train::OptimizerConfig optim{"adam", 1e-3f};
};

struct VariantResult {
  double sparsity = 0.0;  // the target
  int steps = 1;
  int seed_index = 0;
  std::vector<double> targets;
  std::vector<double> model_sparsity;  // after each pruning step, of the whole model
  // On the evaluation subset: right after each pruning step and at the end of the training
  // that follows it.
  std::vector<double> pruned_accuracy, trained_accuracy;
  std::vector<train::EpochStats> epochs;
  train::EvalResult test;  // the full test set at the end
  double seconds = 0.0;
};

std::string join(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + format_g(v[i]);
  return s;
}

std::vector<double> cumulative_targets(double s, int k, const std::string& spacing) {
  if (spacing == "geometric") return prune::iterative_targets(s, k);
  std::vector<double> t(k);
  for (int j = 1; j <= k; ++j) t[j - 1] = s * double(j) / double(k);
  t.back() = s;
  return t;
}

VariantResult run_variant(const GradualArgs& a, const nn::Model& dense,
                          const train::DataSource& src, const data::Dataset& eval_set, double s,
                          int k, int seed_index, uint64_t seed) {
  auto t0 = std::chrono::steady_clock::now();
  VariantResult r;
  r.sparsity = s;
  r.steps = k;
  r.seed_index = seed_index;
  r.targets = cumulative_targets(s, k, a.spacing);
  nn::Model m = prune::copy_model(dense);
  auto opt = train::make_optimizer(a.optim, m.parameters());

  data::DataLoader probe(src.data.train, a.batch_size);
  const int64_t total = int64_t(a.epochs) * int64_t(probe.num_batches());
  std::vector<int64_t> at(k);  // optimizer step after which pruning step j happens
  for (int j = 0; j < k; ++j) at[j] = int64_t(j) * total / k;

  prune::PruneSpec spec;
  spec.criterion = prune::Criterion::Magnitude;
  spec.granularity = prune::Granularity::Element;
  spec.scope = prune::Scope::Global;
  spec.seed = seed;
  auto prune_step = [&](int j) {
    spec.amount = r.targets[j];
    prune::prune_model(m, spec);
    r.model_sparsity.push_back(prune::sparsity(m));
    r.pruned_accuracy.push_back(train::evaluate(m, eval_set, train::Task::Classification).accuracy);
  };
  auto end_phase = [&] {
    r.trained_accuracy.push_back(
        train::evaluate(m, eval_set, train::Task::Classification).accuracy);
  };

  prune_step(0);
  int next = 1;
  train::FitConfig fc;
  fc.epochs = a.epochs;
  fc.batch_size = a.batch_size;
  fc.seed = seed;
  fc.after_step = [&](int64_t t) {
    if (next < k && t == at[next]) {
      end_phase();
      prune_step(next++);
    }
  };
  r.epochs = train::fit(m, *opt, src.data.train, data::Dataset{}, train::Task::Classification, fc);
  SPRIG_CHECK(next == k, "gradual-vs-instant: only ", next, " of ", k, " pruning steps ran");
  end_phase();
  r.test = train::evaluate(m, src.data.test, train::Task::Classification);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string run_name(double s, int k, uint64_t seed) {
  return percent_label(s) + " in " + std::to_string(k) + (k == 1 ? " step" : " steps") + ", seed " +
         std::to_string(seed);
}

void log_variant(track::Tracker& tr, const std::string& id, const GradualArgs& a,
                 const VariantResult& r, uint64_t seed) {
  tr.log_param(id, "sparsity", format_g(r.sparsity));
  tr.log_param(id, "steps", std::to_string(r.steps));
  tr.log_param(id, "seed", std::to_string(seed));
  tr.log_param(id, "targets", join(r.targets));
  tr.log_param(id, "epochs", std::to_string(a.epochs));
  tr.log_param(id, "variant", r.steps == 1 ? "instant" : "gradual");
  for (size_t j = 0; j < r.targets.size(); ++j) {
    int64_t step = int64_t(j) + 1;
    tr.log_metric(id, "target_sparsity", r.targets[j], step);
    tr.log_metric(id, "model_sparsity", r.model_sparsity[j], step);
    tr.log_metric(id, "pruned_accuracy", r.pruned_accuracy[j], step);
    tr.log_metric(id, "trained_accuracy", r.trained_accuracy[j], step);
  }
  for (const train::EpochStats& e : r.epochs)
    tr.log_metric(id, "train_loss", e.train_loss, e.epoch);
  tr.log_metric(id, "test_accuracy", r.test.accuracy);
  tr.log_metric(id, "test_loss", r.test.loss);
  tr.log_metric(id, "final_model_sparsity", r.model_sparsity.back());
  tr.log_metric(id, "seconds", r.seconds);
}

// Accuracies of one (sparsity, steps) cell over the seeds, in seed order.
using Cells = std::map<std::pair<double, int>, std::vector<double>>;

std::string finding(const GradualArgs& a, const Cells& acc) {
  int base = a.steps.front();
  for (int k : a.steps) base = std::min(base, k);
  int most = base;
  for (int k : a.steps) most = std::max(most, k);
  if (most == base) return "Only one step count was run, so there is nothing to compare.";
  std::string base_name = base == 1 ? "instant pruning" : std::to_string(base) + " steps";
  std::string out;
  int ahead = 0, behind = 0, within = 0;
  double best_gain = -1e9, best_s = 0.0;
  int best_k = base;
  for (double s : a.sparsities) {
    const auto& b = acc.at({s, base});
    // The best step count at this sparsity, by mean accuracy over the seeds.
    int top = base;
    for (int k : a.steps)
      if (spread(acc.at({s, k})).mean > spread(acc.at({s, top})).mean) top = k;
    std::vector<double> diff;  // paired over seeds: gradual minus base, in pp
    const auto& g = acc.at({s, most});
    for (size_t i = 0; i < b.size(); ++i) diff.push_back(100.0 * (g[i] - b[i]));
    Spread d = spread(diff);
    // With one seed there is no spread: the sign decides.
    bool clear = d.n == 1 ? d.mean != 0.0 : std::fabs(d.mean) > d.std;
    if (!clear)
      ++within;
    else if (d.mean > 0)
      ++ahead;
    else
      ++behind;
    for (int k : a.steps) {
      if (k == base) continue;
      double gain = 100.0 * (spread(acc.at({s, k})).mean - spread(b).mean);
      if (gain > best_gain) best_gain = gain, best_s = s, best_k = k;
    }
    char spread_text[64];
    if (d.n == 1)
      std::snprintf(spread_text, sizeof spread_text, "one seed");
    else
      std::snprintf(spread_text, sizeof spread_text, "paired std %.1f pp%s", d.std,
                    clear ? "" : ", within the spread");
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "At %s sparsity, %d steps reach %.2f%% against %.2f%% for %s (%s, %s); the "
                  "best step count there is %d. ",
                  percent_label(s).c_str(), most, 100.0 * spread(g).mean, 100.0 * spread(b).mean,
                  base_name.c_str(), signed_pp(d.mean).c_str(), spread_text, top);
    out += buf;
  }
  char buf[400];
  if (a.seeds == 1)
    std::snprintf(buf, sizeof buf,
                  "Overall (one seed, so no spread to judge by), %d steps beat %s at %d of %zu "
                  "sparsities, fell behind it at %d and tied at %d. The largest ",
                  most, base_name.c_str(), ahead, a.sparsities.size(), behind, within);
  else
    std::snprintf(buf, sizeof buf,
                  "Overall, %d steps beat %s by more than the seed-to-seed spread at %d of %zu "
                  "sparsities, fell behind it at %d and were within the spread at %d. The largest ",
                  most, base_name.c_str(), ahead, a.sparsities.size(), behind, within);
  out += buf;
  std::snprintf(
      buf, sizeof buf, "mean gain of any gradual schedule over %s was %s (%d steps at %s).",
      base_name.c_str(), signed_pp(best_gain).c_str(), best_k, percent_label(best_s).c_str());
  return out + buf;
}

// The parent run's parameters: everything needed to rerun the comparison.
void log_setup(track::Tracker& tr, const std::string& parent, const GradualArgs& a,
               const std::string& dataset, const train::DataSource& src,
               const data::Dataset& eval_set, int64_t total) {
  tr.set_tag(parent, "seed", "003");
  tr.set_tag(parent, "parent_metric_steps", "sparsity x 1000");
  tr.log_param(parent, "model", a.model);
  tr.log_param(parent, "dataset", dataset);
  tr.log_param(parent, "sparsities", join(a.sparsities));
  std::string steps_list;
  for (int k : a.steps) steps_list += (steps_list.empty() ? "" : ",") + std::to_string(k);
  tr.log_param(parent, "steps", steps_list);
  tr.log_param(parent, "seeds", std::to_string(a.seeds));
  tr.log_param(parent, "first_seed", std::to_string(a.common.seed));
  tr.log_param(parent, "epochs", std::to_string(a.epochs));
  tr.log_param(parent, "optimizer_steps_per_variant", std::to_string(total));
  tr.log_param(parent, "pretrain_epochs", std::to_string(a.pretrain_epochs));
  tr.log_param(parent, "train_samples", std::to_string(src.data.train.size()));
  tr.log_param(parent, "eval_samples", std::to_string(eval_set.size()));
  tr.log_param(parent, "batch_size", std::to_string(a.batch_size));
  tr.log_param(parent, "optimizer", a.optim.name);
  tr.log_param(parent, "lr", format_g(a.optim.lr));
  tr.log_param(parent, "spacing", a.spacing);
  tr.log_param(parent, "criterion", "global magnitude, element");
}

struct Trials {
  Cells acc;                      // test accuracy per (sparsity, steps), in seed order
  std::vector<double> dense_acc;  // the dense starting point's, per seed
};

// What a run prints and logs for one seed's dense model and for one variant.
void report_dense(track::Tracker& tr, const std::string& parent, const GradualArgs& a, int i,
                  double accuracy) {
  tr.log_metric(parent, "dense_test_accuracy", accuracy, i);
  std::printf("seed %llu: dense model after %d epochs: test accuracy %.2f%%\n",
              (unsigned long long)(a.common.seed + uint64_t(i)), a.pretrain_epochs,
              100.0 * accuracy);
  std::fflush(stdout);
}

void report_variant(track::Tracker& tr, const std::string& parent, const GradualArgs& a,
                    const VariantResult& r) {
  const uint64_t seed = a.common.seed + uint64_t(r.seed_index);
  RunScope child(tr, tr.start_run(run_name(r.sparsity, r.steps, seed), parent));
  log_variant(tr, child.id(), a, r, seed);
  child.end();
  std::printf("  %-28s test accuracy %.2f%%  model sparsity %.2f%%  %.1f s\n",
              run_name(r.sparsity, r.steps, seed).c_str(), 100.0 * r.test.accuracy,
              100.0 * r.model_sparsity.back(), r.seconds);
  std::fflush(stdout);
}

nn::Model pretrain(const GradualArgs& a, const train::DataSource& src, int i) {
  const uint64_t seed = a.common.seed + uint64_t(i);
  nn::Model dense = nn::build_model(a.model, src.input_shape, seed);
  auto opt = train::make_optimizer(a.optim, dense.parameters());
  train::FitConfig fc;
  fc.epochs = a.pretrain_epochs;
  fc.batch_size = a.batch_size;
  fc.seed = seed;
  train::fit(dense, *opt, src.data.train, data::Dataset{}, train::Task::Classification, fc);
  return dense;
}

// A variant's result as JSON, for sending between ranks.
nlohmann::json variant_to_json(const VariantResult& r) {
  return {{"sparsity", r.sparsity},
          {"steps", r.steps},
          {"seed_index", r.seed_index},
          {"targets", r.targets},
          {"model_sparsity", r.model_sparsity},
          {"pruned_accuracy", r.pruned_accuracy},
          {"trained_accuracy", r.trained_accuracy},
          {"epochs", epochs_to_json(r.epochs)},
          {"test", eval_to_json(r.test)},
          {"seconds", r.seconds}};
}
VariantResult variant_from_json(const nlohmann::json& j) {
  VariantResult r;
  r.sparsity = j["sparsity"];
  r.steps = j["steps"];
  r.seed_index = j["seed_index"];
  r.targets = j["targets"].get<std::vector<double>>();
  r.model_sparsity = j["model_sparsity"].get<std::vector<double>>();
  r.pruned_accuracy = j["pruned_accuracy"].get<std::vector<double>>();
  r.trained_accuracy = j["trained_accuracy"].get<std::vector<double>>();
  r.epochs = epochs_from_json(j["epochs"]);
  r.test = eval_from_json(j["test"]);
  r.seconds = j["seconds"];
  return r;
}

// Every seed's dense model, then every (sparsity, steps) variant from it, each a child run,
// spread over comm's ranks (mpirun -np N sprig experiment gradual-vs-instant; one process is a
// group of one): rank i % N pretrains seed i's dense model alone and sends it to every rank;
// trial t (seeds in order, then sparsities, then steps) runs alone on rank t % N. Rank 0 logs
// and prints the results in one process's order, each as soon as it has it. A trial computes
// exactly what it computes in one process, so the tables are the same on any number of ranks.
// `tr` is null on the other ranks.
Trials run_trials(const dist::Comm& comm, track::Tracker* tr, const std::string& parent,
                  const GradualArgs& a, const train::DataSource& src,
                  const data::Dataset& eval_set) {
  auto mine = [&](int64_t index) { return index % comm.size() == comm.rank(); };
  std::vector<nn::Model> dense(size_t(a.seeds));
  Trials out;
  out.dense_acc.assign(size_t(a.seeds), 0.0);
  for (int i = 0; i < a.seeds; ++i) {
    if (!mine(i)) continue;
    dense[size_t(i)] = pretrain(a, src, i);
    out.dense_acc[size_t(i)] =
        train::evaluate(dense[size_t(i)], src.data.test, train::Task::Classification).accuracy;
  }
  for (int i = 0; i < a.seeds && comm.size() > 1; ++i) {
    const int owner = i % comm.size();
    // Built from the seed on every rank (the same structure), then overwritten by the owner's.
    if (!mine(i)) dense[size_t(i)] = nn::build_model(a.model, src.input_shape, a.common.seed + i);
    train::broadcast_model(comm, dense[size_t(i)], nullptr, owner);
    comm.broadcast_value(out.dense_acc[size_t(i)], owner);
  }
  struct Cell {
    int seed_index;
    double sparsity;
    int steps;
  };
  std::vector<Cell> cells;
  for (int i = 0; i < a.seeds; ++i)
    for (double s : a.sparsities)
      for (int k : a.steps) cells.push_back({i, s, k});
  const int64_t per_seed = int64_t(a.sparsities.size() * a.steps.size());
  spread_tasks(
      comm, int64_t(cells.size()),
      [&](int64_t t) {
        const Cell& c = cells[size_t(t)];
        return variant_to_json(run_variant(a, dense[size_t(c.seed_index)], src, eval_set,
                                           c.sparsity, c.steps, c.seed_index,
                                           a.common.seed + uint64_t(c.seed_index)));
      },
      [&](int64_t t, const nlohmann::json& j) {
        const Cell& c = cells[size_t(t)];
        if (tr && t % per_seed == 0)
          report_dense(*tr, parent, a, c.seed_index, out.dense_acc[size_t(c.seed_index)]);
        const VariantResult r = variant_from_json(j);
        if (tr) report_variant(*tr, parent, a, r);
        out.acc[{c.sparsity, c.steps}].push_back(r.test.accuracy);
      });
  return out;
}

// Summary table, charts and finding: into the report, the parent run and the terminal.
void write_report(Context& ctx, const std::string& parent, const GradualArgs& a,
                  const std::string& dataset, const train::DataSource& src, int64_t total,
                  const Trials& trials) {
  track::Tracker& tr = *ctx.tracker;
  const Cells& acc = trials.acc;
  const int base = a.steps.front();
  const std::string base_name =
      base == 1 ? std::string("instant") : std::to_string(base) + " steps";
  report::Table table;
  table.title = "Test accuracy (%) over " + std::to_string(a.seeds) +
                " seeds: mean, sample standard deviation, min and max";
  table.header = {"sparsity", "steps", "mean", "std", "min", "max", "vs " + base_name};
  report::Chart chart;
  chart.id = "accuracy";
  chart.title = "Test accuracy vs final sparsity (mean ± std over seeds)";
  chart.x_label = "final sparsity (%)";
  chart.y_label = "test accuracy (%)";
  report::Chart gain;
  gain.id = "gain";
  gain.title = "Difference from " + base_name + ", paired by seed";
  gain.x_label = "final sparsity (%)";
  gain.y_label = "accuracy difference (pp)";
  // Per seed, in pp: the variant minus the base step count.
  auto paired_diff = [&](double s, int k) {
    std::vector<double> diff;
    for (size_t i = 0; i < acc.at({s, k}).size(); ++i)
      diff.push_back(100.0 * (acc.at({s, k})[i] - acc.at({s, base})[i]));
    return spread(diff);
  };
  for (int k : a.steps) {
    report::Series se{k == 1 ? "1 step (instant)" : std::to_string(k) + " steps", {}, {}, {}};
    report::Series ge = se;
    for (double s : a.sparsities) {
      Spread sp = spread(acc.at({s, k}));
      Spread d = paired_diff(s, k);
      se.x.push_back(100.0 * s);
      se.y.push_back(100.0 * sp.mean);
      se.y_err.push_back(100.0 * sp.std);
      ge.x.push_back(100.0 * s);
      ge.y.push_back(d.mean);
      ge.y_err.push_back(d.std);
      int64_t step = std::llround(1000.0 * s);
      tr.log_metric(parent, "mean_test_accuracy_steps_" + std::to_string(k), sp.mean, step);
      tr.log_metric(parent, "std_test_accuracy_steps_" + std::to_string(k), sp.std, step);
    }
    chart.series.push_back(se);
    gain.series.push_back(ge);  // the base too (at 0), so colours match the first chart
  }
  for (double s : a.sparsities)
    for (int k : a.steps) {
      Spread sp = spread(acc.at({s, k}));
      table.rows.push_back({percent_label(s), std::to_string(k), report::fmt(100.0 * sp.mean),
                            report::fmt(100.0 * sp.std), report::fmt(100.0 * sp.min),
                            report::fmt(100.0 * sp.max),
                            k == base ? "" : signed_pp(paired_diff(s, k).mean)});
    }
  report::Table dense_table;
  dense_table.title = "Dense starting points (full test set)";
  dense_table.header = {"seed", "test accuracy (%)"};
  for (int i = 0; i < a.seeds; ++i)
    dense_table.rows.push_back(
        {std::to_string(a.common.seed + uint64_t(i)), report::fmt(100.0 * trials.dense_acc[i])});
  std::string found = finding(a, acc);

  report::Report& rep = ctx.report;
  rep.add_heading("Gradual versus instant pruning (seed 003)");
  char setup[2048];
  std::snprintf(
      setup, sizeof setup,
      "Model %s on %s (%lld training samples, %lld test samples). Per seed a dense model is "
      "trained for %d epochs; every variant starts from it and trains for %d epochs (%lld "
      "optimizer steps, the same for all), pruning by global magnitude in k steps spread "
      "evenly over that budget (the first before training) to %s cumulative targets, so "
      "the last pruning step leaves 1/k of the budget to recover from it. "
      "Optimizer %s, lr %g, batch %lld. Accuracy is on the full test set after the last "
      "step; spread (error bars) is the sample standard deviation over %d seeds "
      "(%llu..%llu), and differences are taken per seed before averaging.",
      a.model.c_str(), dataset.c_str(), (long long)src.data.train.size(),
      (long long)src.data.test.size(), a.pretrain_epochs, a.epochs, (long long)total,
      a.spacing.c_str(), a.optim.name.c_str(), double(a.optim.lr), (long long)a.batch_size, a.seeds,
      (unsigned long long)a.common.seed,
      (unsigned long long)(a.common.seed + uint64_t(a.seeds) - 1));
  rep.add_paragraph(setup);
  rep.add_heading("Finding");
  rep.add_paragraph(found);
  rep.add_paragraph(
      "Seed 003 (PyTorch, its own model and data) reported that pruning 8 times beat pruning "
      "once in a single run, but that over repeated runs instant pruning did better on "
      "average, with gradual pruning about equal only at 95% sparsity. It gives its results "
      "as plots only, without numbers.");
  rep.add_chart(chart);
  rep.add_chart(gain);
  rep.add_table(table);
  rep.add_table(dense_table);

  std::printf("\n%s\n%s\n%s\n", report::format_table(table).c_str(),
              report::format_table(dense_table).c_str(), found.c_str());
  tr.log_text(parent, "finding.txt", found + "\n");
  finish(ctx, parent);
}

int run_gradual(GradualArgs a) {
  check_distinct("--sparsities", a.sparsities);
  check_distinct("--steps", a.steps);
  std::sort(a.sparsities.begin(), a.sparsities.end());
  std::sort(a.steps.begin(), a.steps.end());
  std::string dataset = a.common.dataset.empty() ? "fashion-mnist" : a.common.dataset;
  SPRIG_CHECK(dataset != "friedman1",
              "--dataset friedman1: gradual-vs-instant compares classification accuracy; use "
              "fashion-mnist or mnist (sprig experiment friedman covers friedman1)");
  train::DataSource src = train::load_data_source(dataset, a.common.data_dir, a.common.seed);
  if (a.common.train_samples > 0)
    src.data.train = data::take(src.data.train, a.common.train_samples);
  if (a.common.test_samples > 0) src.data.test = data::take(src.data.test, a.common.test_samples);
  data::Dataset eval_set =
      a.eval_samples > 0 ? data::take(src.data.test, a.eval_samples) : src.data.test;
  data::DataLoader probe(src.data.train, a.batch_size);
  const int64_t total = int64_t(a.epochs) * int64_t(probe.num_batches());
  SPRIG_CHECK(total >= a.steps.back(), "--epochs ", a.epochs, " gives ", total,
              " optimizer steps on ", src.data.train.size(), " samples, fewer than the ",
              a.steps.back(), " pruning steps asked for by --steps");
  // Fails on a bad --model before any run is started.
  nn::build_model(a.model, src.input_shape, a.common.seed);

  // Under mpirun the trials are spread over the ranks; rank 0 alone tracks, reports and prints.
  const dist::Comm& comm = dist::Comm::world();
  if (!comm.is_root()) {
    use_threads(a.common.threads);
    run_trials(comm, nullptr, "", a, src, eval_set);
    return 0;
  }
  Context ctx("gradual-vs-instant", a.common);
  track::Tracker& tr = *ctx.tracker;
  RunScope parent(tr, tr.start_run("gradual-vs-instant"));
  log_setup(tr, parent.id(), a, dataset, src, eval_set, total);
  if (comm.size() > 1) tr.log_param(parent.id(), "ranks", std::to_string(comm.size()));
  const Trials trials = run_trials(comm, &tr, parent.id(), a, src, eval_set);
  write_report(ctx, parent.id(), a, dataset, src, total, trials);
  parent.end();
  return 0;
}

}  // namespace

Command add_gradual_vs_instant(CLI::App& app) {
  auto a = std::make_shared<GradualArgs>();
  // 48 variants by default: a sixth of Fashion-MNIST keeps the run to minutes on 2 cores
  // (--train-samples 60000 for all of it).
  a->common.train_samples = 10000;
  add_common_flags(app, a->common);
  app.add_option("--model", a->model, "zoo model or spec")->capture_default_str();
  app.add_option("--sparsities", a->sparsities, "final sparsities, each in [0, 1)")
      ->delimiter(',')
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--steps", a->steps, "pruning step counts to compare (1 = instant)")
      ->delimiter(',')
      ->check(IntRange(1, 10000))
      ->capture_default_str();
  app.add_option("--seeds", a->seeds, "repetitions, with seeds --seed, --seed + 1, ...")
      ->check(IntRange(1, 10000))
      ->capture_default_str();
  app.add_option("--epochs", a->epochs, "training epochs of every variant (the budget)")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  app.add_option("--pretrain-epochs", a->pretrain_epochs, "epochs of the dense model per seed")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--eval-samples", a->eval_samples,
                 "test samples for the per-step accuracies (0 = all; the final accuracy uses "
                 "the whole test set, or --test-samples)")
      ->check(IntRange(int64_t(0), int64_t(1) << 40))
      ->capture_default_str();
  app.add_option("--spacing", a->spacing,
                 "cumulative targets: geometric (each step prunes the same fraction of what is "
                 "left) or linear")
      ->check(CLI::IsMember({"geometric", "linear"}))
      ->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "batch size")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--optimizer", a->optim.name, "sgd, adam or adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  app.add_option("--lr", a->optim.lr, "learning rate")
      ->check(FiniteNumber & CLI::Range(0.0, 1e3))
      ->capture_default_str();
  return [a] { return run_gradual(*a); };
}

}  // namespace sprig::app::experiments
