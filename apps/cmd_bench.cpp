// sprig bench: timing commands that print medians (after a warm-up) as JSON, so anyone can
// compare sprig with their own libraries. Each sub-command lives in its own cmd_bench_*.cpp.
#include <memory>
#include <vector>

#include "apps/commands.h"

namespace sprig::app {

Command add_bench_command(CLI::App& app) {
  app.require_subcommand(1);
  auto subs = std::make_shared<std::vector<std::pair<CLI::App*, Command>>>();
  auto add = [&](const char* name, const char* help, Command (*adder)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    subs->push_back({sub, adder(*sub)});
  };
  // Sub-commands register here, one line each:
  add("gemm", "time cpu::gemm (median GFLOP/s after a warm-up)", add_bench_gemm_command);
  add("conv", "time cpu::conv2d forward and backward (median ms and GFLOP/s)",
      add_bench_conv_command);
  add("linear", "dense gemm vs sparse kernel, one masked Linear", add_bench_linear_command);
  add("model", "a checkpoint dense vs its auto inference plan", add_bench_model_command);
  add("sparse-gpu", "cuBLAS vs cuSPARSE vs sprig's SpMM kernels on one GPU",
      add_bench_sparse_gpu_command);
  (void)add;
  return [subs] {
    for (auto& [sub, run] : *subs)
      if (sub->parsed()) return run();
    return 2;
  };
}

}  // namespace sprig::app
