#pragma once
// Pruning schedules: when to prune and to which sparsity.
//   one-shot    prune once to the final sparsity, then fine-tune
//   iterative   prune to cumulative targets s_1 <= s_2 <= ... <= s_k, fine-tuning after each
//   polynomial  gradual pruning during training (Zhu & Gupta 2017, "To prune, or not to prune",
//               arXiv:1710.01878), with the step semantics of TF-MOT's
//               tfmot.sparsity.keras.PolynomialDecay
// and lottery-ticket rewinding (Frankle & Carbin 2019; Frankle et al. 2020 rewind to an early
// iteration instead of initialisation): snapshot the weights, train and prune, then reset the
// surviving weights to the snapshot.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/model.h"
#include "nn/optim.h"

namespace sprig::prune {

// Zhu & Gupta's gradual schedule as TF-MOT implements it:
//   p   = clamp((step - begin_step) / (end_step - begin_step), 0, 1)
//   s_t = final + (initial - final) * (1 - p)^power
// so the sparsity is `initial` up to begin_step, `final` from end_step on. The paper's form
// s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 is this with end_step = t0 + n dt, power 3.
//
// should_prune(step) is TF-MOT's _should_prune_in_step:
//   begin_step <= step <= end_step  and  (step - begin_step) % frequency == 0
// As in TF-MOT, end_step itself is a pruning step only when (end_step - begin_step) is a
// multiple of frequency; otherwise the last pruning step is the last multiple before it and
// the model never quite reaches final_sparsity. Choose end_step = begin_step + n * frequency.
//
// Validation is stricter than TF-MOT's (which only checks begin >= 0, end >= begin,
// frequency > 0 and both sparsities in [0, 1)): we also need end_step > begin_step (TF-MOT
// divides by zero there), final >= initial, and a finite power > 0.
struct PolynomialDecay {
  double initial_sparsity = 0.0;
  double final_sparsity = 0.0;
  int64_t begin_step = 0;
  int64_t end_step = 0;
  int64_t frequency = 100;
  double power = 3.0;

  double sparsity_at(int64_t step) const;  // validates first
  bool should_prune(int64_t step) const;   // validates first
  // Throws sprig::Error naming the bad field and its value.
  void validate() const;
};

// Cumulative targets where each of `steps` rounds prunes the same fraction of the weights that
// are still left: s_k = 1 - (1 - s)^(k / steps), k = 1..steps, the last exactly s.
// E.g. s = 0.75, steps = 2 -> {0.5, 0.75}. Needs steps >= 1 and s in [0, 1).
std::vector<double> iterative_targets(double final_sparsity, int steps);

// "4" -> iterative_targets(final_sparsity, 4); "0.5,0.75,0.875" -> that list as given
// (non-decreasing, each in [0, 1); an explicit list is the whole schedule, so final_sparsity
// is not used for it). Throws sprig::Error otherwise.
std::vector<double> parse_iterative(const std::string& spec, double final_sparsity);

struct ScheduleSpec {
  enum Kind { OneShot, Iterative, Polynomial };
  Kind kind = OneShot;
  std::vector<double> targets;  // OneShot: {final}; Iterative: the cumulative targets
  PolynomialDecay agp;          // Polynomial only
};

// The command-line forms:
//   oneshot                 targets {final_sparsity}
//   iterative:STEPS         targets iterative_targets(final_sparsity, STEPS)
//   iterative:a,b,c         targets {a, b, c}
//   agp:BEGIN,END,FREQ      PolynomialDecay from 0 to final_sparsity, power 3
// final_sparsity must be in [0, 1). Errors are one line naming the bad part and the forms.
ScheduleSpec parse_schedule(const std::string& s, double final_sparsity);

// Lottery-ticket rewinding. A snapshot holds a copy of every parameter by name.
struct WeightSnapshot {
  std::map<std::string, Tensor> values;
};
WeightSnapshot snapshot_weights(const nn::Model& model);
// Copies the snapshot into the parameters, re-applies each parameter's current mask (pruned
// weights stay 0, which is the "winning ticket"), and drops the optimizer state stored on the
// parameters (momentum, Adam moments). Adam's bias correction also counts Optimizer::steps,
// which lives on the optimizer: pass it to have steps reset to 0 too, or build a new one.
// Throws sprig::Error if the names or shapes differ from the model's.
void rewind_weights(nn::Model& model, const WeightSnapshot& snapshot,
                    nn::Optimizer* optimizer = nullptr);

}  // namespace sprig::prune
