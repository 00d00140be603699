// sprig train: train a zoo model or a spec on a dataset, report accuracy, save a checkpoint.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/trainer.h"
#include "kernels/cpu/threads.h"
#include "nn/checkpoint.h"
#include "nn/summary.h"
#include "prune/schedule.h"

namespace sprig::app {

namespace {
struct TrainArgs {
  std::string model = "cnn2", dataset = "fashion-mnist", data_dir, out, lr_schedule = "constant";
  int epochs = 5;
  int64_t batch_size = 64, limit_train = -1, rewind_step = -1;
  OptimizerConfig optim;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false, quiet = false;
};

int run_train(const TrainArgs& a) {
  if (a.threads > 0) cpu::set_num_threads(a.threads);
  DataSource src = load_data_source(a.dataset, a.data_dir, a.seed);
  if (a.limit_train >= 0) src.data.train = data::take(src.data.train, a.limit_train);
  SPRIG_CHECK(src.data.train.size() > 0, "no training samples (--limit-train ", a.limit_train, ")");
  nn::Model model = nn::build_model(a.model, src.input_shape, a.seed);
  auto opt = make_optimizer(a.optim, model.parameters());

  bool human = !a.json && !a.quiet;
  if (human) {
    std::printf(
        "model %s on %s (%lld train, %lld test samples), %s lr %g, batch %lld, %d threads\n",
        a.model.c_str(), src.name.c_str(), (long long)src.data.train.size(),
        (long long)src.data.test.size(), opt->name().c_str(), a.optim.lr, (long long)a.batch_size,
        cpu::num_threads());
    std::printf("%s", nn::format_summary(nn::summarize(model)).c_str());
  }
  FitConfig fc;
  fc.epochs = a.epochs;
  fc.batch_size = a.batch_size;
  fc.seed = a.seed;
  fc.lr_schedule = parse_lr_schedule(a.lr_schedule);
  // Lottery-ticket rewinding point: the weights after this many steps go into the checkpoint.
  prune::WeightSnapshot rewind;
  if (a.rewind_step == 0) rewind = prune::snapshot_weights(model);
  if (a.rewind_step > 0)
    fc.after_step = [&](int64_t step) {
      if (step == a.rewind_step) rewind = prune::snapshot_weights(model);
    };
  fc.progress_bar = human && stdout_is_terminal();
  fc.log_lines = !a.quiet;
  auto history = fit(model, *opt, src.data.train, src.data.test, src.task, fc);
  SPRIG_CHECK(a.rewind_step < 0 || !rewind.values.empty(), "--rewind-step ", a.rewind_step,
              " was never reached (the run had fewer steps)");

  double train_seconds = 0.0;
  std::vector<double> epoch_seconds, test_metric;
  for (auto& e : history) {
    train_seconds += e.seconds;
    epoch_seconds.push_back(e.seconds);
    test_metric.push_back(src.task == Task::Classification ? e.test.accuracy : e.test.loss);
  }
  EvalResult final_test =
      history.empty() ? evaluate(model, src.data.test, src.task) : history.back().test;
  if (!a.out.empty()) {
    std::map<std::string, std::string> meta = {
        {"dataset", a.dataset},
        {"epochs", std::to_string(a.epochs)},
        {"optimizer", opt->name()},
        {"seed", std::to_string(a.seed)},
        {"test_metric", std::to_string(test_metric.empty() ? 0.0 : test_metric.back())},
        {"created_by", "sprig train"}};
    if (a.rewind_step >= 0) meta["rewind_step"] = std::to_string(a.rewind_step);
    nn::save_checkpoint(a.out, model, meta, rewind.values);
    if (human) std::printf("saved %s\n", a.out.c_str());
  }
  if (human) {
    if (src.task == Task::Classification)
      std::printf("test accuracy %.2f%%  (%.1f s training, %d epochs)\n",
                  100.0 * final_test.accuracy, train_seconds, a.epochs);
    else
      std::printf("test mse %.4f  (%.1f s training, %d epochs)\n", final_test.loss, train_seconds,
                  a.epochs);
  }
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"spec", model.spec},
                        {"dataset", a.dataset},
                        {"epochs", a.epochs},
                        {"batch_size", a.batch_size},
                        {"optimizer", opt->name()},
                        {"lr", a.optim.lr},
                        {"lr_schedule", a.lr_schedule},
                        {"threads", cpu::num_threads()},
                        {"seed", a.seed},
                        {"params", model.num_parameters()},
                        {"train_samples", src.data.train.size()},
                        {"train_seconds", train_seconds},
                        {"epoch_seconds", epoch_seconds},
                        {"final_train_loss", history.empty() ? 0.0 : history.back().train_loss},
                        {"test_loss", final_test.loss}};
    if (src.task == Task::Classification) {
      j["test_accuracy"] = final_test.accuracy;
      j["test_accuracy_per_epoch"] = test_metric;
    } else {
      j["test_mse"] = final_test.loss;
      j["test_mse_per_epoch"] = test_metric;
    }
    if (!a.out.empty()) j["out"] = a.out;
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
}  // namespace

Command add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  app.add_option("--model", a->model, "zoo name (mlp, cnn2, lenet5) or a model spec")
      ->capture_default_str();
  app.add_option("--dataset", a->dataset, "fashion-mnist, mnist or friedman1")
      ->check(CLI::IsMember({"fashion-mnist", "mnist", "friedman1"}))
      ->capture_default_str();
  app.add_option("--data-dir", a->data_dir,
                 "directory with the IDX files (default for fashion-mnist: "
                 "/usr/share/datasets/fashion-mnist)");
  app.add_option("--epochs", a->epochs, "training epochs")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "samples per step")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--lr", a->optim.lr, "learning rate")
      ->check(FiniteNumber & CLI::Range(0.0, 1e3))
      ->capture_default_str();
  app.add_option("--lr-schedule", a->lr_schedule, "constant, or cosine (decay to 0 over the run)")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str();
  app.add_option("--optimizer", a->optim.name, "sgd, adam or adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  app.add_option("--momentum", a->optim.momentum, "SGD momentum")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_flag("--nesterov", a->optim.nesterov, "SGD with Nesterov momentum");
  app.add_option("--weight-decay", a->optim.weight_decay, "L2 penalty (decoupled for adamw)")
      ->check(FiniteNumber & CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", a->seed, "seed for initialisation and shuffling")->capture_default_str();
  app.add_option("--threads", a->threads, "OpenMP threads (0: OpenMP's default)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--limit-train", a->limit_train, "use only the first N training samples")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  app.add_option("--out", a->out, "write the trained model to this checkpoint (.safetensors)");
  app.add_option("--rewind-step", a->rewind_step,
                 "also store the weights after this many steps (0: the initial weights) for "
                 "lottery-ticket rewinding with sprig prune --rewind")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  app.add_flag("--json", a->json, "print one JSON object with the results as the last line");
  app.add_flag("--quiet", a->quiet, "print nothing but errors (and --json)");
  return [a] { return run_train(*a); };
}

}  // namespace sprig::app
