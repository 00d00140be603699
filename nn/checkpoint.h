#pragma once
// Model checkpoints as safetensors files: one tensor per parameter (named as in
// named_parameters, e.g. "0.weight"), "<name>.mask" (uint8) for masked parameters, and in
// __metadata__ the model spec, input shape and whatever provenance the caller adds.
#include <map>
#include <string>

#include "nn/model.h"

namespace sprig::nn {

inline constexpr const char* kCheckpointFormat = "sprig-checkpoint-1";

// Writes atomically (temporary file + rename); an existing file survives any failure.
void save_checkpoint(const std::string& path, const Model& model,
                     const std::map<std::string, std::string>& extra_metadata = {});

struct Checkpoint {
  Model model;
  std::map<std::string, std::string> metadata;
};

// Rebuilds the model from the spec in the file and loads every parameter and mask, checking
// each tensor's shape against the spec. Errors name the file and the tensor.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace sprig::nn
