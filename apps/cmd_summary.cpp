// sprig summary: the per-layer table of a checkpoint or of a spec.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "nn/checkpoint.h"
#include "nn/summary.h"

namespace sprig::app {

namespace {
struct SummaryArgs {
  std::string in, model, input_shape = "1,28,28";
  bool json = false;
};

int run_summary(const SummaryArgs& a) {
  SPRIG_CHECK(a.in.empty() != a.model.empty(),
              "summary needs exactly one of --in CHECKPOINT or --model SPEC");
  nn::Model model =
      a.in.empty() ? nn::build_model(a.model, parse_shape_flag("--input-shape", a.input_shape), 0)
                   : nn::load_checkpoint(a.in).model;
  nn::ModelSummary s = nn::summarize(model);
  if (a.json) {
    nlohmann::json j = nn::summary_json(s);
    j["spec"] = model.spec;
    print_json_line(j);
  } else {
    std::printf("%s\n%s", model.spec.c_str(), nn::format_summary(s).c_str());
  }
  return 0;
}
}  // namespace

Command add_summary_command(CLI::App& app) {
  auto a = std::make_shared<SummaryArgs>();
  app.add_option("--in,checkpoint", a->in, "checkpoint (.safetensors)");
  app.add_option("--model", a->model, "zoo name or model spec (instead of --in)");
  app.add_option("--input-shape", a->input_shape,
                 "per-sample input shape for --model, e.g. 1,28,28")
      ->capture_default_str();
  app.add_flag("--json", a->json, "print one JSON object with params, nonzero, flops and layers");
  return [a] { return run_summary(*a); };
}

}  // namespace sprig::app
