// sprig eval: accuracy (or MSE) of a checkpoint on a dataset's test split.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "nn/checkpoint.h"
#include "train/trainer.h"

namespace sprig::app {

namespace {
struct EvalArgs {
  std::string in, dataset, data_dir;
  int64_t batch_size = 256;
  int64_t limit_test = -1;  // -1: the whole test split
  int threads = 0;
  std::string device = "cpu";
  bool json = false;
};

int run_eval(const EvalArgs& a) {
  use_threads(a.threads);
  const Device device = device_from_flag(a.device);
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  ck.model.to(device);
  std::string dataset;
  train::DataSource src =
      train::load_data_for(ck.model, ck.metadata, a.in, a.dataset, a.data_dir, 0, &dataset);
  if (a.limit_test >= 0) src.data.test = data::take(src.data.test, a.limit_test);
  train::EvalResult r = train::evaluate(ck.model, src.data.test, src.task, a.batch_size);
  if (a.json) {
    nlohmann::json j = {{"in", a.in},           {"dataset", dataset},
                        {"samples", r.samples}, {"device", device.str()},
                        {"test_loss", r.loss},  {"params", ck.model.num_parameters()}};
    if (src.task == train::Task::Classification)
      j["test_accuracy"] = r.accuracy;
    else
      j["test_mse"] = r.loss;
    print_json_line(j);
  } else if (src.task == train::Task::Classification) {
    std::printf("%s on %s test (%lld samples): accuracy %.2f%%, loss %.4f\n", a.in.c_str(),
                dataset.c_str(), (long long)r.samples, 100.0 * r.accuracy, r.loss);
  } else {
    std::printf("%s on %s test (%lld samples): mse %.4f\n", a.in.c_str(), dataset.c_str(),
                (long long)r.samples, r.loss);
  }
  return 0;
}
}  // namespace

Command add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.add_option("--in,model", a->in, "checkpoint (.safetensors)")->check(NonEmptyPath)->required();
  add_checkpoint_data_flags(app, a->dataset, a->data_dir);
  app.add_option("--batch-size", a->batch_size, "samples per forward pass")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--limit-test", a->limit_test, "evaluate on the first N test samples only")
      ->check(IntRange(int64_t(1), int64_t(1) << 40));
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  add_device_flag(app, a->device);
  app.add_flag("--json", a->json, "print one JSON object");
  return [a] { return run_eval(*a); };
}

}  // namespace sprig::app
