// sprig train: train a zoo model or a spec on a dataset, report accuracy, save a checkpoint;
// with --resume, continue an interrupted run from a training checkpoint.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "dist/device_comm.h"
#include "engine/atomic_file.h"
#include "kernels/cpu/threads.h"
#include "nn/checkpoint.h"
#include "nn/summary.h"
#include "prune/schedule.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace sprig::app {

namespace {
struct TrainArgs {
  train::TrainConfig cfg;
  std::string out, resume, device = "cpu";
  int64_t save_every = 0, stop_at_step = -1;
  bool checkpoint_every_epoch = false, json = false, quiet = false, check_replicas = false;
  bool sync_bn = false;
  CLI::App* app = nullptr;  // to tell flags given on the command line from defaults
};

bool given(const TrainArgs& a, const char* flag) {
  return a.app->count(flag) > 0;
}

// The config of a resumed run: the checkpoint's, with --epochs, --data-dir and --threads
// allowed to change; any other training flag must agree with the checkpoint.
train::TrainConfig resumed_config(const TrainArgs& a, const train::ResumePoint& rp) {
  const train::TrainConfig& was = rp.state.config;
  const train::TrainConfig& now = a.cfg;
  auto conflict = [&](const char* flag, bool differs, const auto& value, const auto& stored) {
    SPRIG_CHECK(!given(a, flag) || !differs, flag, " ", value, " conflicts with ", a.resume,
                ", which was trained with ", stored,
                " (a resumed run keeps its training config; only --epochs, --data-dir and "
                "--threads may change)");
  };
  bool same_model = now.model == was.model;
  if (given(a, "--model") && !same_model) {
    try {  // a zoo name and its spec, or two spellings of one spec, are the same model
      same_model = nn::build_model(now.model, rp.checkpoint.model.input_shape, 0).spec ==
                   rp.checkpoint.model.spec;
    } catch (const Error&) {
    }
  }
  conflict("--model", !same_model, "'" + now.model + "'", "'" + was.model + "'");
  conflict("--dataset", now.dataset != was.dataset, now.dataset, was.dataset);
  conflict("--optimizer", now.optim.name != was.optim.name, now.optim.name, was.optim.name);
  conflict("--lr", now.optim.lr != was.optim.lr, now.optim.lr, was.optim.lr);
  conflict("--lr-schedule", now.lr.name != was.lr.name, now.lr.name, was.lr.name);
  conflict("--lr-step-size", now.lr.step_size != was.lr.step_size, now.lr.step_size,
           was.lr.step_size);
  auto list = [](const std::vector<int>& v) {
    std::string s;
    for (int m : v) s += (s.empty() ? "" : ",") + std::to_string(m);
    return s.empty() ? std::string("none") : s;
  };
  conflict("--lr-milestones", now.lr.milestones != was.lr.milestones, list(now.lr.milestones),
           list(was.lr.milestones));
  conflict("--lr-gamma", now.lr.gamma != was.lr.gamma, now.lr.gamma, was.lr.gamma);
  conflict("--warmup-epochs", now.lr.warmup_epochs != was.lr.warmup_epochs, now.lr.warmup_epochs,
           was.lr.warmup_epochs);
  conflict("--augment", now.augment != was.augment, "", "--augment off");
  conflict("--bn-weight-decay", now.optim.bn_weight_decay != was.optim.bn_weight_decay, "",
           "--bn-weight-decay off");
  conflict("--bn-l1", now.bn_l1 != was.bn_l1, now.bn_l1, was.bn_l1);
  conflict("--momentum", now.optim.momentum != was.optim.momentum, now.optim.momentum,
           was.optim.momentum);
  conflict("--nesterov", now.optim.nesterov != was.optim.nesterov, "", "--nesterov off");
  conflict("--weight-decay", now.optim.weight_decay != was.optim.weight_decay,
           now.optim.weight_decay, was.optim.weight_decay);
  conflict("--batch-size", now.batch_size != was.batch_size, now.batch_size, was.batch_size);
  conflict("--seed", now.seed != was.seed, now.seed, was.seed);
  conflict("--limit-train", now.limit_train != was.limit_train, now.limit_train, was.limit_train);
  conflict("--rewind-step", now.rewind_step != was.rewind_step, now.rewind_step, was.rewind_step);
  train::TrainConfig cfg = was;
  if (given(a, "--epochs")) cfg.epochs = now.epochs;
  if (given(a, "--data-dir")) cfg.data_dir = now.data_dir;
  if (given(a, "--threads")) cfg.threads = now.threads;
  if (given(a, "--limit-test")) cfg.limit_test = now.limit_test;  // changes only what is reported
  const train::FitPosition& pos = rp.state.position;
  int done = pos.epoch + (pos.step_in_epoch > 0 ? 1 : 0);
  SPRIG_CHECK(cfg.epochs >= done, "--epochs ", cfg.epochs, " is fewer than the ", done, " epochs ",
              a.resume, " has already started");
  return cfg;
}

int run_train(const TrainArgs& a) {
  const bool resuming = !a.resume.empty();
  train::ResumePoint rp;
  train::TrainConfig cfg = a.cfg;
  if (resuming) {
    rp = train::load_training_checkpoint(a.resume);
    cfg = resumed_config(a, rp);
  }
  const std::string out = a.out.empty() && resuming ? a.resume : a.out;
  // Writing back to the --resume file is how a run continues, so it is no input to protect.
  check_output_path("--out", out, {});
  SPRIG_CHECK(!out.empty() || (a.save_every == 0 && !a.checkpoint_every_epoch),
              "--save-every and --checkpoint-every-epoch need --out (where to write)");
  SPRIG_CHECK(!out.empty() || a.stop_at_step < 0,
              "--stop-at-step needs --out (the checkpoint to resume from)");
  // Under mpirun every rank runs this: data-parallel over the ranks, rank 0 alone prints and
  // writes files.
  const dist::Comm& comm = dist::Comm::world();
  const bool root = comm.is_root();
  SPRIG_CHECK(!a.sync_bn || comm.size() > 1,
              "--sync-bn synchronises BatchNorm across the ranks of a data-parallel run: start "
              "it with mpirun -np N (N >= 2)");
  SPRIG_CHECK(!a.check_replicas || comm.size() > 1,
              "--check-replicas compares the ranks of a data-parallel run: start it with mpirun "
              "-np N (N >= 2)");
  use_threads(cfg.threads);
  cfg.threads = cpu::num_threads();  // recorded, so a resumed run uses the same count
  const Device device = device_from_flag(a.device);
  train::FitConfig fc;
  fc.epochs = cfg.epochs;
  train::apply_lr_schedule(cfg.lr, fc);  // bad schedule flags stop the run before any data is read

  train::DataSource src = train::load_data_source(cfg.dataset, cfg.data_dir, cfg.seed);
  if (cfg.limit_train >= 0) src.data.train = data::take(src.data.train, cfg.limit_train);
  SPRIG_CHECK(src.data.train.size() > 0, "no training samples (--limit-train ", cfg.limit_train,
              ")");
  if (cfg.limit_test >= 0) src.data.test = data::take(src.data.test, cfg.limit_test);
  if (cfg.augment) train::enable_augment(src, fc);
  nn::Model model;
  if (resuming) {
    model = rp.checkpoint.model;
    SPRIG_CHECK(model.input_shape == src.input_shape, a.resume, " expects inputs ",
                to_string(model.input_shape), " but ", cfg.dataset, " has ",
                to_string(src.input_shape));
  } else {
    model = nn::build_model(cfg.model, src.input_shape, cfg.seed);
  }
  train::apply_train_config(cfg, model, fc);  // before any output: flag errors first
  auto opt = train::make_optimizer(cfg.optim, model.parameters());
  if (resuming) train::restore_optimizer(*opt, rp, a.resume);
  model.to(device);  // with the restored optimizer state
  train::FitPosition pos = rp.state.position;
  const std::vector<train::EpochStats> earlier = rp.state.history;

  bool human = !a.json && !a.quiet && root;
  if (human) {
    std::string where =
        device.is_cpu() ? std::to_string(cpu::num_threads()) + " threads" : device.str();
    if (comm.size() > 1)
      where = std::to_string(comm.size()) + " ranks x " + where +
              (device.is_cpu()                 ? ""
               : dist::DeviceComm::available() ? " (gradients summed by NCCL)"
                                               : " (gradients summed through the host)");
    std::printf("model %s on %s (%lld train, %lld test samples), %s lr %g, batch %lld, %s\n",
                cfg.model.c_str(), src.name.c_str(), (long long)src.data.train.size(),
                (long long)src.data.test.size(), opt->name().c_str(), cfg.optim.lr,
                (long long)cfg.batch_size, where.c_str());
    std::printf("%s", nn::format_summary(nn::summarize(model)).c_str());
    if (resuming)
      std::printf("resuming %s after epoch %d, step %lld (global step %lld) of %d epochs\n",
                  a.resume.c_str(), pos.epoch, (long long)pos.step_in_epoch,
                  (long long)pos.global_step, cfg.epochs);
  }
  fc.stop_at_step = a.stop_at_step;
  // Lottery-ticket rewinding point: the weights after this many steps go into the checkpoint.
  prune::WeightSnapshot rewind;
  if (resuming) rewind.values = rp.checkpoint.rewind;
  if (cfg.rewind_step == 0 && !resuming) rewind = prune::snapshot_weights(model);
  if (cfg.rewind_step > 0)
    fc.after_step = [&](int64_t step) {
      if (step == cfg.rewind_step) rewind = prune::snapshot_weights(model);
    };
  fc.progress_bar = human && stdout_is_terminal();
  fc.log_lines = !a.quiet && root;
  fc.comm = &comm;
  fc.check_replicas = a.check_replicas;
  fc.sync_bn = a.sync_bn;

  auto save = [&](const train::FitPosition& at, const std::vector<train::EpochStats>& now) {
    if (!root) return;
    train::TrainState st{cfg, at, opt->steps, earlier};
    st.history.insert(st.history.end(), now.begin(), now.end());
    const train::EpochStats* last = st.history.empty() ? nullptr : &st.history.back();
    double metric = !last                                     ? 0.0
                    : src.task == train::Task::Classification ? last->test.accuracy
                                                              : last->test.loss;
    std::map<std::string, std::string> meta = {{"dataset", cfg.dataset},
                                               {"epochs", std::to_string(cfg.epochs)},
                                               {"optimizer", opt->name()},
                                               {"seed", std::to_string(cfg.seed)},
                                               {"test_metric", std::to_string(metric)},
                                               {"created_by", "sprig train"}};
    if (cfg.rewind_step >= 0) meta["rewind_step"] = std::to_string(cfg.rewind_step);
    train::save_training_checkpoint(out, model, st, meta, rewind.values);
  };
  fc.checkpoint_every_steps = a.save_every;
  fc.checkpoint_every_epoch = a.checkpoint_every_epoch;
  if (!out.empty()) fc.checkpoint = save;

  auto fresh = train::fit(model, *opt, src.data.train, src.data.test, src.task, fc, pos);
  const bool finished = pos.epoch == cfg.epochs;
  SPRIG_CHECK(!finished || cfg.rewind_step < 0 || !rewind.values.empty(), "--rewind-step ",
              cfg.rewind_step, " was never reached (the run had fewer steps)");
  std::vector<train::EpochStats> history = earlier;
  history.insert(history.end(), fresh.begin(), fresh.end());

  double train_seconds = 0.0;
  std::vector<double> epoch_seconds, test_metric;
  for (auto& e : history) {
    train_seconds += e.seconds;
    epoch_seconds.push_back(e.seconds);
    test_metric.push_back(src.task == train::Task::Classification ? e.test.accuracy : e.test.loss);
  }
  // A run stopped mid-epoch has no evaluation of its current weights yet.
  train::EvalResult final_test = history.empty() || pos.step_in_epoch > 0
                                     ? train::evaluate(model, src.data.test, src.task, 256, comm)
                                     : history.back().test;
  if (!out.empty()) {
    save(pos, fresh);
    if (human) std::printf("saved %s\n", out.c_str());
  }
  if (human) {
    if (!finished)
      std::printf(
          "stopped at global step %lld (epoch %d, step %lld); continue with: sprig train "
          "--resume %s\n",
          (long long)pos.global_step, pos.epoch + 1, (long long)pos.step_in_epoch, out.c_str());
    if (src.task == train::Task::Classification)
      std::printf("test accuracy %.2f%%  (%.1f s training, %d epochs)\n",
                  100.0 * final_test.accuracy, train_seconds, pos.epoch);
    else
      std::printf("test mse %.4f  (%.1f s training, %d epochs)\n", final_test.loss, train_seconds,
                  pos.epoch);
  }
  if (a.json && root) {
    nlohmann::json j = {{"model", cfg.model},
                        {"spec", model.spec},
                        {"dataset", cfg.dataset},
                        {"epochs", cfg.epochs},
                        {"epochs_done", pos.epoch},
                        {"global_step", pos.global_step},
                        {"finished", finished},
                        {"batch_size", cfg.batch_size},
                        {"optimizer", opt->name()},
                        {"lr", cfg.optim.lr},
                        {"lr_schedule", cfg.lr.name},
                        {"warmup_epochs", cfg.lr.warmup_epochs},
                        {"augment", cfg.augment},
                        {"threads", cpu::num_threads()},
                        {"ranks", comm.size()},
                        {"device", device.str()},
                        {"seed", cfg.seed},
                        {"params", model.num_parameters()},
                        {"train_samples", src.data.train.size()},
                        {"test_samples", src.data.test.size()},
                        {"train_seconds", train_seconds},
                        {"epoch_seconds", epoch_seconds},
                        {"final_train_loss", history.empty() ? 0.0 : history.back().train_loss},
                        {"test_loss", final_test.loss}};
    if (src.task == train::Task::Classification) {
      j["test_accuracy"] = final_test.accuracy;
      j["test_accuracy_per_epoch"] = test_metric;
    } else {
      j["test_mse"] = final_test.loss;
      j["test_mse_per_epoch"] = test_metric;
    }
    if (resuming) j["resumed_from"] = a.resume;
    if (!out.empty()) j["out"] = out;
    print_json_line(j);
  }
  return 0;
}
}  // namespace

Command add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  a->app = &app;
  train::TrainConfig& c = a->cfg;
  app.add_option("--model", c.model, "zoo name (mlp, cnn2, lenet5) or a model spec")
      ->capture_default_str();
  app.add_option("--dataset", c.dataset, "fashion-mnist, mnist, cifar10 or friedman1")
      ->check(dataset_validator())
      ->capture_default_str();
  app.add_option("--data-dir", c.data_dir,
                 "directory with the dataset's files (default for fashion-mnist: "
                 "/usr/share/datasets/fashion-mnist; for cifar10: "
                 "/usr/share/datasets/cifar-10-batches-bin, holding data_batch_1.bin .. "
                 "data_batch_5.bin and test_batch.bin)")
      ->check(NonEmptyPath);
  app.add_flag("--augment", c.augment,
               "random crop (4-pixel black padding) and horizontal flip of each training "
               "sample (image datasets)");
  app.add_option("--epochs", c.epochs, "training epochs (with --resume: the new total)")
      ->check(IntRange(0, train::limits::kMaxEpochs))
      ->capture_default_str();
  app.add_option("--batch-size", c.batch_size, "samples per step")
      ->check(IntRange(1, train::limits::kMaxBatch))
      ->capture_default_str();
  app.add_option("--lr", c.optim.lr, "learning rate")
      ->check(FiniteNumber & CLI::Range(0.0, train::limits::kMaxLr))
      ->capture_default_str();
  add_lr_schedule_flags(app, c.lr);
  app.add_option("--optimizer", c.optim.name, "sgd, adam or adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  app.add_option("--momentum", c.optim.momentum, "SGD momentum")
      ->check(FiniteNumber & CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_flag("--nesterov", c.optim.nesterov, "SGD with Nesterov momentum");
  app.add_option("--weight-decay", c.optim.weight_decay, "L2 penalty (decoupled for adamw)")
      ->check(FiniteNumber & CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_flag("--bn-weight-decay", c.optim.bn_weight_decay,
               "apply --weight-decay to BatchNorm scales and shifts too (default: not)");
  app.add_option("--bn-l1", c.bn_l1,
                 "network slimming: L1 penalty LAMBDA on BatchNorm scales (adds LAMBDA x "
                 "sign(gamma) to their gradients)")
      ->check(FiniteNumber & CLI::Range(0.0, 1.0));
  app.add_option("--seed", c.seed, "seed for initialisation and shuffling")
      ->check(SeedNumber)
      ->capture_default_str();
  app.add_option("--threads", c.threads,
                 "OpenMP threads (0: OpenMP's default; with --resume: the run's count)")
      ->check(IntRange(0, train::limits::kMaxThreads))
      ->capture_default_str();
  app.add_option("--limit-train", c.limit_train, "use only the first N training samples")
      ->check(IntRange(0, train::limits::kMaxCount));
  app.add_option("--limit-test", c.limit_test,
                 "evaluate on only the first N test samples (quick runs and benchmarks)")
      ->check(IntRange(1, train::limits::kMaxCount));
  app.add_option("--out", a->out,
                 "write the trained model with its training state to this checkpoint "
                 "(.safetensors; default with --resume: the resumed file)")
      ->check(NonEmptyPath);
  app.add_option("--rewind-step", c.rewind_step,
                 "also store the weights after this many steps (0: the initial weights) for "
                 "lottery-ticket rewinding with sprig prune --rewind")
      ->check(IntRange(0, train::limits::kMaxCount));
  app.add_option("--resume", a->resume,
                 "continue the run saved in this training checkpoint (its config applies; "
                 "--epochs may extend it)")
      ->check(NonEmptyPath);
  app.add_option("--save-every", a->save_every,
                 "also write --out every N steps, so an interrupted run can be resumed")
      ->check(IntRange(1, train::limits::kMaxCount));
  app.add_flag("--checkpoint-every-epoch", a->checkpoint_every_epoch,
               "also write --out after every epoch");
  app.add_option("--stop-at-step", a->stop_at_step,
                 "stop once the run has done N steps, as if interrupted, and save a checkpoint "
                 "that --resume continues")
      ->check(IntRange(0, train::limits::kMaxCount));
  app.add_flag("--sync-bn", a->sync_bn,
               "under mpirun: BatchNorm normalises with the whole global batch's statistics, "
               "summed across ranks (default: each rank's shard's)");
  app.add_flag("--check-replicas", a->check_replicas,
               "under mpirun: compare every rank's weights, masks and optimizer state after "
               "each epoch and stop on the first difference");
  add_device_flag(app, a->device);
  app.add_flag("--json", a->json, "print one JSON object with the results as the last line");
  app.add_flag("--quiet", a->quiet, "print nothing but errors (and --json)");
  return [a] { return run_train(*a); };
}

}  // namespace sprig::app
