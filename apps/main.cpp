// The sprig command line: one binary, one subcommand per job.
#include <cstdio>
#include <map>

#include "apps/commands.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  CLI::App app{"sprig: a tensor engine with sparsity built in (train, prune, run sparse)"};
  app.require_subcommand(1);
  std::map<CLI::App*, sprig::app::Command> commands;
  auto add = [&](const char* name, const char* help, auto adder) {
    CLI::App* sub = app.add_subcommand(name, help);
    commands[sub] = adder(*sub);
  };
  add("train", "train a model and optionally save a checkpoint", sprig::app::add_train_command);
  add("eval", "evaluate a checkpoint on a dataset's test split", sprig::app::add_eval_command);
  add("prune", "prune a checkpoint (criterion, granularity, scope, schedule), fine-tune, shrink",
      sprig::app::add_prune_command);
  add("sensitivity", "prune each layer alone at 10..90% and report the accuracy drop",
      sprig::app::add_sensitivity_command);
  add("bench", "time sprig's kernels and models (median of repeated runs, JSON)",
      sprig::app::add_bench_command);
  add("summary", "print a model's layers, parameters, sparsity and FLOPs",
      sprig::app::add_summary_command);
  add("pack", "pack a checkpoint into a sparse inference model file (per-layer format)",
      sprig::app::add_pack_command);
  add("run", "evaluate a packed model file: test accuracy and throughput",
      sprig::app::add_run_command);
  add("plan", "print each layer's measured dense / sparse times and the choice",
      sprig::app::add_plan_command);
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (auto& kv : commands) known = known || kv.first->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr,
                   "sprig: error: unknown command '%s' (expected train, eval, prune, sensitivity, "
                   "summary, bench, pack, run or plan)\n",
                   argv[1]);
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "sprig: error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const sprig::Error& e) {
    std::fprintf(stderr, "sprig: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "sprig: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sprig: internal error: %s\n", e.what());
    return 1;
  }
  return 1;
}
