// The sprig command line: one binary, one subcommand per job.
#include <csignal>
#include <cstdio>
#include <map>

#include "apps/commands.h"
#include "dist/comm.h"
#include "kernels/error.h"

// Under mpirun a rank that fails must take the others down with it: they may be waiting for it
// in a collective, and would wait forever.
static int fail(const char* kind, const char* what) {
  const sprig::dist::Comm* world = &sprig::dist::Comm::self();
  try {
    world = &sprig::dist::Comm::world();
  } catch (const sprig::Error&) {  // MPI itself failed to start: this process is alone
  }
  if (world->size() == 1) {
    std::fprintf(stderr, "sprig: %s: %s\n", kind, what);
    return 1;
  }
  std::fprintf(stderr, "sprig: %s on rank %d of %d: %s\n", kind, world->rank(), world->size(),
               what);
  std::fflush(stderr);
  world->abort(1);
}

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) the kernel would kill us with SIGXFSZ halfway through a
  // save, leaving the temp file behind; ignored, write() fails with EFBIG instead and the save
  // reports it, removes the temp file and leaves the existing file alone.
  std::signal(SIGXFSZ, SIG_IGN);
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
  add("quantize", "quantize a checkpoint to int8 (calibrated), packed as an inference model file",
      sprig::app::add_quantize_command);
  add("run", "evaluate a packed model file: test accuracy and throughput",
      sprig::app::add_run_command);
  add("plan", "print each layer's measured dense / sparse times and the choice",
      sprig::app::add_plan_command);
  add("predict", "run a model (sprig or PyTorch safetensors weights) on an input batch",
      sprig::app::add_predict_command);
  add("export", "export a checkpoint as an ONNX model file", sprig::app::add_export_command);
  add("experiment", "run a seed write-up as an experiment: MLflow runs, HTML report, tables",
      sprig::app::add_experiment_command);
  if (argc > 1 && argv[1][0] != '-') {
    const std::vector<CLI::App*> commands_in_order = app.get_subcommands({});
    bool known = false;
    for (CLI::App* c : commands_in_order) known = known || c->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr, "sprig: error: unknown command '%s' (expected %s)\n", argv[1],
                   sprig::app::or_list(commands_in_order).c_str());
      return 2;
    }
    // For a command with its own subcommands (bench) CLI11 would only say "A subcommand is
    // required", without naming the word it did not know.
    CLI::App* cmd = app.get_subcommand(argv[1]);
    auto subs = cmd->get_subcommands([](CLI::App*) { return true; });
    if (!subs.empty() && argc > 2 && argv[2][0] != '-') {
      bool sub_known = false;
      for (CLI::App* s : subs) sub_known = sub_known || s->get_name() == argv[2];
      if (!sub_known) {
        std::fprintf(stderr, "sprig: error: unknown %s '%s' (expected %s)\n", argv[1], argv[2],
                     sprig::app::or_list(subs).c_str());
        return 2;
      }
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
    // Starts MPI when a launcher started this process. A command that does not split its work
    // over the ranks would run once per rank, every rank writing the same files.
    const sprig::dist::Comm& world = sprig::dist::Comm::world();
    for (auto& [sub, run] : commands) {
      if (world.size() == 1 || !sub->parsed() || sub->get_name() == "train" ||
          sub->get_name() == "prune")
        continue;
      std::string name = sub->get_name();
      for (CLI::App* s : sub->get_subcommands()) name += " " + s->get_name();
      SPRIG_CHECK(name == "experiment gradual-vs-instant" || name == "experiment iterative" ||
                      name == "experiment l1-vs-fpgm",
                  "sprig ", name,
                  " runs as one process: start it without mpirun (sprig train, sprig prune and "
                  "sprig experiment gradual-vs-instant, iterative and l1-vs-fpgm run across "
                  "ranks)");
    }
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const sprig::Error& e) {
    return fail("error", e.what());
  } catch (const std::bad_alloc&) {
    return fail("error", "out of memory");
  } catch (const std::exception& e) {
    return fail("internal error", e.what());
  }
  return 1;
}
