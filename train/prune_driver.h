#pragma once
// The pruning pipeline behind `sprig prune` and the experiments: data-driven criteria,
// schedules (one-shot, iterative, gradual polynomial decay) with fine-tuning, and shrinking.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "prune/data_criteria.h"
#include "prune/prune.h"
#include "prune/schedule.h"
#include "train/trainer.h"

namespace sprig::train {

struct PrunePlan {
  prune::PruneSpec spec;         // what to prune (amount = the final target)
  prune::ScheduleSpec schedule;  // how to get there
  int finetune_epochs = 0;       // per iterative step; the whole run for agp
  int criterion_batches = 10;    // batches for gradient / Taylor criteria
  prune::TaylorVariant taylor_variant = prune::TaylorVariant::ReferenceCode;
  OptimizerConfig optim;  // fine-tuning optimizer
  FitConfig fit;          // fine-tuning loop (epochs is set per phase); fit.comm: data-parallel
  bool shrink = false;    // remove zeroed filters / neurons at the end
  // >= 0: a one-shot plan prunes to the amount that removes this fraction of the FLOPs once
  // shrunk (prune::amount_for_flops on the criterion's scores), not to spec.amount.
  double flops_reduction = -1.0;
  // Lottery-ticket rewinding (Frankle & Carbin 2019; Frankle et al. 2020): after each pruning
  // step the surviving weights go back to these early values before fine-tuning.
  std::map<std::string, Tensor> rewind;
};

struct PruneStep {
  double target = 0.0;        // the schedule's target sparsity of the pruned units (the amount)
  double sparsity = 0.0;      // of the whole model after this step
  EvalResult after_prune;     // before fine-tuning
  EvalResult after_finetune;  // equal to after_prune when there is no fine-tuning
  std::vector<EpochStats> epochs;
};

struct PruneOutcome {
  EvalResult before, after;
  int64_t params_before = 0, params_after = 0, nonzero_after = 0;
  double sparsity = 0.0;  // 1 - nonzero_after / params_before
  std::vector<PruneStep> steps;
  prune::PruneReport last_report;
};

// Checks the plan against the model before any work (prune::validate_spec, and a FLOPs target's
// granularity, schedule and count); run_prune_plan calls it first.
void validate_plan(const nn::Model& model, const PrunePlan& plan);

// Runs the plan on model with the given data (the model is changed in place).
PruneOutcome run_prune_plan(nn::Model& model, const DataSource& src, const PrunePlan& plan);

// Computes what plan.spec.criterion needs from data: gradients on the parameters (gradient,
// weight x gradient) or Molchanov activation scores (Taylor filters), which it returns. Over a
// comm of several ranks each rank takes its shard of every batch and the sums are all-reduced
// before any score is formed, so every rank derives the scores (and masks) one process would.
std::map<std::string, Tensor> prepare_criterion(
    nn::Model& model, const DataSource& src, const prune::PruneSpec& spec, int batches,
    uint64_t seed, prune::TaylorVariant variant = prune::TaylorVariant::ReferenceCode,
    const dist::Comm& comm = dist::Comm::self());

}  // namespace sprig::train
