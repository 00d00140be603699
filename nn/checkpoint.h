#pragma once
// Model checkpoints as safetensors files: one tensor per parameter (named as in
// named_parameters, e.g. "0.weight"), "<name>.mask" (uint8) for masked parameters, and in
// __metadata__ the model spec, input shape and whatever provenance the caller adds.
#include <map>
#include <string>

#include "nn/model.h"

namespace sprig::nn {

inline constexpr const char* kCheckpointFormat = "sprig-checkpoint-1";

// Tensors stored beside the parameters under this prefix: a copy of the weights at an early
// training step, for lottery-ticket rewinding ("rewind/0.weight", ...).
inline constexpr const char* kRewindPrefix = "rewind/";

// Writes atomically (temporary file + rename); an existing file survives any failure.
// rewind: parameter name -> value at an early step (may be empty).
void save_checkpoint(const std::string& path, const Model& model,
                     const std::map<std::string, std::string>& extra_metadata = {},
                     const std::map<std::string, Tensor>& rewind = {});

struct Checkpoint {
  Model model;
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> rewind;  // empty unless the file holds a rewind snapshot
};

// Rebuilds the model from the spec in the file and loads every parameter and mask, checking
// each tensor's shape against the spec. Errors name the file and the tensor.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace sprig::nn
