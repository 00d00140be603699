// sprig experiment NAME: the seed write-ups as commands (apps/experiments/experiment.h).
#include <memory>
#include <vector>

#include "apps/experiments/experiment.h"
#include "kernels/error.h"

namespace sprig::app {

Command add_experiment_command(CLI::App& app) {
  auto subs = std::make_shared<std::vector<std::pair<CLI::App*, Command>>>();
  auto add = [&](const char* name, const char* help, Command (*adder)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    subs->push_back({sub, adder(*sub)});
  };
  add("iterative",
      "seed 000: train a base model, then Bayesian search over the amount of iterative "
      "magnitude pruning (nested MLflow runs)",
      experiments::add_iterative);
  add("l1-vs-fpgm", "seed 001: L1-norm vs FPGM filter pruning at 50% and 75%, shrunk, fine-tuned",
      experiments::add_l1_vs_fpgm);
  add("taylor", "seed 002: Taylor filter pruning of cnn2 (37.5% per layer), shrunk, fine-tuned",
      experiments::add_taylor);
  add("gradual-vs-instant",
      "seed 003: pruning at once vs in 2, 4, 8 steps with training between, over seeds",
      experiments::add_gradual_vs_instant);
  add("friedman", "seed 004: pruning a regression network on Friedman #1",
      experiments::add_friedman);
  add("pipeline",
      "the main job: train cnn2, Taylor filter pruning + shrink + fine-tune, prune the "
      "classifier, pack for sparse inference, run it, one report",
      experiments::add_pipeline);
  add("prune-quantize",
      "dense -> pruned (90% global magnitude, fine-tuned) -> pruned + int8 (calibrated, optional "
      "QAT): accuracy, file size and latency in one table",
      experiments::add_prune_quantize);
  // An unknown name would otherwise only get CLI11's "A subcommand is required": catch it as a
  // hidden positional (subcommand names are matched first) and name it in the error. Extras
  // are allowed here only, after the subcommands were added, so they keep rejecting theirs.
  auto unknown = std::make_shared<std::vector<std::string>>();
  app.add_option("name", *unknown)->group("");
  app.require_subcommand(0, 1);
  app.allow_extras();
  return [subs, unknown] {
    for (auto& [sub, run] : *subs)
      if (sub->parsed()) return run();
    std::vector<CLI::App*> apps;
    for (auto& [sub, run] : *subs) apps.push_back(sub);
    const std::string names = or_list(apps);
    if (!unknown->empty())
      throw Error("unknown experiment '" + unknown->front() + "' (expected " + names + ")");
    throw Error("name an experiment: " + names + " (see sprig experiment --help)");
  };
}

}  // namespace sprig::app
