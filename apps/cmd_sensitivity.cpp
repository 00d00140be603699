// sprig sensitivity: prune each layer alone at a range of amounts and report how much the test
// metric drops, to choose per-layer amounts (as NNI's and Distiller's sensitivity analyses).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/commands.h"
#include "nn/checkpoint.h"
#include "train/prune_driver.h"

namespace sprig::app {

namespace {
struct SensitivityArgs {
  std::string in, method = "magnitude", granularity = "element", dataset, data_dir;
  std::vector<double> amounts = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
  double max_drop = 1.0;  // percentage points of accuracy, or MSE units
  int64_t limit_test = -1;
  int criterion_batches = 10, threads = 0;
  uint64_t seed = 0;
  bool json = false;
};

// A weight's value and mask, and its layer's bias, to undo a trial pruning.
struct Saved {
  nn::ParameterPtr p;
  Tensor value;
  std::shared_ptr<nn::Mask> mask;
};

int run_sensitivity(const SensitivityArgs& a) {
  use_threads(a.threads);
  nn::Checkpoint ck = nn::load_checkpoint(a.in);
  nn::Model& model = ck.model;
  std::string dataset;
  train::DataSource src =
      train::load_data_for(ck.model, ck.metadata, a.in, a.dataset, a.data_dir, a.seed, &dataset);
  if (a.limit_test >= 0) src.data.test = data::take(src.data.test, a.limit_test);
  bool cls = src.task == train::Task::Classification;
  // Drop in the metric's reporting unit: accuracy in percentage points, MSE as is.
  auto metric = [&](const train::EvalResult& r) { return cls ? 100.0 * r.accuracy : r.loss; };
  auto drop = [&](double base, double now) { return cls ? base - now : now - base; };

  prune::PruneSpec spec;
  spec.criterion = prune::parse_criterion(a.method);
  spec.granularity = nn::parse_granularity(a.granularity);
  if (spec.granularity == prune::Granularity::NM)
    throw Error("sensitivity needs an amount to sweep; N:M fixes it (use element or a structure)");
  spec.seed = a.seed;
  auto scores = train::prepare_criterion(model, src, spec, a.criterion_batches, a.seed);
  double base = metric(train::evaluate(model, src.data.test, src.task));

  nlohmann::json layers = nlohmann::json::array();
  std::printf("%s %s sensitivity of %s (baseline %s %.4f), drop per amount:\n", a.method.c_str(),
              a.granularity.c_str(), a.in.c_str(), cls ? "accuracy %" : "mse", base);
  std::printf("%-12s", "layer");
  for (double amt : a.amounts) std::printf(" %7.0f%%", 100.0 * amt);
  std::printf("  suggest\n");
  for (auto& [name, weight] : prune::prunable_weights(model, spec)) {
    std::vector<Saved> saved;
    std::string bias_name = name.substr(0, name.rfind('.')) + ".bias";
    for (auto& [n, p] : model.named_parameters())
      if (n == name || n == bias_name) saved.push_back({p, p->value.clone(), p->mask});
    prune::PruneSpec one = spec;
    one.include = {name};
    nlohmann::json drops = nlohmann::json::array();
    double suggest = 0.0;
    bool within = true;
    std::printf("%-12s", name.c_str());
    for (double amt : a.amounts) {
      one.amount = amt;
      prune::prune_model(model, one, scores);
      double d = drop(base, metric(train::evaluate(model, src.data.test, src.task)));
      for (Saved& s : saved) {
        s.p->value.copy_(s.value);
        s.p->mask = s.mask;
      }
      drops.push_back({{"amount", amt}, {"drop", d}});
      within = within && d <= a.max_drop;
      if (within) suggest = amt;
      std::printf(" %8.3f", d);
    }
    std::printf("  %6.0f%%\n", 100.0 * suggest);
    layers.push_back({{"name", name}, {"drops", drops}, {"suggested_amount", suggest}});
  }
  std::printf(
      "suggest = the largest amount whose drop stays within %g %s at that amount and all "
      "smaller ones\n",
      a.max_drop, cls ? "percentage points" : "(mse)");
  if (a.json) {
    nlohmann::json j = {{"in", a.in},
                        {"method", a.method},
                        {"granularity", a.granularity},
                        {"baseline", base},
                        {"metric", cls ? "test_accuracy_percent" : "test_mse"},
                        {"max_drop", a.max_drop},
                        {"layers", layers}};
    print_json_line(j);
  }
  return 0;
}
}  // namespace

Command add_sensitivity_command(CLI::App& app) {
  auto a = std::make_shared<SensitivityArgs>();
  app.add_option("--in,model", a->in, "checkpoint (.safetensors)")->check(NonEmptyPath)->required();
  app.add_option("--method", a->method, "magnitude, gradient, taylor, random, l1, l2 or fpgm")
      ->check(CLI::IsMember({"magnitude", "gradient", "taylor", "random", "l1", "l2", "fpgm"}))
      ->capture_default_str();
  app.add_option("--granularity", a->granularity, "element, filter, neuron, channel or block")
      ->capture_default_str();
  app.add_option("--amounts", a->amounts, "amounts to try, e.g. 0.1,0.3,0.5")
      ->delimiter(',')
      ->check(FiniteNumber & CLI::Range(0.0, 1.0));
  app.add_option("--max-drop", a->max_drop,
                 "largest acceptable drop for the suggestion (accuracy points, or MSE)")
      ->check(FiniteNumber & CLI::Range(0.0, 1e9))
      ->capture_default_str();
  app.add_option("--limit-test", a->limit_test, "evaluate on the first N test samples only")
      ->check(IntRange(int64_t(1), int64_t(1) << 40));
  app.add_option("--criterion-batches", a->criterion_batches, "batches for data-driven criteria")
      ->check(IntRange(1, 1000000))
      ->capture_default_str();
  add_checkpoint_data_flags(app, a->dataset, a->data_dir);
  app.add_option("--seed", a->seed, "seed")->check(SeedNumber)->capture_default_str();
  app.add_option("--threads", a->threads, "OpenMP threads")->check(IntRange(0, 1024));
  app.add_flag("--json", a->json, "print one JSON object with the table as the last line");
  return [a] { return run_sensitivity(*a); };
}

}  // namespace sprig::app
