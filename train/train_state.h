#pragma once
// Training checkpoints: the weights and masks plus everything `sprig train --resume` needs to
// continue the run exactly where it stopped (bit-identical to an uninterrupted run with the same
// thread count): the training config, the position (epoch, step), Adam's step count, the
// per-epoch history, and the optimizer buffers (stored by nn::save_checkpoint as
// "optim.<param>.<key>"). The state is JSON in the metadata key "train_state":
//   {"version": 1, "config": {"model": "cnn2", "dataset": ..., "optimizer": {"name": "adam",
//    "lr": ..., ...}, "epochs": 5, ...}, "epoch": 2, "step_in_epoch": 0, "global_step": 1876,
//    "optimizer_steps": 1876, "history": [{"epoch": 1, "train_loss": ..., ...}, ...]}
// Keys added later (the step / multistep / warm-up schedule fields, "augment", "bn_l1",
// "bn_weight_decay") may be absent in older files and then take their defaults.
#include <map>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "train/trainer.h"

namespace sprig::train {

// Everything that decides what `sprig train` computes.
struct TrainConfig {
  std::string model = "cnn2";  // zoo name or spec, as given
  std::string dataset = "fashion-mnist", data_dir;
  LrScheduleConfig lr;
  int epochs = 5;
  int64_t batch_size = 64, limit_train = -1, rewind_step = -1;
  int64_t limit_test = -1;  // evaluate on the first N test samples only (-1: all)
  OptimizerConfig optim;
  bool augment = false;  // random crop + flip of training batches
  float bn_l1 = 0.0f;    // network-slimming penalty on BatchNorm scales
  uint64_t seed = 0;
  int threads = 0;  // the count the run used (results are bit-identical only for the same count)
};

// The ranges sprig train's flags accept, which parse_train_state holds a file to as well: a
// training checkpoint holds only what a run could have been given.
namespace limits {
constexpr int64_t kMaxEpochs = 100000;           // --epochs, a milestone
constexpr int64_t kMaxBatch = int64_t(1) << 20;  // --batch-size
constexpr int64_t kMaxCount = int64_t(1) << 40;  // --limit-train/-test, --rewind-step, steps
constexpr int64_t kMaxSchedule = 1000000;        // --lr-step-size, --warmup-epochs
constexpr int64_t kMaxThreads = 1024;            // --threads
constexpr double kMaxLr = 1e3;                   // --lr
}  // namespace limits

struct TrainState {
  TrainConfig config;
  FitPosition position;
  int64_t optimizer_steps = 0;      // Optimizer::steps (Adam's bias correction counts them)
  std::vector<EpochStats> history;  // every epoch finished so far
};

// The parts of fit's config that a run's TrainConfig fixes once its model exists: batch size,
// seed and the --bn-l1 penalty, which needs a BatchNorm layer in the model (an error naming
// the flag otherwise). apply_lr_schedule and enable_augment do the schedule and augmentation.
void apply_train_config(const TrainConfig& cfg, const nn::Model& model, FitConfig& fc);

std::string train_state_to_json(const TrainState& s);
// Throws sprig::Error naming `path` and the field when the JSON is malformed, a value is out
// of the range the sprig train flags allow, or the position is not one a run can reach
// (optimizer_steps == global_step, epoch <= epochs, history of epochs 1..epoch, ...).
TrainState parse_train_state(const std::string& json, const std::string& path);

// Checks that a parsed state belongs to the checkpoint it was loaded from: config.model builds
// to the file's spec; config.optimizer, dataset, seed, epochs and rewind_step agree with the
// metadata sprig train writes beside it; the file holds exactly the buffers that optimizer
// keeps (for every parameter once optimizer_steps > 0, none before); a rewind snapshot is
// there exactly when the run has passed config.rewind_step. Throws sprig::Error, one line:
// "<path>: metadata 'train_state' disagrees with the checkpoint: <what>".
void check_train_state(const TrainState& s, const nn::Checkpoint& ck, const std::string& path);

// A training checkpoint: nn::save_checkpoint with the optimizer buffers of model's parameters
// and the state; atomic like every checkpoint write.
void save_training_checkpoint(const std::string& path, const nn::Model& model,
                              const TrainState& state,
                              const std::map<std::string, std::string>& extra_metadata = {},
                              const std::map<std::string, Tensor>& rewind = {});

struct ResumePoint {
  nn::Checkpoint checkpoint;  // model with weights and masks, optimizer buffers, rewind snapshot
  TrainState state;
};
// Loads a checkpoint and its training state (parse_train_state, then check_train_state); a
// file without one (pruned, packed, written by an older sprig) raises sprig::Error saying so.
ResumePoint load_training_checkpoint(const std::string& path);

// Puts the checkpoint's optimizer buffers into the parameters of opt (by parameter name) and
// sets opt.steps. Throws when a buffer does not belong to this kind of optimizer.
void restore_optimizer(nn::Optimizer& opt, const ResumePoint& r, const std::string& path);

}  // namespace sprig::train
