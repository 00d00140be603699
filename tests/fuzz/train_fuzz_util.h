#pragma once
// Shared by fuzz_train_state and fuzz_resume: tiny in-memory training data, small training
// checkpoints made in process as sprig train writes them, and what `sprig train --resume` does
// with a loaded checkpoint (apps/cmd_train.cpp, run_train), cut to one training step and
// followed by the checks of what a step must leave: finite weights and optimizer buffers, and
// zeros where a mask prunes.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include "datasets/friedman.h"
#include "kernels/error.h"
#include "engine/rng.h"
#include "nn/checkpoint.h"
#include "prune/schedule.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace sprig::fuzz {

// Flat data like friedman1 (10 features, regression): 64 training samples (4 steps of 16 an
// epoch) and 16 test samples.
inline const train::DataSource& flat_data() {
  static const train::DataSource src = [] {
    train::DataSource s;
    auto split = data::train_test_split(data::make_friedman1(80, 10, 0.0f, 5), 0.2, 5);
    s.data.train = split.first;
    s.data.test = split.second;
    s.input_shape = {10};
    s.task = train::Task::Regression;
    s.name = "friedman1";
    return s;
  }();
  return src;
}

// Images (1, 6, 6) in 3 classes, normalised so black is -1: 48 training samples (3 steps of
// 16 an epoch) and 12 test samples.
inline const train::DataSource& image_data() {
  static const train::DataSource src = [] {
    train::DataSource s;
    s.input_shape = {1, 6, 6};
    s.black = {-1.0f};
    s.name = "fashion-mnist";
    Rng rng(9);
    for (data::Dataset* d : {&s.data.train, &s.data.test}) {
      const int64_t n = d == &s.data.train ? 48 : 12;
      d->images = Tensor::uniform({n, 1, 6, 6}, -1.0f, 1.0f, rng);
      d->labels = Tensor::empty({n}, DType::I32);
      for (int64_t i = 0; i < n; ++i) d->labels.data_as<int32_t>()[i] = int32_t(rng.below(3));
    }
    return s;
  }();
  return src;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A run to make a starting checkpoint from: cfg as sprig train records it, stopped after
// stop_at steps; masked prunes a fixed half of every weight matrix and kernel first.
struct BaseRun {
  train::TrainConfig cfg;
  bool images = false, masked = false;
  int64_t stop_at = 0;
};

// Trains b in process and returns the bytes of its training checkpoint, with the metadata
// sprig train writes beside the state (apps/cmd_train.cpp, save).
inline std::string make_training_checkpoint(const BaseRun& b) {
  const train::DataSource& src = b.images ? image_data() : flat_data();
  const train::TrainConfig& cfg = b.cfg;
  nn::Model model = nn::build_model(cfg.model, src.input_shape, cfg.seed);
  if (b.masked) {
    Rng rng(3);
    for (auto& p : model.parameters()) {
      if (p->value.dim() < 2) continue;
      Tensor keep = Tensor::empty(p->value.shape(), DType::U8);
      for (int64_t i = 0; i < keep.numel(); ++i)
        keep.data_as<uint8_t>()[i] = rng.uniform() < 0.5f ? 1 : 0;
      p->set_mask(keep, nn::Granularity::Element);
    }
  }
  auto opt = train::make_optimizer(cfg.optim, model.parameters());
  train::FitConfig fc;  // as sprig train makes it
  fc.epochs = cfg.epochs;
  train::apply_lr_schedule(cfg.lr, fc);
  if (cfg.augment) train::enable_augment(src, fc);
  train::apply_train_config(cfg, model, fc);
  fc.stop_at_step = b.stop_at;
  prune::WeightSnapshot rewind;
  if (cfg.rewind_step == 0) rewind = prune::snapshot_weights(model);
  if (cfg.rewind_step > 0)
    fc.after_step = [&](int64_t step) {
      if (step == cfg.rewind_step) rewind = prune::snapshot_weights(model);
    };
  train::FitPosition pos;
  auto history = train::fit(model, *opt, src.data.train, src.data.test, src.task, fc, pos);
  train::TrainState st{cfg, pos, opt->steps, history};
  std::map<std::string, std::string> meta = {
      {"dataset", cfg.dataset},   {"epochs", std::to_string(cfg.epochs)},
      {"optimizer", opt->name()}, {"seed", std::to_string(cfg.seed)},
      {"test_metric", "0"},       {"created_by", "sprig train"}};
  if (cfg.rewind_step >= 0) meta["rewind_step"] = std::to_string(cfg.rewind_step);
  // save_training_checkpoint writes a temp file and renames it: it needs a real directory.
  char dir[] = "/tmp/sprig-fuzz-XXXXXX";  // mkdtemp's template
  if (!::mkdtemp(dir)) std::abort();
  const std::string path = std::string(dir) + "/base.safetensors";
  train::save_training_checkpoint(path, model, st, meta, rewind.values);
  std::string bytes = read_file(path);
  std::filesystem::remove_all(dir);
  return bytes;
}

// An expected failure; printed with SPRIG_FUZZ_VERBOSE=1, to see how far the seeds get.
inline void expected(const Error& e) {
  static const bool verbose = std::getenv("SPRIG_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "sprig::Error: %s\n", e.what());
}

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "finding: %s\n", what.c_str());
  std::abort();
}

// What sprig train --resume does with rp (apps/cmd_train.cpp, run_train), on src instead of
// the dataset the state names, stopping after one step. Throws sprig::Error where the command
// would fail; aborts when the step leaves a non-finite weight or buffer, or a pruned weight
// or buffer that is not 0.
inline void resume_one_step(train::ResumePoint& rp, const train::DataSource& src,
                            const std::string& path) {
  const train::TrainConfig& cfg = rp.state.config;
  train::FitConfig fc;
  fc.epochs = cfg.epochs;
  train::apply_lr_schedule(cfg.lr, fc);
  data::Dataset train = src.data.train, test = src.data.test;
  if (cfg.limit_train >= 0) train = data::take(train, cfg.limit_train);
  SPRIG_CHECK(train.size() > 0, "no training samples (--limit-train ", cfg.limit_train, ")");
  if (cfg.limit_test >= 0) test = data::take(test, cfg.limit_test);
  if (cfg.augment) train::enable_augment(src, fc);
  nn::Model model = rp.checkpoint.model;
  SPRIG_CHECK(model.input_shape == src.input_shape, path, " expects inputs ",
              to_string(model.input_shape), " but the data has ", to_string(src.input_shape));
  auto opt = train::make_optimizer(cfg.optim, model.parameters());
  train::restore_optimizer(*opt, rp, path);
  train::FitPosition pos = rp.state.position;
  train::apply_train_config(cfg, model, fc);
  fc.stop_at_step = pos.global_step + 1;
  train::fit(model, *opt, train, test, src.task, fc, pos);

  for (auto& [name, p] : model.named_parameters()) {
    const uint8_t* keep = p->mask ? p->mask->keep.data_as<uint8_t>() : nullptr;
    auto check = [&](const Tensor& t, const std::string& what) {
      const float* v = t.data();
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (!std::isfinite(v[i]))
          finding(what + " holds " + std::to_string(v[i]) + " at " + std::to_string(i) +
                  " after a resumed step that raised no error");
        if (keep && !keep[i] && v[i] != 0.0f)
          finding(what + " holds " + std::to_string(v[i]) + " at pruned element " +
                  std::to_string(i) + " after a resumed step");
      }
    };
    check(p->value, "parameter " + name);
    for (auto& [key, t] : p->state) check(t, "optimizer state " + key + " of " + name);
  }
}

}  // namespace sprig::fuzz
