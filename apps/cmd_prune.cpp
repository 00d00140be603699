// sprig prune: prune a checkpoint with a criterion, granularity, scope and schedule, fine-tune,
// optionally shrink, and save the result.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "engine/atomic_file.h"
#include "engine/text.h"
#include "nn/checkpoint.h"
#include "nn/summary.h"
#include "train/prune_driver.h"

namespace sprig::app {

namespace {
struct PruneArgs {
  std::string in, out, method = "magnitude", granularity = "element", scope = "layer";
  std::string group_reduce = "mean";
  std::string schedule = "oneshot", block = "1x4", dataset, data_dir;
  train::LrScheduleConfig lr;
  std::string taylor_variant = "reference";
  double amount = 0.5, threshold = -1.0, flops_reduction = -1.0;
  int64_t count = -1, min_keep = 1, batch_size = 64, limit_train = -1, limit_test = -1, rewind = -1;
  std::vector<std::string> layers, exclude;
  int finetune_epochs = 0, criterion_batches = 10, threads = 0;
  train::OptimizerConfig optim{"adam", 1e-3f};
  std::string device = "cpu";
  uint64_t seed = 0;
  bool shrink = false, augment = false, json = false, quiet = false;
};

// Filter pruning: per dependency group, which channels went and why a group kept them all.
std::string format_group_report(const prune::PruneReport& r) {
  if (r.groups.empty()) return "";
  std::string out = "dependency groups (channels pruned / prunable):\n";
  for (const prune::GroupReport& g : r.groups) {
    if (g.units == 0) continue;  // the model's outputs
    std::string layers;
    for (const std::string& l : g.layers) layers += (layers.empty() ? "" : " ") + l;
    char head[160];
    std::snprintf(head, sizeof head, "  %-16s %4lld / %-4lld ", g.name.c_str(), (long long)g.pruned,
                  (long long)g.units);
    out += head;
    if (!g.kept.empty()) {
      out += "kept: " + g.kept;
    } else {
      out += "removed";
      const size_t shown = std::min<size_t>(g.removed.size(), 8);
      for (size_t i = 0; i < shown; ++i) out += " " + g.removed[i];
      if (g.removed.size() > shown)
        out += " and " + std::to_string(g.removed.size() - shown) + " more";
    }
    out += "\n    layers: " + layers + "\n";
  }
  return out;
}

nlohmann::json group_report_json(const prune::PruneReport& r) {
  nlohmann::json groups = nlohmann::json::array();
  for (const prune::GroupReport& g : r.groups)
    groups.push_back({{"name", g.name},
                      {"layers", g.layers},
                      {"units", g.units},
                      {"pruned", g.pruned},
                      {"removed", g.removed},
                      {"kept", g.kept}});
  return groups;
}

nlohmann::json eval_json(const train::EvalResult& r, train::Task task) {
  if (task == train::Task::Classification) return r.accuracy;
  return r.loss;
}

int run_prune(const PruneArgs& a) {
  check_output_path("--out", a.out, {{"--in", a.in}});
  use_threads(a.threads);
  const Device device = device_from_flag(a.device);
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  ck.model.to(device);
  std::string dataset;
  train::DataSource src =
      train::load_data_for(ck.model, ck.metadata, a.in, a.dataset, a.data_dir, a.seed, &dataset);
  if (a.limit_train >= 0) src.data.train = data::take(src.data.train, a.limit_train);
  if (a.limit_test >= 0) src.data.test = data::take(src.data.test, a.limit_test);

  train::PrunePlan plan;
  plan.spec.criterion = prune::parse_criterion(a.method);
  plan.spec.granularity = nn::parse_granularity(a.granularity);
  if (plan.spec.granularity == prune::Granularity::NM)
    std::tie(plan.spec.n, plan.spec.m) = prune::parse_nm(a.granularity);
  std::tie(plan.spec.block_rows, plan.spec.block_cols) = parse_block_flag(a.block);
  plan.spec.scope = a.scope == "global" ? prune::Scope::Global : prune::Scope::Layer;
  plan.spec.amount = a.amount;
  plan.spec.count = a.count;
  plan.spec.threshold = a.threshold;
  plan.spec.min_keep = a.min_keep;
  plan.spec.group_reduce = prune::parse_group_reduce(a.group_reduce);
  plan.spec.include = a.layers;
  plan.spec.exclude = a.exclude;
  plan.spec.seed = a.seed;
  plan.schedule = prune::parse_schedule(a.schedule, a.amount);
  SPRIG_CHECK(plan.spec.granularity != prune::Granularity::NM ||
                  plan.schedule.kind == prune::ScheduleSpec::OneShot,
              "--granularity ", a.granularity,
              " fixes the sparsity at 1 - N/M in one step: use "
              "--schedule oneshot (--amount, --count and --threshold do not apply)");
  plan.finetune_epochs = a.finetune_epochs;
  plan.criterion_batches = a.criterion_batches;
  plan.taylor_variant = a.taylor_variant == "paper" ? prune::TaylorVariant::Paper
                                                    : prune::TaylorVariant::ReferenceCode;
  plan.optim = a.optim;
  plan.fit.batch_size = a.batch_size;
  plan.fit.seed = a.seed;
  // Each fine-tuning phase runs finetune_epochs epochs (agp: the whole run), so the schedule
  // is checked against that now rather than after the first pruning step.
  plan.fit.epochs = a.finetune_epochs;
  train::apply_lr_schedule(a.lr, plan.fit);
  if (a.augment) train::enable_augment(src, plan.fit);
  // Under mpirun: scoring and fine-tuning run data-parallel over the ranks, and rank 0 alone
  // prints and writes.
  const dist::Comm& comm = dist::Comm::world();
  plan.fit.comm = &comm;
  plan.fit.log_lines = !a.quiet && !a.json && comm.is_root();
  plan.shrink = a.shrink;
  plan.flops_reduction = a.flops_reduction;
  if (a.rewind >= 0) {
    SPRIG_CHECK(plan.schedule.kind != prune::ScheduleSpec::Polynomial,
                "--rewind applies to oneshot and iterative schedules, not agp (gradual pruning "
                "keeps training the same weights)");
    auto it = ck.metadata.find("rewind_step");
    SPRIG_CHECK(!ck.rewind.empty() && it != ck.metadata.end(), a.in,
                " holds no rewind snapshot: train it with sprig train --rewind-step ", a.rewind);
    SPRIG_CHECK(it->second == std::to_string(a.rewind), "--rewind ", a.rewind, ": ", a.in,
                " holds the weights of step ", it->second, " only");
    plan.rewind = ck.rewind;
  }

  train::validate_plan(ck.model, plan);
  bool human = !a.json && !a.quiet && comm.is_root();
  if (human)
    std::printf("pruning %s: %s %s, %s scope, %s %g, schedule %s, %d fine-tuning epochs\n",
                a.in.c_str(), a.method.c_str(), a.granularity.c_str(), a.scope.c_str(),
                a.flops_reduction >= 0 ? "FLOPs reduction"
                : a.count >= 0         ? "count"
                                       : "amount",
                a.flops_reduction >= 0 ? a.flops_reduction
                : a.count >= 0         ? double(a.count)
                                       : a.amount,
                a.schedule.c_str(), a.finetune_epochs);
  int64_t flops_before = nn::summarize(ck.model).flops;
  train::PruneOutcome r = train::run_prune_plan(ck.model, src, plan);
  bool cls = src.task == train::Task::Classification;
  // The final amount: --amount, or what the FLOPs target chose.
  const double amount = r.steps.empty() ? a.amount : r.steps.back().target;
  if (human) {
    for (size_t k = 0; k < r.steps.size(); ++k) {
      const train::PruneStep& s = r.steps[k];
      std::printf(
          "step %zu: target %.4f  model sparsity %.2f%%  %s after pruning %.4f, after fine-tuning "
          "%.4f\n",
          k + 1, s.target, 100.0 * s.sparsity, cls ? "accuracy" : "mse",
          cls ? s.after_prune.accuracy : s.after_prune.loss,
          cls ? s.after_finetune.accuracy : s.after_finetune.loss);
    }
    std::printf("%s", format_group_report(r.last_report).c_str());
    std::printf("%s", nn::format_summary(nn::summarize(ck.model)).c_str());
    std::printf("params %lld -> %lld (%lld nonzero, %.2f%% sparsity); %s %.4f -> %.4f\n",
                (long long)r.params_before, (long long)r.params_after, (long long)r.nonzero_after,
                100.0 * r.sparsity, cls ? "test accuracy" : "test mse",
                cls ? r.before.accuracy : r.before.loss, cls ? r.after.accuracy : r.after.loss);
  }
  if (!a.out.empty() && comm.is_root()) {
    std::map<std::string, std::string> meta = ck.metadata;
    for (const char* k : {"format", "spec", "input_shape", "rewind_step"}) meta.erase(k);
    for (auto it = meta.begin(); it != meta.end();)
      it = it->first.rfind("mask.", 0) == 0 ? meta.erase(it) : std::next(it);
    meta["dataset"] = dataset;
    meta["created_by"] = "sprig prune";
    meta["pruned_from"] = printable(a.in);  // metadata is UTF-8; a path is bytes
    meta["prune"] = a.method + " " + a.granularity + " " + a.scope + " amount " +
                    std::to_string(amount) + " schedule " + a.schedule;
    nn::save_checkpoint(a.out, ck.model, meta);
    if (human) std::printf("saved %s\n", a.out.c_str());
  }
  if (a.json && comm.is_root()) {
    nlohmann::json steps = nlohmann::json::array();
    for (const train::PruneStep& s : r.steps)
      steps.push_back({{"target", s.target},
                       {"sparsity", s.sparsity},
                       {"after_prune", eval_json(s.after_prune, src.task)},
                       {"after_finetune", eval_json(s.after_finetune, src.task)}});
    std::string metric = cls ? "test_accuracy" : "test_mse";
    // Seconds per fine-tuning epoch of the last step: the pruned model's training speed.
    std::vector<double> finetune_seconds;
    if (!r.steps.empty())
      for (const train::EpochStats& e : r.steps.back().epochs)
        finetune_seconds.push_back(e.seconds);
    nlohmann::json j = {{metric + "_before", eval_json(r.before, src.task)},
                        {metric + "_after", eval_json(r.after, src.task)},
                        {"params_before", r.params_before},
                        {"params_after", r.params_after},
                        {"nonzero_after", r.nonzero_after},
                        {"sparsity", r.sparsity},
                        {"flops_before", flops_before},
                        {"flops_after", nn::summarize(ck.model).flops},
                        {"finetune_epoch_seconds", finetune_seconds},
                        {"amount", amount},
                        {"method", a.method},
                        {"granularity", a.granularity},
                        {"scope", a.scope},
                        {"schedule", a.schedule},
                        {"spec_after", ck.model.spec},
                        {"groups", group_report_json(r.last_report)},
                        {"steps", steps}};
    if (a.flops_reduction >= 0) j["flops_reduction"] = a.flops_reduction;
    if (!a.out.empty()) j["out"] = a.out;
    print_json_line(j);
  }
  return 0;
}
}  // namespace

Command add_prune_command(CLI::App& app) {
  auto a = std::make_shared<PruneArgs>();
  app.add_option("--in,model", a->in, "checkpoint to prune (.safetensors)")
      ->check(NonEmptyPath)
      ->required();
  app.add_option("--out", a->out, "write the pruned model here")->check(NonEmptyPath);
  app.add_option("--method", a->method,
                 "magnitude, gradient, taylor, random, l1, l2, fpgm or bn-scale (|gamma| of the "
                 "BatchNorm on each channel, network slimming; filter granularity)")
      ->check(CLI::IsMember(
          {"magnitude", "gradient", "taylor", "random", "l1", "l2", "fpgm", "bn-scale"}))
      ->capture_default_str();
  app.add_option("--group-reduce", a->group_reduce,
                 "filter pruning: a channel made by several layers (a residual stream) scores "
                 "the mean or the sum of their scores")
      ->check(CLI::IsMember({"mean", "sum"}))
      ->capture_default_str();
  app.add_option("--granularity", a->granularity,
                 "element, filter, neuron, channel, block or N:M (e.g. 2:4)")
      ->capture_default_str();
  app.add_option("--block", a->block, "block size for --granularity block, ROWSxCOLS")
      ->capture_default_str();
  app.add_option("--scope", a->scope, "layer (each layer to the amount) or global")
      ->check(CLI::IsMember({"layer", "global"}))
      ->capture_default_str();
  CLI::Option* amount =
      app.add_option("--amount", a->amount, "fraction of units pruned in the end, in [0, 1)")
          ->check(FiniteNumber & FractionBelowOne)
          ->capture_default_str();
  app.add_option("--taylor-variant", a->taylor_variant,
                 "Taylor filter scores: reference (Gildenblat's code, as seed 002) or paper "
                 "(Molchanov et al. 2017, eq. 8, per example)")
      ->check(CLI::IsMember({"reference", "paper"}))
      ->capture_default_str();
  app.add_option("--flops-reduction", a->flops_reduction,
                 "filter / channel pruning in one shot: remove at least this fraction of the "
                 "model's FLOPs, choosing the smallest --amount that does (as Torch-Pruning's "
                 "speed-up target), in [0, 1)")
      ->check(FiniteNumber & FractionBelowOne)
      ->excludes(amount);
  // One way to say how much goes: a second one would be silently ignored.
  app.add_option("--count", a->count, "prune this many units instead of --amount")
      ->check(IntRange(int64_t(0), int64_t(1) << 40))
      ->excludes(amount)
      ->excludes("--flops-reduction");
  app.add_option("--threshold", a->threshold, "prune units scoring below T instead of --amount")
      ->check(FiniteNumber & CLI::Range(0.0, 1e30))
      ->excludes(amount)
      ->excludes("--flops-reduction")
      ->excludes("--count");
  app.add_option("--min-keep", a->min_keep,
                 "units each layer (filter pruning: each dependency group) keeps at least")
      ->check(IntRange(int64_t(0), int64_t(1) << 40))
      ->capture_default_str();
  app.add_option("--layers", a->layers, "weights to prune, e.g. 0.weight 2.weight (default: all)")
      ->delimiter(',');
  app.add_option("--exclude", a->exclude, "weights not to prune")->delimiter(',');
  app.add_option("--schedule", a->schedule,
                 "oneshot, iterative:STEPS, iterative:S1,S2,..., or agp:BEGIN,END,FREQ")
      ->capture_default_str();
  app.add_option("--finetune-epochs", a->finetune_epochs,
                 "fine-tuning epochs after each pruning step (the whole run for agp)")
      ->check(IntRange(0, 100000))
      ->capture_default_str();
  app.add_option("--criterion-batches", a->criterion_batches,
                 "batches of training data for gradient and Taylor criteria")
      ->check(IntRange(1, 1000000))
      ->capture_default_str();
  app.add_option("--rewind", a->rewind,
                 "lottery ticket: reset surviving weights to those of this training step "
                 "(stored by sprig train --rewind-step) after each pruning step")
      ->check(IntRange(int64_t(0), int64_t(1) << 40));
  app.add_flag("--shrink", a->shrink, "remove zeroed filters and neurons physically");
  app.add_option("--optimizer", a->optim.name, "fine-tuning optimizer: sgd, adam or adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  app.add_option("--lr", a->optim.lr, "fine-tuning learning rate")
      ->check(FiniteNumber & CLI::Range(0.0, 1e3))
      ->capture_default_str();
  app.add_option("--momentum", a->optim.momentum, "SGD momentum")
      ->check(FiniteNumber & CLI::Range(0.0, 1.0));
  app.add_option("--weight-decay", a->optim.weight_decay,
                 "fine-tuning L2 penalty (decoupled for adamw; BatchNorm scales and shifts "
                 "exempt, as sprig train)")
      ->check(FiniteNumber & CLI::Range(0.0, 1.0));
  add_lr_schedule_flags(app, a->lr);
  app.add_flag("--augment", a->augment,
               "fine-tune on randomly cropped (4-pixel black padding) and flipped samples");
  app.add_option("--batch-size", a->batch_size, "fine-tuning batch size")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  add_checkpoint_data_flags(app, a->dataset, a->data_dir);
  app.add_option("--limit-train", a->limit_train, "use only the first N training samples")
      ->check(IntRange(int64_t(0), int64_t(1) << 40));
  app.add_option("--limit-test", a->limit_test, "evaluate on the first N test samples only")
      ->check(IntRange(int64_t(1), int64_t(1) << 40));
  app.add_option("--seed", a->seed, "seed for random scores and shuffling")
      ->check(SeedNumber)
      ->capture_default_str();
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  add_device_flag(app, a->device);
  app.add_flag("--json", a->json, "print one JSON object with the results as the last line");
  app.add_flag("--quiet", a->quiet, "print nothing but errors (and --json)");
  return [a] { return run_prune(*a); };
}

}  // namespace sprig::app
