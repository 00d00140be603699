// Batch normalisation front-end; kernels (forward and backward) in kernels/cpu/norm.cpp.
#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "engine/ops_common.h"
#include "kernels/cpu/norm.h"

namespace sprig {
using namespace detail;

namespace {

struct BatchNormBackward : Node {
  BatchNormShape s;
  bool batch_stats = true;
  Tensor save_mean, save_invstd;  // (C) each: the statistics the forward pass normalised with
  // Synchronised statistics: the sums across processes, and the values they cover in all.
  SumAcrossProcesses sum_across;
  int64_t count = 0;
  const char* name() const override { return "BatchNormBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    const Tensor &x = inputs[0], &w = inputs[1];
    const Device dev = dy.device();
    Tensor dx, dw, db;
    if (needs_grad(0)) dx = Tensor::empty(x.shape(), DType::F32, dev);  // like x
    if (needs_grad(1)) dw = Tensor::empty({s.C}, DType::F32, dev);      // (C)
    if (needs_grad(2)) db = Tensor::empty({s.C}, DType::F32, dev);      // (C)
    const float* wp = w.defined() ? w.ptr() : nullptr;
    if (sum_across) {
      // This shard's sum(dy) and sum(dy * xhat) (its own dbeta and dgamma), summed over every
      // process: dx then moves through the whole batch's statistics. Every process calls this
      // once per backward, in the same order, as the forward's sums.
      Tensor dgamma = Tensor::empty({s.C}), dbeta = Tensor::empty({s.C});  // (C) each
      cpu::batchnorm_backward(s, false, x.ptr(), wp, save_mean.ptr(), save_invstd.ptr(), dy.ptr(),
                              nullptr, dgamma.ptr(), dbeta.ptr());
      std::vector<double> dsums(size_t(2 * s.C));  // sum(dy) (C), sum(dy * xhat) (C)
      for (int64_t c = 0; c < s.C; ++c) {
        dsums[size_t(c)] = dbeta.ptr()[c];
        dsums[size_t(s.C + c)] = dgamma.ptr()[c];
      }
      sum_across(dsums.data(), 2 * s.C);
      if (dx.defined())
        cpu::batchnorm_backward_from_sums(s, dsums.data(), count, x.ptr(), wp, save_mean.ptr(),
                                          save_invstd.ptr(), dy.ptr(), dx.ptr());
      if (dw.defined()) dw.copy_(dgamma);  // the parameters' own: reduced with every gradient
      if (db.defined()) db.copy_(dbeta);
      return {dx, dw, db};
    }
    backend_for(dev).batchnorm_backward(
        s, batch_stats, x.ptr(), wp, save_mean.ptr(), save_invstd.ptr(), dy.ptr(),
        dx.defined() ? dx.ptr() : nullptr, dw.defined() ? dw.ptr() : nullptr,
        db.defined() ? db.ptr() : nullptr);
    return {dx, dw, db};
  }
};

void check_channel_vector(const Tensor& t, const Tensor& x, int64_t C, const char* arg) {
  check_float(t, "batch_norm", arg);
  // Named, since the usual cause is a model whose buffers stayed behind (Model::to moves them).
  SPRIG_CHECK(t.device() == x.device(), "batch_norm: ", arg, " is on ", t.device().str(),
              " but the input is on ", x.device().str(), " (never copied silently)");
  SPRIG_CHECK(t.shape() == Shape{C}, "batch_norm: ", arg, " ", to_string(t.shape()),
              " does not match ", C, " channels of input ", to_string(x.shape()));
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  float momentum, float eps, const SumAcrossProcesses& sum_across) {
  check_float(x, "batch_norm", "input");
  SPRIG_CHECK(x.dim() == 2 || x.dim() == 4,
              "batch_norm: input must be (N, C) or (N, C, H, W), got ", to_string(x.shape()));
  SPRIG_CHECK(
      std::isfinite(eps) && eps > 0 && std::isfinite(momentum) && momentum >= 0 && momentum <= 1,
      "batch_norm: need eps > 0 and momentum in [0, 1] (got eps ", eps, ", momentum ", momentum,
      ")");
  const int64_t C = x.size(1);
  BatchNormShape s{x.size(0), C, x.dim() == 4 ? x.size(2) * x.size(3) : 1};
  check_channel_vector(running_mean, x, C, "running_mean");
  check_channel_vector(running_var, x, C, "running_var");
  if (weight.defined()) check_channel_vector(weight, x, C, "weight");
  if (bias.defined()) check_channel_vector(bias, x, C, "bias");
  // A batch of one value per channel has no variance to normalise by (PyTorch refuses it too).
  SPRIG_CHECK(!training || sum_across || s.count() > 1,
              "batch_norm: training needs more than one value per ", "channel, got input ",
              to_string(x.shape()), " (use a batch larger than 1)");

  const Device dev = x.device();
  Tensor y = Tensor::empty(x.shape(), DType::F32, dev);
  Tensor save_mean = Tensor::empty({C}, DType::F32, dev);    // (C)
  Tensor save_invstd = Tensor::empty({C}, DType::F32, dev);  // (C)
  const float* w = weight.defined() ? weight.ptr() : nullptr;
  const float* b = bias.defined() ? bias.ptr() : nullptr;
  const bool synced = training && sum_across;
  int64_t count = s.count();
  if (synced) {
    SPRIG_CHECK(dev.is_cpu(), "batch_norm: statistics synchronised across processes (--sync-bn) ",
                "run on the CPU only, got ", x.str());
    // Sums of x and x^2 and the value count over every process's shard.
    std::vector<double> sums(size_t(2 * C + 1));
    cpu::batchnorm_sums(s, x.ptr(), sums.data());
    sums.back() = double(count);
    sum_across(sums.data(), int64_t(sums.size()));
    count = int64_t(sums.back());
    SPRIG_CHECK(count > 1, "batch_norm: training needs more than one value per channel over ",
                "every process, got ", count);
    cpu::batchnorm_forward_from_sums(s, sums.data(), count, x.ptr(), w, b, eps, momentum,
                                     running_mean.ptr(), running_var.ptr(), y.ptr(),
                                     save_mean.ptr(), save_invstd.ptr());
  } else if (training)
    backend_for(dev).batchnorm_forward_train(s, x.ptr(), w, b, eps, momentum, running_mean.ptr(),
                                             running_var.ptr(), y.ptr(), save_mean.ptr(),
                                             save_invstd.ptr());
  else
    backend_for(dev).batchnorm_forward_eval(s, x.ptr(), w, b, running_mean.ptr(), running_var.ptr(),
                                            eps, y.ptr(), save_mean.ptr(), save_invstd.ptr());
  if (!any_requires_grad({&x, &weight, &bias})) return y;
  auto node = make_node<BatchNormBackward>({x, weight, bias});
  node->s = s;
  node->batch_stats = training;
  node->save_mean = save_mean;
  node->save_invstd = save_invstd;
  if (synced) {
    node->sum_across = sum_across;
    node->count = count;
  }
  return record(y, node);
}

}  // namespace sprig
