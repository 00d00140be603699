#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "datasets/augment.h"
#include "datasets/cifar10.h"
#include "datasets/dataloader.h"
#include "datasets/friedman.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "nn/layers.h"
#include "train/data_parallel.h"

namespace sprig::train {

const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> names = {"fashion-mnist", "mnist", "cifar10", "friedman1"};
  return names;
}

DataSource load_data_source(const std::string& name, const std::string& data_dir, uint64_t seed) {
  DataSource src;
  src.name = name;
  if (name == "fashion-mnist") {
    src.data = data::load_fashion_mnist(data_dir);
    data::normalize(src.data.train, data::kFashionMnistMean, data::kFashionMnistStd);
    data::normalize(src.data.test, data::kFashionMnistMean, data::kFashionMnistStd);
    src.black = {(0.0f - data::kFashionMnistMean) * (1.0f / data::kFashionMnistStd)};
  } else if (name == "mnist") {
    SPRIG_CHECK(!data_dir.empty(),
                "--dataset mnist needs --data-dir DIR holding the four "
                "MNIST files (train-images-idx3-ubyte[.gz], ...)");
    src.data = data::load_mnist_dir(data_dir, "mnist");
    data::normalize(src.data.train, data::kMnistMean, data::kMnistStd);
    data::normalize(src.data.test, data::kMnistMean, data::kMnistStd);
    src.black = {(0.0f - data::kMnistMean) * (1.0f / data::kMnistStd)};
  } else if (name == "cifar10") {
    src.data = data::load_cifar10(data_dir);
    const std::vector<float> mean(data::kCifar10Mean, data::kCifar10Mean + 3),
        std(data::kCifar10Std, data::kCifar10Std + 3);
    data::normalize_channels(src.data.train, mean, std);
    data::normalize_channels(src.data.test, mean, std);
    for (int c = 0; c < 3; ++c) src.black.push_back((0.0f - mean[c]) / std[c]);
  } else if (name == "friedman1") {
    // Seed 004: make_friedman1(n_samples=10000) split 67/33.
    auto all = data::make_friedman1(10000, 10, 0.0f, seed);
    auto split = data::train_test_split(all, 0.33, seed);
    src.data.train = split.first;
    src.data.test = split.second;
    src.task = Task::Regression;
  } else {
    throw Error("unknown dataset '" + name +
                "' (expected fashion-mnist, mnist, cifar10 or friedman1)");
  }
  const Shape& s = src.data.train.images.shape();
  src.input_shape = Shape(s.begin() + 1, s.end());
  return src;
}

DataSource load_data_for(const nn::Model& model, const std::map<std::string, std::string>& meta,
                         const std::string& path, const std::string& dataset,
                         const std::string& data_dir, uint64_t seed, std::string* name) {
  std::string chosen = dataset;
  if (chosen.empty()) {
    auto it = meta.find("dataset");
    chosen = it == meta.end() ? "fashion-mnist" : it->second;
  }
  DataSource src = load_data_source(chosen, data_dir, seed);
  SPRIG_CHECK(src.input_shape == model.input_shape, path, " expects inputs ",
              to_string(model.input_shape), " but ", chosen, " has ", to_string(src.input_shape));
  if (name) *name = chosen;
  return src;
}

std::unique_ptr<nn::Optimizer> make_optimizer(const OptimizerConfig& cfg,
                                              std::vector<nn::ParameterPtr> params) {
  if (cfg.name == "sgd") {
    nn::SGDOptions o;
    o.lr = cfg.lr;
    o.momentum = cfg.momentum;
    o.weight_decay = cfg.weight_decay;
    o.nesterov = cfg.nesterov;
    o.decay_norm_affine = cfg.bn_weight_decay;
    return std::make_unique<nn::SGD>(std::move(params), o);
  }
  if (cfg.name == "adam" || cfg.name == "adamw") {
    nn::AdamOptions o;
    o.lr = cfg.lr;
    o.weight_decay = cfg.weight_decay;
    o.decoupled = cfg.name == "adamw";
    o.decay_norm_affine = cfg.bn_weight_decay;
    return std::make_unique<nn::Adam>(std::move(params), o);
  }
  throw Error("unknown optimizer '" + cfg.name + "' (expected sgd, adam or adamw)");
}

// target comes from the host: class labels stay there (cross_entropy checks them on the host
// and uploads them without waiting for the GPU), regression targets go to out's device.
static Tensor loss_of(Task task, const Tensor& out, const Tensor& target) {
  return task == Task::Classification ? cross_entropy(out, target)
                                      : mse_loss(out, target.to(out.device()));
}

int64_t count_correct(const Tensor& logits_any, const Tensor& labels_any) {
  const Tensor logits = logits_any.to(Device::cpu()), labels = labels_any.to(Device::cpu());
  const float* l = logits.data();  // (n, C)
  const int32_t* y = labels.data_as<int32_t>();
  int64_t n = logits.size(0), C = logits.size(1), correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t c = 1; c < C; ++c)
      if (l[i * C + c] > l[i * C + best]) best = c;
    correct += best == y[i];
  }
  return correct;
}

namespace {

// Loss and accuracy of forward over ds; with several ranks each evaluates every size-th batch
// and the sums are all-reduced.
EvalResult evaluate_batches(const std::function<Tensor(const Tensor&)>& forward,
                            const data::Dataset& ds, Task task, int64_t batch_size,
                            const dist::Comm& comm) {
  NoGradGuard no_grad;
  data::DataLoader loader(ds, batch_size, false);
  loader.start_epoch();
  data::Batch b;
  EvalResult r;
  double sums[3] = {0.0, 0.0, 0.0};  // loss x samples, correct, samples
  for (int64_t batch = 0; loader.next(b); ++batch) {
    if (batch % comm.size() != comm.rank()) continue;
    Tensor out = forward(b.x);
    int64_t n = b.x.size(0);
    sums[0] += double(loss_of(task, out, b.y).item()) * double(n);
    if (task == Task::Classification) sums[1] += double(count_correct(out, b.y));
    sums[2] += double(n);
  }
  comm.allreduce_sum(sums, 3);
  r.samples = int64_t(sums[2]);
  if (r.samples) {
    r.loss = sums[0] / sums[2];
    r.accuracy = sums[1] / sums[2];
  }
  // An accuracy over NaN outputs is meaningless, and a "nan" loss is easy to miss in a table.
  SPRIG_CHECK(std::isfinite(r.loss), "evaluation on ", r.samples, " samples: the loss is ", r.loss,
              " (the model's outputs are not finite: its weights overflow float32, or the inputs "
              "hold NaN)");
  return r;
}

}  // namespace

EvalResult evaluate(const nn::Model& model, const data::Dataset& ds, Task task, int64_t batch_size,
                    const dist::Comm& comm) {
  model.net->eval();
  const Device dev = model.device();
  EvalResult r = evaluate_batches([&](const Tensor& x) { return model.forward(x.to(dev)); }, ds,
                                  task, batch_size, comm);
  model.net->train();
  return r;
}

EvalResult evaluate(const std::function<Tensor(const Tensor&)>& forward, const data::Dataset& ds,
                    Task task, int64_t batch_size) {
  return evaluate_batches(forward, ds, task, batch_size, dist::Comm::self());
}

static void draw_progress(int epoch, int epochs, size_t step, size_t steps, double loss,
                          double samples_per_s) {
  const int width = 30;
  int filled = steps ? int(width * step / steps) : width;
  std::fprintf(stderr, "\repoch %d/%d [%s%s] %zu/%zu loss %.4f %.0f samples/s ", epoch, epochs,
               std::string(filled, '=').c_str(), std::string(width - filled, ' ').c_str(), step,
               steps, loss, samples_per_s);
  std::fflush(stderr);
}

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrSchedule::Constant;
  if (name == "cosine") return LrSchedule::Cosine;
  if (name == "step") return LrSchedule::Step;
  if (name == "multistep") return LrSchedule::MultiStep;
  throw Error("unknown learning-rate schedule '" + name +
              "' (expected constant, cosine, step or multistep)");
}

void check_lr_schedule(const FitConfig& cfg) {
  const LrSchedule k = cfg.lr_schedule;
  SPRIG_CHECK(k == LrSchedule::Step || cfg.lr_step_size == 0,
              "--lr-step-size applies to --lr-schedule step only");
  SPRIG_CHECK(k != LrSchedule::Step || cfg.lr_step_size >= 1,
              "--lr-schedule step needs --lr-step-size EPOCHS >= 1, got ", cfg.lr_step_size);
  SPRIG_CHECK(k == LrSchedule::MultiStep || cfg.lr_milestones.empty(),
              "--lr-milestones applies to --lr-schedule multistep only");
  if (k == LrSchedule::MultiStep) {
    SPRIG_CHECK(!cfg.lr_milestones.empty(),
                "--lr-schedule multistep needs --lr-milestones E1,E2,... (epochs)");
    std::string list;
    for (int m : cfg.lr_milestones) list += (list.empty() ? "" : ",") + std::to_string(m);
    for (size_t i = 0; i < cfg.lr_milestones.size(); ++i)
      SPRIG_CHECK(
          cfg.lr_milestones[i] >= 1 && (i == 0 || cfg.lr_milestones[i] > cfg.lr_milestones[i - 1]),
          "--lr-milestones must be strictly increasing epochs >= 1, got ", list);
  }
  SPRIG_CHECK(std::isfinite(cfg.lr_gamma) && cfg.lr_gamma > 0.0, "--lr-gamma must be > 0, got ",
              cfg.lr_gamma);
  SPRIG_CHECK(k == LrSchedule::Step || k == LrSchedule::MultiStep || cfg.lr_gamma == 0.1,
              "--lr-gamma applies to --lr-schedule step and multistep only");
  SPRIG_CHECK(cfg.warmup_epochs >= 0, "--warmup-epochs must be >= 0, got ", cfg.warmup_epochs);
  SPRIG_CHECK(cfg.warmup_epochs <= cfg.epochs, "--warmup-epochs ", cfg.warmup_epochs,
              " is longer than the ", cfg.epochs, " epochs of training");
}

void enable_augment(const DataSource& src, FitConfig& fc) {
  SPRIG_CHECK(!src.black.empty() && src.input_shape.size() == 3, "--augment needs image data ",
              "(cifar10, fashion-mnist or mnist), not ", src.name);
  fc.augment = true;
  fc.augment_pad = 4;
  fc.augment_fill = src.black;
}

void apply_lr_schedule(const LrScheduleConfig& c, FitConfig& fc) {
  fc.lr_schedule = parse_lr_schedule(c.name);
  fc.lr_step_size = c.step_size;
  fc.lr_milestones = c.milestones;
  fc.lr_gamma = c.gamma;
  fc.warmup_epochs = c.warmup_epochs;
  check_lr_schedule(fc);
}

double scheduled_lr(const FitConfig& cfg, double base_lr, int64_t t, int64_t steps_per_epoch) {
  const int64_t warmup_steps = int64_t(cfg.warmup_epochs) * steps_per_epoch;
  const int64_t epoch = steps_per_epoch > 0 ? t / steps_per_epoch : 0;
  double warmup = 1.0;
  if (t < warmup_steps) warmup = double(t + 1) / double(warmup_steps);
  double decay = 1.0;
  switch (cfg.lr_schedule) {
    case LrSchedule::Constant:
      break;
    case LrSchedule::Cosine:
      if (t >= warmup_steps) {
        const double total = double(cfg.epochs) * double(steps_per_epoch) - double(warmup_steps);
        return base_lr * 0.5 * (1.0 + std::cos(M_PI * double(t - warmup_steps) / total));
      }
      break;
    case LrSchedule::Step:
      decay = std::pow(cfg.lr_gamma, double(epoch / cfg.lr_step_size));
      break;
    case LrSchedule::MultiStep: {
      int passed = 0;
      for (int m : cfg.lr_milestones) passed += m <= epoch;
      decay = std::pow(cfg.lr_gamma, double(passed));
      break;
    }
  }
  return base_lr * warmup * decay;
}

void add_bn_l1_subgradient(nn::Model& model, float lambda) {
  for (auto& [path, m] : model.net->named_modules()) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(m);
    if (!bn) continue;
    nn::Parameter& gamma = *bn->weight;
    Tensor g = gamma.grad();
    if (!g.defined()) continue;
    const Backend& be = backend_for(gamma.device());
    const int64_t n = gamma.numel();
    // lambda x sign(gamma) from existing kernels, the same on every device and without a copy
    // to the host: relu_backward(x, dy) passes dy where x > 0, so it gives lambda where
    // gamma > 0 and, on -gamma, lambda where gamma < 0; zeros get nothing.
    Tensor fill = Tensor::empty({n}, DType::F32, gamma.device());     // (C) all lambda
    Tensor negated = Tensor::empty({n}, DType::F32, gamma.device());  // (C) -gamma
    Tensor part = Tensor::empty({n}, DType::F32, gamma.device());     // (C)
    be.fill(n, lambda, fill.ptr());
    be.relu_backward(n, gamma.value.ptr(), fill.ptr(), part.ptr());
    be.add(n, g.ptr(), part.ptr(), g.ptr());
    be.scale(n, gamma.value.ptr(), -1.0f, negated.ptr());
    be.relu_backward(n, negated.ptr(), fill.ptr(), part.ptr());
    be.sub(n, g.ptr(), part.ptr(), g.ptr());
  }
}

// Every weight and optimizer buffer must be finite before it is evaluated, saved or handed
// back: a step can overflow them (a huge learning rate, or optimizer state resumed from a
// tampered file) without the loss of that step showing it.
static void check_finite_state(const nn::Model& model, const FitPosition& pos) {
  for (auto& [name, p] : model.named_parameters()) {
    const Backend& be = backend_for(p->device());
    SPRIG_CHECK(be.all_finite(p->numel(), p->value.ptr()), "training diverged: parameter '", name,
                "' is not finite after global step ", pos.global_step,
                " (try a lower --lr; a resumed run may hold bad optimizer state)");
    for (auto& [key, t] : p->state)
      SPRIG_CHECK(be.all_finite(t.numel(), t.ptr()), "training diverged: optimizer state '", key,
                  "' of parameter '", name, "' is not finite after global step ", pos.global_step,
                  " (try a lower --lr; a resumed run may hold bad optimizer state)");
  }
}

// Gives every BatchNorm of the model a sum across comm's ranks for the scope's life.
struct SyncBatchNormScope {
  std::vector<nn::BatchNorm*> layers;
  SyncBatchNormScope(nn::Model& model, const dist::Comm& comm, bool on) {
    if (!on) return;
    for (auto& [path, m] : model.net->named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm*>(m)) {
        bn->sum_across = [&comm](double* v, int64_t n) { comm.allreduce_sum(v, n); };
        layers.push_back(bn);
      }
  }
  ~SyncBatchNormScope() {
    for (nn::BatchNorm* bn : layers) bn->sum_across = nullptr;
  }
};

std::vector<EpochStats> fit(nn::Model& model, nn::Optimizer& opt, const data::Dataset& train,
                            const data::Dataset& test, Task task, const FitConfig& cfg) {
  FitPosition pos;
  return fit(model, opt, train, test, task, cfg, pos);
}

std::vector<EpochStats> fit(nn::Model& model, nn::Optimizer& opt, const data::Dataset& train,
                            const data::Dataset& test, Task task, const FitConfig& cfg,
                            FitPosition& pos) {
  SPRIG_CHECK(cfg.epochs >= 0, "epochs must be >= 0, got ", cfg.epochs);
  check_lr_schedule(cfg);
  const Shape& image = train.images.shape();  // (N, C, H, W) when augmenting
  SPRIG_CHECK(!cfg.augment || (image.size() == 4 && int64_t(cfg.augment_fill.size()) == image[1] &&
                               cfg.augment_pad >= 0),
              "--augment needs image data (N, C, H, W) with a fill value per channel, got inputs ",
              to_string(image), " and ", cfg.augment_fill.size(), " fill values");
  data::DataLoader loader(train, cfg.batch_size, /*shuffle=*/true, cfg.seed);
  const int64_t batches = int64_t(loader.num_batches());
  const dist::Comm& comm = cfg.comm ? *cfg.comm : dist::Comm::self();
  std::unique_ptr<GradientReducer> reducer;
  if (comm.size() > 1) {
    // Every rank needs a sample of every batch, the last (partial) one included.
    const int64_t last = train.size() % cfg.batch_size;
    SPRIG_CHECK(cfg.batch_size >= comm.size() && (last == 0 || last >= comm.size()),
                "data-parallel training on ", comm.size(), " ranks needs at least ", comm.size(),
                " samples in every batch, but --batch-size ", cfg.batch_size, " over ",
                train.size(), " samples leaves a last batch of ", last,
                " (choose another --batch-size or --limit-train)");
    loader.set_shard(comm.rank(), comm.size());
    broadcast_model(comm, model, &opt);
    reducer = std::make_unique<GradientReducer>(comm, model.parameters());
  }
  SyncBatchNormScope sync_bn(model, comm, cfg.sync_bn && comm.size() > 1);
  SPRIG_CHECK(pos.epoch >= 0 && pos.step_in_epoch >= 0 && pos.step_in_epoch <= batches &&
                  pos.global_step == int64_t(pos.epoch) * batches + pos.step_in_epoch,
              "cannot resume at epoch ", pos.epoch, " step ", pos.step_in_epoch, " (global step ",
              pos.global_step, "): an epoch here has ", batches, " steps");
  SPRIG_CHECK(pos.epoch < cfg.epochs || (pos.epoch == cfg.epochs && pos.step_in_epoch == 0),
              "cannot resume at epoch ", pos.epoch + 1, " step ", pos.step_in_epoch,
              " of a run of ", cfg.epochs, " epochs");
  std::vector<EpochStats> history;
  model.net->train();
  const float base_lr = opt.lr;
  auto stopped = [&] { return cfg.stop_at_step >= 0 && pos.global_step >= cfg.stop_at_step; };
  const Device dev = model.device();
  // On the GPU a step's loss is read back only when needed (progress bar, checkpoint, end of
  // epoch), so the host queues the next steps instead of waiting for each one.
  struct PendingLoss {
    Tensor loss;  // () on dev
    int64_t n, step;
  };
  std::vector<PendingLoss> pending;
  int epoch = 0;
  // Each rank's loss is the mean over its shard, and the epoch's is the sum of loss x samples
  // over every rank and step, divided by the samples. Ranks add up their own steps and sum them
  // across ranks only where every rank stops anyway (checkpoints, the end of an epoch or run):
  // an all-reduce per step would make every step wait for the slowest rank.
  double shard_sums[2] = {0.0, 0.0};  // loss x samples, samples: this rank's steps not yet in pos
  auto sync_losses = [&] {            // a collective: every rank calls it at the same point
    comm.allreduce_sum(shard_sums, 2);
    pos.epoch_loss_sum += shard_sums[0];
    pos.epoch_seen += int64_t(shard_sums[1]);
    shard_sums[0] = shard_sums[1] = 0.0;
  };
  auto flush_losses = [&] {
    for (const PendingLoss& p : pending) {
      const float value = p.loss.item();
      SPRIG_CHECK(std::isfinite(value), "training diverged: loss is ", value, " at epoch ", epoch,
                  " step ", p.step, " (try a lower --lr)");
      shard_sums[0] += double(value) * double(p.n);
      shard_sums[1] += double(p.n);
    }
    pending.clear();
    if (comm.size() == 1) sync_losses();  // one process: pos is always up to date
  };
  for (epoch = pos.epoch + 1; epoch <= cfg.epochs && !stopped(); ++epoch) {
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    loader.start_epoch(epoch - 1);
    data::Batch b;
    // Resuming mid-epoch: the permutation is the same, so skipping the batches already done
    // puts the loader where the interrupted run was.
    for (int64_t k = 0; k < pos.step_in_epoch; ++k) loader.next(b);
    size_t step = size_t(pos.step_in_epoch);
    while (!stopped() && loader.next(b)) {
      if (cfg.augment) {
        // Drawn from (seed, epoch, batch) alone, so a resumed run draws the same crops.
        // The whole batch's draws, of which a shard takes its own rows' share.
        Rng rng(data::augment_seed(cfg.seed, epoch - 1, int64_t(step)));
        const auto draws = data::draw_crop_flip(b.total, cfg.augment_pad, rng);
        b.x = data::crop_flip(b.x, {draws.begin() + b.first, draws.begin() + b.first + b.x.size(0)},
                              cfg.augment_pad, cfg.augment_fill);
      }
      opt.zero_grad();
      Tensor loss = loss_of(task, model.forward(b.x.to(dev)), b.y);
      pending.push_back({loss.detach(), b.x.size(0), int64_t(step) + 1});
      if (dev.is_cpu()) flush_losses();  // free on the CPU: stop at the first bad step
      if (reducer)
        reducer->backward(scale(loss, float(double(b.x.size(0)) / double(b.total))));
      else
        loss.backward();
      if (cfg.bn_l1 != 0.0f) add_bn_l1_subgradient(model, cfg.bn_l1);
      const int64_t t = int64_t(epoch - 1) * batches + int64_t(step);
      opt.lr = float(scheduled_lr(cfg, base_lr, t, batches));
      SPRIG_CHECK(std::isfinite(opt.lr), "the learning rate at global step ", t + 1, " is ", opt.lr,
                  " (--lr ", base_lr, ", --lr-gamma ", cfg.lr_gamma, ")");
      opt.step();
      ++step;
      pos.step_in_epoch = int64_t(step);
      pos.global_step = int64_t(epoch - 1) * batches + int64_t(step);
      if (cfg.after_step) cfg.after_step(pos.global_step);
      if (cfg.progress_bar && (step % 20 == 0 || step == loader.num_batches())) {
        // Local: with several ranks the bar shows this rank's shards (no collective here, as
        // only rank 0 draws).
        flush_losses();
        const double loss_sum = pos.epoch_loss_sum + shard_sums[0];
        const double seen = double(pos.epoch_seen) + shard_sums[1];
        const double secs = std::chrono::duration<double>(clock::now() - t0).count();
        const double all_seen = double(pos.epoch_seen) + shard_sums[1] * comm.size();
        draw_progress(epoch, cfg.epochs, step, loader.num_batches(), loss_sum / seen,
                      all_seen / std::max(secs, 1e-9));
      }
      if (cfg.checkpoint && cfg.checkpoint_every_steps > 0 &&
          pos.global_step % cfg.checkpoint_every_steps == 0) {
        flush_losses();
        sync_losses();
        check_finite_state(model, pos);
        broadcast_buffers(comm, model);
        cfg.checkpoint(pos, history);
      }
    }
    flush_losses();
    sync_losses();
    if (cfg.progress_bar) std::fprintf(stderr, "\n");
    check_finite_state(model, pos);
    if (int64_t(step) < batches) break;  // stopped mid-epoch: pos says where
    EpochStats st;
    st.epoch = epoch;
    st.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    st.train_loss = pos.epoch_seen ? pos.epoch_loss_sum / double(pos.epoch_seen) : 0.0;
    broadcast_buffers(comm, model);
    if (cfg.check_replicas)
      check_replicas(comm, model, &opt, "after epoch " + std::to_string(epoch));
    if (test.size() > 0) st.test = evaluate(model, test, task, 256, comm);
    if (cfg.log_lines || cfg.progress_bar) {
      if (task == Task::Classification)
        std::printf("epoch %d/%d  train_loss %.4f  test_loss %.4f  test_accuracy %.2f%%  %.2f s\n",
                    epoch, cfg.epochs, st.train_loss, st.test.loss, 100.0 * st.test.accuracy,
                    st.seconds);
      else
        std::printf("epoch %d/%d  train_mse %.4f  test_mse %.4f  %.2f s\n", epoch, cfg.epochs,
                    st.train_loss, st.test.loss, st.seconds);
      std::fflush(stdout);
    }
    history.push_back(st);
    pos = FitPosition{epoch, 0, int64_t(epoch) * batches, 0.0, 0};
    if (cfg.checkpoint && cfg.checkpoint_every_epoch) cfg.checkpoint(pos, history);
  }
  broadcast_buffers(comm, model);  // a run stopped mid-epoch leaves with rank 0's too
  return history;
}

}  // namespace sprig::train
