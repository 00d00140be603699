#pragma once
// Quantisation to int8 with optional quantisation-aware training (QAT): what `sprig quantize`
// and `sprig experiment prune-quantize` run. The int8 steps live in infer/quantize.h; this adds
// the training loop between them.
#include <vector>

#include "infer/quantize.h"
#include "train/trainer.h"

namespace sprig::train {

struct QatConfig {
  int epochs = 0;    // 0: post-training quantisation alone
  float lr = 1e-4f;  // Adam
  int64_t batch_size = 64;
  uint64_t seed = 0;
  bool log_lines = false;  // one line per epoch
};

struct QuantizeOutcome {
  infer::InferenceModel model;
  std::vector<EpochStats> qat_epochs;  // evaluated with the fake-quantised model
};

// model -> its int8 inference model: calibrated on `calibration`; with qat.epochs > 0 the
// (shrunk, BN-folded) model first trains on `train` with every conv / linear layer
// fake-quantised as the int8 kernels will run it, masks kept and the calibrated ranges fixed,
// evaluated on `test` after each epoch; then its weights are quantised as they stand.
QuantizeOutcome quantize_with_qat(const nn::Model& model, const data::Dataset& calibration,
                                  const data::Dataset& train, const data::Dataset& test, Task task,
                                  const infer::QuantizeOptions& opt, const QatConfig& qat);

}  // namespace sprig::train
