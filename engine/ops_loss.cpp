// Losses: softmax cross-entropy (fused, stable) and mean squared error.
#include "engine/ops.h"
#include "engine/ops_common.h"
#include "kernels/cpu/loss.h"

namespace sprig {
using namespace detail;

namespace {

struct CrossEntropyBackward : Node {
  Tensor labels;  // (N) int32
  const char* name() const override { return "CrossEntropyBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Tensor& logits = inputs[0];  // (N, C)
    Tensor dlogits = Tensor::empty(logits.shape());
    cpu::softmax_cross_entropy_backward(logits.size(0), logits.size(1), logits.data(),
                                        labels.data_as<int32_t>(), dout.item(), dlogits.data());
    return {dlogits};
  }
};

struct MseBackward : Node {
  const char* name() const override { return "MseBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Tensor &pred = inputs[0], &target = inputs[1];
    Tensor dpred, dtarget;
    if (needs_grad(0)) {
      dpred = Tensor::empty(pred.shape());
      cpu::mse_backward(pred.numel(), pred.data(), target.data(), dout.item(), dpred.data());
    }
    if (needs_grad(1)) {  // d/dtarget = -d/dpred
      dtarget = Tensor::empty(target.shape());
      cpu::mse_backward(pred.numel(), target.data(), pred.data(), dout.item(), dtarget.data());
    }
    return {dpred, dtarget};
  }
};

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  check_float(logits, "cross_entropy", "logits");
  SPRIG_CHECK(logits.dim() == 2, "cross_entropy: logits must be (N, C), got ",
              to_string(logits.shape()));
  SPRIG_CHECK(labels.defined() && labels.dtype() == DType::I32,
              "cross_entropy: labels must be int32");
  SPRIG_CHECK(labels.shape() == Shape{logits.size(0)}, "cross_entropy: labels ",
              to_string(labels.shape()), " do not match logits ", to_string(logits.shape()));
  int64_t N = logits.size(0), C = logits.size(1);
  SPRIG_CHECK(N > 0 && C > 0, "cross_entropy: empty logits ", to_string(logits.shape()));
  const int32_t* lab = labels.data_as<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    SPRIG_CHECK(lab[i] >= 0 && lab[i] < C, "cross_entropy: label ", lab[i], " at index ", i,
                " is outside [0, ", C, ")");
  float loss = cpu::softmax_cross_entropy_forward(N, C, logits.data(), lab);
  Tensor y = Tensor::full({}, loss);
  if (!any_requires_grad({&logits})) return y;
  auto node = make_node<CrossEntropyBackward>({logits});
  node->labels = labels;
  return record(y, node);
}

Tensor mse_loss(const Tensor& pred, const Tensor& target) {
  check_float(pred, "mse_loss", "pred");
  check_float(target, "mse_loss", "target");
  check_same_device(pred, target, "mse_loss");
  check_same_shape(pred, target, "mse_loss");
  SPRIG_CHECK(pred.numel() > 0, "mse_loss: empty input");
  Tensor y = Tensor::full({}, cpu::mse_forward(pred.numel(), pred.data(), target.data()));
  if (!any_requires_grad({&pred, &target})) return y;
  return record(y, make_node<MseBackward>({pred, target}));
}

}  // namespace sprig
