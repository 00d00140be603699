#include "prune/data_criteria.h"

#include <cmath>

#include "engine/autograd.h"

namespace sprig::prune {

// The loss of one batch, checked so that backward() can start from it.
static Tensor batch_loss(const LossFn& loss, const Tensor& x, const Tensor& y, int batch,
                         const char* who) {
  Tensor l = loss(x, y);
  SPRIG_CHECK(l.defined() && l.numel() == 1, who, ": the loss of batch ", batch,
              " must be a single value, got ", l.str());
  SPRIG_CHECK(l.requires_grad(), who, ": the loss of batch ", batch,
              " does not depend on the model's parameters (is grad mode off in the loss "
              "function?)");
  return l;
}

static void clear_grads(const nn::Model& model) {
  for (auto& p : model.parameters()) p->value.clear_grad();
}

void accumulate_gradients(nn::Model& model, const BatchFn& next, const LossFn& loss, int batches) {
  SPRIG_CHECK(batches != 0, "accumulate_gradients: batches must be > 0 (or < 0 for all), got 0");
  clear_grads(model);
  int done = 0;
  Tensor x, y;
  // backward() adds into each leaf's grad buffer, so the grads sum over the batches.
  while ((batches < 0 || done < batches) && next(x, y)) {
    batch_loss(loss, x, y, done, "accumulate_gradients").backward();
    ++done;
  }
  SPRIG_CHECK(done > 0, "accumulate_gradients: the batch function gave no batches");
  // A parameter the loss does not reach (e.g. a layer after the one the loss reads) gets
  // an explicit zero, so every grad() is defined for the criteria.
  for (auto& p : model.parameters())
    if (!p->grad().defined())
      p->value.impl()->grad = Tensor::zeros(p->value.shape(), DType::F32, p->device()).impl_ptr();
}

// ---- Taylor --------------------------------------------------------------------------------

namespace {

struct TaylorLayer {
  nn::Module* module = nullptr;
  std::string name;  // the weight's name, e.g. "0.weight"
  int64_t channels = 0;
  int hook_id = -1;
  std::vector<Tensor> outputs;  // this batch's outputs, (N, K, H, W) or (N, K), grad retained
  std::vector<double> theta;    // (K) running score
  int64_t examples = 0;         // examples seen (Paper variant averages over them)
};

// Removes the hooks and clears the parameters' grads however the scoring ends.
struct HookGuard {
  const nn::Model& model;
  std::vector<TaylorLayer>& layers;
  ~HookGuard() {
    for (TaylorLayer& l : layers) {
      if (l.hook_id >= 0) l.module->remove_forward_hook(l.hook_id);
      l.outputs.clear();
    }
    clear_grads(model);
  }
};

}  // namespace

// Adds one recorded output's contribution to l.theta; the batch it belongs to holds
// batch_total examples (more than a's N when a is one shard of it).
static void add_taylor(TaylorLayer& l, const Tensor& a, TaylorVariant variant,
                       int64_t batch_total) {
  SPRIG_CHECK(a.dim() >= 2 && a.size(1) == l.channels, "taylor: output of ", l.name, " is ",
              a.str(), ", expected (N, ", l.channels, ", ...)");
  int64_t N = a.size(0), K = l.channels;
  int64_t S = N > 0 && K > 0 ? a.numel() / (N * K) : 0;  // positions per map (1 for linear)
  l.examples += N;
  Tensor g = a.grad();
  if (!g.defined() || N == 0 || S == 0) return;  // the loss does not depend on this output
  // The per-channel sums are small next to the forward and backward that made a and g, so a
  // GPU model's activations are summed here on the host.
  const Tensor ha = a.to(Device::cpu()), hg = g.to(Device::cpu());
  const float* pa = ha.data();  // (N, K, S)
  const float* pg = hg.data();  // (N, K, S)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const float* an = pa + (n * K + k) * S;
      const float* gn = pg + (n * K + k) * S;
      double s = 0.0;
      for (int64_t i = 0; i < S; ++i) s += double(an[i]) * double(gn[i]);
      if (variant == TaylorVariant::ReferenceCode)
        l.theta[k] += s / double(batch_total * S);  // mean over (n, h, w) of the batch
      else
        l.theta[k] += std::fabs(s / double(S));  // |mean over (h, w)| of this example
    }
}

std::map<std::string, Tensor> taylor_filter_scores(nn::Model& model, const BatchFn& next,
                                                   const LossFn& loss, int batches,
                                                   TaylorVariant variant, const Shards& shards) {
  SPRIG_CHECK(batches != 0, "taylor_filter_scores: batches must be > 0 (or < 0 for all), got 0");
  std::map<const nn::Parameter*, std::string> names;
  for (auto& [name, p] : model.named_parameters()) names[p.get()] = name;

  std::vector<TaylorLayer> layers;
  for (auto& [path, m] : model.net->named_modules()) {
    TaylorLayer l;
    l.module = m;
    if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      l.name = names.at(conv->weight.get());
      l.channels = conv->out_channels;
    } else if (auto* lin = dynamic_cast<nn::Linear*>(m)) {
      l.name = names.at(lin->weight.get());
      l.channels = lin->out_features;
    } else {
      continue;
    }
    l.theta.assign(l.channels, 0.0);
    layers.push_back(std::move(l));
  }

  // Hooks hold pointers into `layers`, so they go in only once it stops growing.
  HookGuard guard{model, layers};
  for (TaylorLayer& l : layers) {
    TaylorLayer* lp = &l;
    l.hook_id = l.module->add_forward_hook([lp](nn::Module&, const Tensor&, const Tensor& out) {
      if (!grad_enabled() || !out.requires_grad()) return;  // e.g. an evaluation pass
      Tensor a = out;
      a.retain_grad();
      lp->outputs.push_back(a);
    });
  }

  int done = 0;
  Tensor x, y;
  while ((batches < 0 || done < batches) && next(x, y)) {
    for (TaylorLayer& l : layers) l.outputs.clear();
    batch_loss(loss, x, y, done, "taylor_filter_scores").backward();
    for (TaylorLayer& l : layers) {
      SPRIG_CHECK(!l.outputs.empty(), "taylor_filter_scores: layer ", l.name,
                  " produced no output with grad in batch ", done,
                  " (does the loss function run model.forward with grad mode on?)");
      for (const Tensor& a : l.outputs)
        add_taylor(l, a, variant, shards.batch_total ? shards.batch_total() : a.size(0));
      l.outputs.clear();  // frees this batch's graph
    }
    ++done;
  }
  SPRIG_CHECK(done > 0, "taylor_filter_scores: the batch function gave no batches");
  if (shards.sum) {  // the sums before any |.| or division: as if one process saw every shard
    std::vector<double> all;
    for (TaylorLayer& l : layers) {
      all.insert(all.end(), l.theta.begin(), l.theta.end());
      all.push_back(double(l.examples));
    }
    shards.sum(all);
    size_t at = 0;
    for (TaylorLayer& l : layers) {
      for (double& t : l.theta) t = all[at++];
      l.examples = int64_t(all[at++]);
    }
  }

  std::map<std::string, Tensor> scores;
  for (TaylorLayer& l : layers) {
    double norm2 = 0.0;
    for (double& t : l.theta) {
      if (variant == TaylorVariant::Paper && l.examples > 0) t /= double(l.examples);
      t = std::fabs(t);
      norm2 += t * t;
    }
    double inv = norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 0.0;  // all zero: leave zeros, not NaN
    Tensor s = Tensor::empty({l.channels});                   // (K)
    for (int64_t k = 0; k < l.channels; ++k) s.data()[k] = float(l.theta[k] * inv);
    scores[l.name] = s;
  }
  return scores;
}

}  // namespace sprig::prune
