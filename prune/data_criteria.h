#pragma once
// Pruning criteria that need data: gradients of the loss (for the gradient and weight x
// gradient criteria in prune/prune.h) and Molchanov et al.'s Taylor scores of feature maps.
// prune/ does not depend on datasets/, so batches come in through callbacks.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nn/model.h"

namespace sprig::prune {

// Fills x and y with the next batch; returns false when there are no more.
using BatchFn = std::function<bool(Tensor& x, Tensor& y)>;
// The loss of a batch as a one-value tensor, e.g. cross_entropy(model.forward(x), y). It must
// run the model's forward with grad mode on.
using LossFn = std::function<Tensor(const Tensor& x, const Tensor& y)>;

// Sets every parameter's grad() to the gradient of the loss summed over up to `batches`
// batches (batches < 0: every batch next() gives), clearing previous grads first. Parameters
// the loss does not reach get a zero gradient. The raw gradient is kept at masked weights too;
// criteria skip units that are already pruned. Throws if batches == 0 or next() gives none.
void accumulate_gradients(nn::Model& model, const BatchFn& next, const LossFn& loss, int batches);

// How the Taylor score of a feature map is reduced over a batch (a = the layer's output,
// g = dL/da, both (N, K, H, W) for conv and (N, K) for linear; H = W = 1 for linear).
enum class TaylorVariant {
  // The reference implementation (Jacob Gildenblat, pytorch-pruning, finetune.py), which
  // seed 002 follows: per batch theta_k += mean over (n, h, w) of a * g, summed over batches,
  // then theta_k = |theta_k|. Positive and negative examples can cancel.
  ReferenceCode,
  // Molchanov et al. 2017, "Pruning Convolutional Neural Networks for Resource Efficient
  // Inference" (ICLR 2017, arXiv:1611.06440), eq. 8: per example theta_nk = |mean over
  // (h, w) of a * g|, then the mean over all examples of all batches.
  Paper,
};

// Scoring spread over processes (data-parallel), each seeing one shard of every batch: the
// loss function must return this shard's share of the whole batch's mean loss, so that
// gradients are the whole batch's; batch_total() gives the whole batch's size, and sum() adds
// values over every process in place (every process receives the totals). Left empty: one
// process sees whole batches.
struct Shards {
  std::function<int64_t()> batch_total;
  std::function<void(std::vector<double>& values)> sum;
};

// Taylor scores per output channel / neuron of every Conv2d and Linear weight of the model,
// inside blocks too (Molchanov et al. 2017), keyed by weight name ("0.weight", ...), each an
// (out) f32 tensor, higher = more important, l2-normalised per layer (theta / ||theta||_2, the
// paper's layer-wise normalisation; an all-zero layer stays zero). The activation is the
// layer's own output, before any ReLU that follows (as in the reference code). Uses up to
// `batches` batches (batches < 0: all). Forward hooks are removed before returning, also when
// something throws, and every parameter's grad is cleared at the end.
// The result is what prune_model expects for Criterion::Taylor with Granularity::Filter.
// With shards, every process returns the scores of all of their batches together.
std::map<std::string, Tensor> taylor_filter_scores(
    nn::Model& model, const BatchFn& next, const LossFn& loss, int batches,
    TaylorVariant variant = TaylorVariant::ReferenceCode, const Shards& shards = {});

}  // namespace sprig::prune
