// libFuzzer target: the training state JSON of a checkpoint (train/train_state.h,
// parse_train_state) on arbitrary bytes. A state that parses must hold only what a run can
// (the ranges of the sprig train flags, a reachable position), must survive
// train_state_to_json and parse again unchanged, and then goes through what
// `sprig train --resume` does with it: check_train_state against a small training checkpoint
// made in process (linear(8) relu linear(1) on 10 features, trained by the optimizer the
// state names, as make_corpus.sh's seeds were), restoring the optimizer and one training step
// (train_fuzz_util.h), which must leave every weight and buffer finite.
// Expected failures are sprig::Error; anything else aborts the run.
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>

#include "kernels/error.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/train_fuzz_util.h"
#include "train/train_state.h"

namespace {

using sprig::fuzz::finding;

// The training checkpoint for a state naming optimizer `name`: the runs of make_corpus.sh
// (friedman1, --limit-train 64 --batch-size 16 --epochs 2 --seed 1), made here on
// flat_data(): adam with a cosine schedule stopped at step 6, sgd with Nesterov momentum,
// a warm-up, milestones and a rewind snapshot at step 2 run to the end (8 steps), adamw
// stopped at the epoch boundary (step 4).
const std::string& base_checkpoint(const std::string& name) {
  static const std::map<std::string, std::string> bases = [] {
    sprig::fuzz::BaseRun run;
    sprig::train::TrainConfig& c = run.cfg;
    c.model = "linear(8) relu linear(1)";
    c.dataset = "friedman1";
    c.epochs = 2;
    c.batch_size = 16;
    c.limit_train = 64;
    c.seed = 1;
    c.threads = 1;
    std::map<std::string, std::string> out;
    {
      sprig::fuzz::BaseRun adam = run;
      adam.cfg.optim = {"adam", 0.01f};
      adam.cfg.lr.name = "cosine";
      adam.stop_at = 6;
      out["adam"] = sprig::fuzz::make_training_checkpoint(adam);
    }
    {
      sprig::fuzz::BaseRun sgd = run;
      sgd.cfg.optim = {"sgd", 0.01f, 0.9f, 0.001f, true};
      sgd.cfg.lr.name = "multistep";
      sgd.cfg.lr.milestones = {1};
      sgd.cfg.lr.warmup_epochs = 1;
      sgd.cfg.rewind_step = 2;
      sgd.stop_at = 8;
      out["sgd"] = sprig::fuzz::make_training_checkpoint(sgd);
    }
    {
      sprig::fuzz::BaseRun adamw = run;
      adamw.cfg.optim = {"adamw", 0.01f, 0.0f, 0.01f};
      adamw.stop_at = 4;
      out["adamw"] = sprig::fuzz::make_training_checkpoint(adamw);
    }
    return out;
  }();
  return bases.at(name);
}

// What parse_train_state promises about a state it returns.
void check_parsed(const sprig::train::TrainState& s) {
  const sprig::train::TrainConfig& c = s.config;
  const sprig::train::FitPosition& p = s.position;
  bool ok = !c.model.empty() && c.epochs >= 0 && c.epochs <= 100000 && c.batch_size >= 1 &&
            c.batch_size <= (1 << 20) && c.threads >= 0 && c.threads <= 1024 &&
            std::isfinite(c.optim.lr) && c.optim.lr >= 0 && c.optim.lr <= 1e3 &&
            c.optim.momentum >= 0 && c.optim.momentum <= 1 && c.optim.weight_decay >= 0 &&
            c.optim.weight_decay <= 1 && c.bn_l1 >= 0 && c.bn_l1 <= 1 &&
            std::isfinite(c.lr.gamma) && c.lr.gamma > 0 && p.epoch >= 0 && p.epoch <= c.epochs &&
            p.step_in_epoch >= 0 && p.global_step >= p.step_in_epoch &&
            s.optimizer_steps == p.global_step && std::isfinite(p.epoch_loss_sum) &&
            p.epoch_loss_sum >= 0 && int64_t(s.history.size()) == p.epoch &&
            (c.optim.name == "sgd" || c.optim.name == "adam" || c.optim.name == "adamw");
  for (size_t i = 0; i < s.history.size(); ++i) {
    const sprig::train::EpochStats& e = s.history[i];
    ok = ok && e.epoch == int(i) + 1 && std::isfinite(e.train_loss) && std::isfinite(e.seconds) &&
         std::isfinite(e.test.loss) && e.test.accuracy >= 0 && e.test.accuracy <= 1;
  }
  if (!ok) finding("parse_train_state returned a state no run can have");
  // Written back and read again, it is the same state.
  const std::string json = sprig::train::train_state_to_json(s);
  sprig::train::TrainState again;
  try {
    again = sprig::train::parse_train_state(json, "round trip");
  } catch (const sprig::Error& e) {
    finding(std::string("a parsed state does not parse again: ") + e.what());
  }
  if (sprig::train::train_state_to_json(again) != json)
    finding("a parsed state changes when written and read again");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sprig::fuzz::ReleaseCache release;
  static sprig::fuzz::MemFile file;
  const std::string text(reinterpret_cast<const char*>(data), size);
  sprig::train::TrainState state;
  try {
    state = sprig::train::parse_train_state(text, "fuzz");
  } catch (const sprig::Error& e) {
    sprig::fuzz::expected(e);
    return 0;
  }
  check_parsed(state);

  // The checks of a resume against the checkpoint the state came with, then one step.
  const std::string& path = file.write(base_checkpoint(state.config.optim.name).data(),
                                       base_checkpoint(state.config.optim.name).size());
  sprig::train::ResumePoint rp;
  rp.checkpoint = sprig::nn::load_checkpoint(path);  // must not throw: the file is valid
  rp.state = state;
  try {
    sprig::train::check_train_state(rp.state, rp.checkpoint, path);
    sprig::fuzz::resume_one_step(rp, sprig::fuzz::flat_data(), path);
  } catch (const sprig::Error& e) {
    sprig::fuzz::expected(e);
  }
  return 0;
}
