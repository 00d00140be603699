#pragma once
// The training loop shared by the sprig commands and the tests: datasets by name, optimizers
// by name, fit() and evaluate().
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/mnist.h"
#include "dist/comm.h"
#include "nn/model.h"
#include "nn/optim.h"

namespace sprig::train {

enum class Task { Classification, Regression };

struct DataSource {
  data::TrainTest data;
  Shape input_shape;  // per sample
  Task task = Task::Classification;
  std::string name;
  // Images only: per channel, the normalised value of a black pixel (-mean / std), which
  // augmentation pads with. Empty for data that is not images.
  std::vector<float> black;
};

// The names --dataset accepts, in the order help texts list them.
const std::vector<std::string>& dataset_names();

// "fashion-mnist" (default dir /usr/share/datasets/fashion-mnist), "mnist" (needs data_dir),
// "cifar10" (default dir data::kCifar10DefaultDir) or "friedman1" (generated: 10,000 samples,
// 33% test, seed from `seed`). Images are normalised with the dataset's mean and std (per
// channel for cifar10).
DataSource load_data_source(const std::string& name, const std::string& data_dir, uint64_t seed);

// The data for a model loaded from checkpoint `path`: `dataset` when given, else the one
// recorded in its metadata (fashion-mnist when none). Checks that the model takes the
// dataset's input shape. *name (if given) receives the dataset's name.
DataSource load_data_for(const nn::Model& model, const std::map<std::string, std::string>& meta,
                         const std::string& path, const std::string& dataset,
                         const std::string& data_dir, uint64_t seed, std::string* name = nullptr);

struct OptimizerConfig {
  std::string name = "adam";  // sgd | adam | adamw
  float lr = 1e-3f, momentum = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
  // Weight decay on BatchNorm scales and shifts too (Parameter::norm_affine); off by default,
  // as in the usual ResNet recipes.
  bool bn_weight_decay = false;
};
std::unique_ptr<nn::Optimizer> make_optimizer(const OptimizerConfig& cfg,
                                              std::vector<nn::ParameterPtr> params);

struct EvalResult {
  double loss = 0.0;      // mean cross-entropy or MSE
  double accuracy = 0.0;  // classification only
  int64_t samples = 0;
};
// How many rows of logits (n, C) have their largest value at the label (n, int32).
int64_t count_correct(const Tensor& logits, const Tensor& labels);

// With a comm of several ranks, each rank evaluates every size-th batch and the sums are
// all-reduced: every rank returns the result over the whole dataset.
EvalResult evaluate(const nn::Model& model, const data::Dataset& ds, Task task,
                    int64_t batch_size = 256, const dist::Comm& comm = dist::Comm::self());
// The same loop over any forward function (a packed or int8 inference model), in this process.
EvalResult evaluate(const std::function<Tensor(const Tensor&)>& forward, const data::Dataset& ds,
                    Task task, int64_t batch_size = 256);

struct EpochStats {
  int epoch = 0;  // from 1
  double train_loss = 0.0;
  double seconds = 0.0;  // training time of this epoch, evaluation excluded
  EvalResult test;
};

// The learning rate at optimizer step t (from 0) of a run of T = epochs x B steps, B steps per
// epoch, e = floor(t / B) the epoch (from 0), base the optimizer's lr, W warm-up epochs and
// Tw = W x B warm-up steps:
//   lr(t) = base x warmup(t) x decay(t),  warmup(t) = (t + 1) / Tw for t < Tw, else 1
//   constant:  decay = 1
//   cosine:    decay = (1 + cos(pi (t - Tw) / (T - Tw))) / 2 for t >= Tw, else 1 (PyTorch's
//              CosineAnnealingLR per step over the steps after the warm-up; reaches ~0 at the end)
//   step:      decay = gamma ^ floor(e / step_size)          (PyTorch's StepLR, per epoch)
//   multistep: decay = gamma ^ (number of milestones <= e)   (PyTorch's MultiStepLR, per epoch)
// Milestones and step sizes count epochs of the whole run, warm-up included.
enum class LrSchedule { Constant, Cosine, Step, MultiStep };
LrSchedule parse_lr_schedule(const std::string& name);

// Where a run stands. The batches of epoch e are fixed by (seed, e), so this position plus the
// weights, masks and optimizer state determine the rest of the run exactly.
struct FitPosition {
  int epoch = 0;                // epochs completed
  int64_t step_in_epoch = 0;    // steps done in the epoch in progress (0 at an epoch boundary)
  int64_t global_step = 0;      // optimizer steps since the start of the run
  double epoch_loss_sum = 0.0;  // sum of loss x samples over the epoch in progress so far
  int64_t epoch_seen = 0;       // samples of the epoch in progress so far
};

struct FitConfig {
  int epochs = 1;
  LrSchedule lr_schedule = LrSchedule::Constant;
  int lr_step_size = 0;            // step: epochs between decays (>= 1)
  std::vector<int> lr_milestones;  // multistep: increasing epochs (>= 1)
  double lr_gamma = 0.1;           // step, multistep: the factor of each decay (> 0)
  int warmup_epochs = 0;           // linear warm-up before the schedule, <= epochs
  // Random crop (zero padding of augment_pad, filled with augment_fill per channel) and
  // horizontal flip of every training sample (datasets/augment.h); images only.
  bool augment = false;
  int64_t augment_pad = 4;
  std::vector<float> augment_fill;
  // Network slimming (Liu et al. 2017): after backward, bn_l1 x sign(gamma) is added to the
  // gradient of every BatchNorm scale gamma (an L1 penalty on the scales; the reported loss
  // leaves it out).
  float bn_l1 = 0.0f;
  int64_t batch_size = 64;
  uint64_t seed = 0;          // shuffling
  bool progress_bar = false;  // redraw one line per step (for terminals)
  // Called after every optimizer step with the step count so far (from 1), e.g. for gradual
  // pruning schedules.
  std::function<void(int64_t step)> after_step;
  bool log_lines = false;  // print one line per epoch
  // Stop once this many global steps are done, as if interrupted (-1: run all epochs). A stop
  // on an epoch's last step still evaluates that epoch.
  int64_t stop_at_step = -1;
  // Periodic checkpoints: `checkpoint` is called every `checkpoint_every_steps` global steps
  // and/or after each epoch's evaluation, with the position and the epochs finished by this
  // call of fit.
  int64_t checkpoint_every_steps = 0;
  bool checkpoint_every_epoch = false;
  std::function<void(const FitPosition&, const std::vector<EpochStats>&)> checkpoint;
  // Data-parallel training over comm's ranks (train/data_parallel.h), every rank calling fit
  // with the same arguments: rank 0's model and optimizer state are copied to the others, each
  // rank takes its shard of every batch (batch_size stays the global batch), gradients are
  // summed across ranks, and the result is the run one process would make with the same
  // batches, up to float rounding. Buffers (BatchNorm statistics) follow rank 0's shards.
  // Callbacks run on every rank; the caller lets rank 0 alone print and write.
  const dist::Comm* comm = nullptr;  // null: this process alone
  // Compare every rank's weights, masks and optimizer state after each epoch, and fail on the
  // first that differs (data-parallel runs only).
  bool check_replicas = false;
  // Data-parallel runs: BatchNorm in training mode normalises with the statistics of the whole
  // global batch, summed across ranks in forward and backward (PyTorch's SyncBatchNorm), so
  // the run matches one process's with the same batch. Off: each rank's own shard's (DDP's
  // default), and the running statistics follow rank 0's shards.
  bool sync_bn = false;
};

// The schedule as the command line gives it (sprig train and prune share these flags).
struct LrScheduleConfig {
  std::string name = "constant";  // --lr-schedule constant | cosine | step | multistep
  int step_size = 0;              // --lr-step-size
  std::vector<int> milestones;    // --lr-milestones
  double gamma = 0.1;             // --lr-gamma
  int warmup_epochs = 0;          // --warmup-epochs
};
// Puts c into fc (whose epochs must be set already) and checks it with check_lr_schedule.
void apply_lr_schedule(const LrScheduleConfig& c, FitConfig& fc);

// Turns on augmentation in fc for src (random crop with 4-pixel padding filled with a black
// pixel, and horizontal flip); an error naming --augment when src holds no images.
void enable_augment(const DataSource& src, FitConfig& fc);

// Throws sprig::Error naming the flag (--lr-step-size, --lr-milestones, --lr-gamma,
// --warmup-epochs) when the schedule fields of cfg are inconsistent or out of range.
void check_lr_schedule(const FitConfig& cfg);
// lr(t) above, computed in double; steps_per_epoch = B.
double scheduled_lr(const FitConfig& cfg, double base_lr, int64_t t, int64_t steps_per_epoch);

// Network slimming's subgradient: grad += lambda x sign(gamma) for every BatchNorm scale of
// model that has a gradient (sign(0) = 0, so pruned scales, held at 0 by their mask, get none).
void add_bn_l1_subgradient(nn::Model& model, float lambda);

// Trains for cfg.epochs, evaluating on `test` after each epoch. Throws sprig::Error if the
// loss becomes NaN or infinite.
std::vector<EpochStats> fit(nn::Model& model, nn::Optimizer& opt, const data::Dataset& train,
                            const data::Dataset& test, Task task, const FitConfig& cfg);
// Continues a run from `pos` (model and optimizer must hold the state of that point; opt.lr is
// the base learning rate) and leaves `pos` where it stopped. Returns the epochs it finished.
std::vector<EpochStats> fit(nn::Model& model, nn::Optimizer& opt, const data::Dataset& train,
                            const data::Dataset& test, Task task, const FitConfig& cfg,
                            FitPosition& pos);

}  // namespace sprig::train
