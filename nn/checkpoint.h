#pragma once
// Model checkpoints as safetensors files: one tensor per parameter (named as in
// named_parameters, e.g. "0.weight"), "<name>.mask" (uint8) for masked parameters, and in
// __metadata__ the model spec, input shape and whatever provenance the caller adds.
// A training checkpoint also holds what resuming needs: every optimizer buffer of every
// parameter as "optim.<name>.<key>" (e.g. "optim.0.weight.exp_avg") and, in the metadata key
// "train_state", a JSON object the trainer defines (config, position, step counts).
#include <map>
#include <string>

#include "nn/model.h"

namespace sprig::nn {

inline constexpr const char* kCheckpointFormat = "sprig-checkpoint-1";

// Tensors stored beside the parameters under this prefix: a copy of the weights at an early
// training step, for lottery-ticket rewinding ("rewind/0.weight", ...).
inline constexpr const char* kRewindPrefix = "rewind/";
// Optimizer buffers: "optim.<parameter>.<key>", key as in Parameter::state.
inline constexpr const char* kOptimPrefix = "optim.";
// The metadata key holding a training checkpoint's state (JSON, defined by train/train_state.h).
inline constexpr const char* kTrainStateKey = "train_state";

// Writes atomically (temporary file + rename); an existing file survives any failure.
// rewind: parameter name -> value at an early step (may be empty).
// train_state: non-empty makes a training checkpoint: the string goes to metadata
// "train_state" and every parameter's optimizer state is stored too. When empty, a
// "train_state" key in extra_metadata (copied from a loaded checkpoint) is dropped, so a file
// never claims a training state whose optimizer buffers it does not hold.
void save_checkpoint(const std::string& path, const Model& model,
                     const std::map<std::string, std::string>& extra_metadata = {},
                     const std::map<std::string, Tensor>& rewind = {},
                     const std::string& train_state = "");

// Optimizer buffers by parameter name, then key ("exp_avg", "momentum_buffer", ...).
using OptimizerState = std::map<std::string, std::map<std::string, Tensor>>;

struct Checkpoint {
  Model model;
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> rewind;  // empty unless the file holds a rewind snapshot
  // Kept apart from Parameter::state so a command that only evaluates or prunes a training
  // checkpoint starts from fresh optimizer state; the trainer installs it when resuming.
  OptimizerState optimizer_state;
  std::string train_state;  // metadata "train_state", "" when the file is not resumable
};

// Rebuilds the model from the spec in the file and loads every parameter and mask, checking
// each tensor's shape against the spec. Errors name the file and the tensor.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace sprig::nn
