#include "train/prune_driver.h"

#include <algorithm>

#include "datasets/dataloader.h"
#include "engine/ops.h"
#include "prune/data_criteria.h"
#include "prune/shrink.h"

namespace sprig::train {

// The ranks a plan runs over (fit.comm, else this process alone).
static const dist::Comm& comm_of(const PrunePlan& plan) {
  return plan.fit.comm ? *plan.fit.comm : dist::Comm::self();
}

static bool needs_gradients(const prune::PruneSpec& s) {
  return s.criterion == prune::Criterion::Gradient ||
         (s.criterion == prune::Criterion::Taylor && s.granularity != prune::Granularity::Filter);
}

std::map<std::string, Tensor> prepare_criterion(nn::Model& model, const DataSource& src,
                                                const prune::PruneSpec& spec, int batches,
                                                uint64_t seed, prune::TaylorVariant variant,
                                                const dist::Comm& comm) {
  bool taylor_filters =
      spec.criterion == prune::Criterion::Taylor && spec.granularity == prune::Granularity::Filter;
  if (!taylor_filters && !needs_gradients(spec)) return {};
  SPRIG_CHECK(batches > 0, "criterion ", prune::criterion_name(spec.criterion),
              " needs data: --criterion-batches must be > 0");
  const int64_t batch_size = 64;
  data::DataLoader loader(src.data.train, batch_size, /*shuffle=*/true, seed);
  loader.set_shard(comm.rank(), comm.size());
  loader.start_epoch();
  const int64_t last = src.data.train.size() % batch_size;
  SPRIG_CHECK(comm.size() <= std::min(batch_size, src.data.train.size()) &&
                  (last == 0 || last >= comm.size()),
              "scoring on ", comm.size(), " ranks needs at least ", comm.size(),
              " samples in every batch of ", batch_size, ", but ", src.data.train.size(),
              " training samples leave a batch of ", last);
  data::Batch b;
  prune::BatchFn next = [&](Tensor& x, Tensor& y) {
    if (!loader.next(b)) return false;
    x = b.x.to(model.device());
    y = b.y.to(model.device());
    return true;
  };
  Task task = src.task;
  // Evaluation mode: BatchNorm normalises with its running statistics and leaves them alone,
  // so scoring does not change the model it scores (gradients flow all the same).
  nn::ModeGuard mode(*model.net, /*training=*/false);
  // A shard's share of the whole batch's mean loss, so that its gradients are the batch's.
  prune::LossFn loss = [&, task](const Tensor& x, const Tensor& y) {
    Tensor out = model.forward(x);
    Tensor l = task == Task::Classification ? cross_entropy(out, y) : mse_loss(out, y);
    return comm.size() == 1 ? l : scale(l, float(double(b.x.size(0)) / double(b.total)));
  };
  if (taylor_filters) {
    prune::Shards shards;
    if (comm.size() > 1) {
      shards.batch_total = [&] { return b.total; };
      shards.sum = [&](std::vector<double>& v) { comm.allreduce_sum(v.data(), int64_t(v.size())); };
    }
    return prune::taylor_filter_scores(model, next, loss, batches, variant, shards);
  }
  prune::accumulate_gradients(model, next, loss, batches);
  if (comm.size() > 1)  // the shards' gradients, summed: every rank holds the batches' gradient
    for (auto& p : model.parameters()) {
      Tensor g = p->grad();
      Tensor host = g.to(Device::cpu());  // g itself on the CPU: summed in place
      comm.allreduce_sum(host.data(), host.numel());
      if (!g.device().is_cpu()) g.copy_(host);
    }
  return {};
}

// Prunes to target (cumulative), computing the criterion's data first. With a FLOPs target the
// amount comes from the scores instead, and target is set to it.
static prune::PruneReport prune_to(nn::Model& model, const DataSource& src, const PrunePlan& plan,
                                   double& target, int64_t round) {
  prune::PruneSpec spec = plan.spec;
  spec.amount = target;
  auto scores = prepare_criterion(model, src, spec, plan.criterion_batches, spec.seed + round,
                                  plan.taylor_variant, comm_of(plan));
  if (plan.flops_reduction >= 0.0)
    target = spec.amount =
        prune::amount_for_flops(model, spec, scores, plan.flops_reduction).amount;
  prune::PruneReport report = prune::prune_model(model, spec, scores);
  // Gradients used as a criterion must not leak into the next optimizer step.
  for (auto& p : model.parameters()) p->value.clear_grad();
  return report;
}

static std::vector<EpochStats> finetune(nn::Model& model, const DataSource& src,
                                        const PrunePlan& plan, int epochs,
                                        std::function<void(int64_t)> after_step = nullptr) {
  if (epochs <= 0) return {};
  auto opt = make_optimizer(plan.optim, model.parameters());
  FitConfig fc = plan.fit;
  fc.epochs = epochs;
  fc.after_step = std::move(after_step);
  return fit(model, *opt, src.data.train, src.data.test, src.task, fc);
}

void validate_plan(const nn::Model& model, const PrunePlan& plan) {
  prune::validate_spec(model, plan.spec);
  if (plan.flops_reduction < 0.0) return;
  prune::validate_flops_target(plan.spec, plan.flops_reduction);
  SPRIG_CHECK(plan.schedule.kind == prune::ScheduleSpec::OneShot,
              "a FLOPs target needs --schedule oneshot: iterative and agp schedules score a model "
              "that is already pruned, so no amount chosen up front guarantees the FLOPs");
}

PruneOutcome run_prune_plan(nn::Model& model, const DataSource& src, const PrunePlan& plan) {
  validate_plan(model, plan);
  PruneOutcome out;
  out.params_before = model.num_parameters();
  out.before = evaluate(model, src.data.test, src.task, 256, comm_of(plan));

  using Kind = prune::ScheduleSpec::Kind;
  if (plan.schedule.kind == Kind::Polynomial) {
    // Gradual pruning during fine-tuning (Zhu & Gupta 2017): at every pruning step of the
    // schedule the target rises along the cubic, and training in between lets the network
    // recover.
    SPRIG_CHECK(plan.rewind.empty(),
                "--rewind applies to oneshot and iterative schedules, not agp "
                "(gradual pruning keeps training the same weights)");
    const prune::PolynomialDecay& agp = plan.schedule.agp;
    data::DataLoader probe(src.data.train, plan.fit.batch_size);
    int64_t total_steps = int64_t(plan.finetune_epochs) * int64_t(probe.num_batches());
    SPRIG_CHECK(agp.end_step <= total_steps, "agp end step ", agp.end_step, " is beyond the ",
                total_steps, " training steps of --finetune-epochs ", plan.finetune_epochs);
    PruneStep step;
    step.target = agp.final_sparsity;
    int64_t round = 0;
    step.epochs = finetune(model, src, plan, plan.finetune_epochs, [&](int64_t t) {
      double target = agp.sparsity_at(t);
      if (agp.should_prune(t)) out.last_report = prune_to(model, src, plan, target, round++);
    });
    step.sparsity = prune::sparsity(model);
    step.after_prune = step.after_finetune =
        evaluate(model, src.data.test, src.task, 256, comm_of(plan));
    out.steps.push_back(step);
  } else {
    std::vector<double> targets = plan.schedule.targets;
    if (plan.schedule.kind == Kind::OneShot) targets = {plan.spec.amount};
    for (size_t k = 0; k < targets.size(); ++k) {
      PruneStep step;
      step.target = targets[k];
      out.last_report = prune_to(model, src, plan, step.target, int64_t(k));
      if (!plan.rewind.empty()) prune::rewind_weights(model, prune::WeightSnapshot{plan.rewind});
      step.after_prune = evaluate(model, src.data.test, src.task, 256, comm_of(plan));
      step.epochs = finetune(model, src, plan, plan.finetune_epochs);
      step.after_finetune = step.epochs.empty() ? step.after_prune : step.epochs.back().test;
      step.sparsity = prune::sparsity(model);
      out.steps.push_back(step);
    }
  }

  if (plan.shrink) prune::shrink(model);
  out.after = evaluate(model, src.data.test, src.task, 256, comm_of(plan));
  out.params_after = model.num_parameters();
  for (auto& p : model.parameters()) out.nonzero_after += p->count_nonzero();
  // Relative to the original model, so shrunk and masked results compare directly.
  out.sparsity = 1.0 - double(out.nonzero_after) / double(out.params_before);
  return out;
}

}  // namespace sprig::train
