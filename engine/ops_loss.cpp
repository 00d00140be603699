// Losses: softmax cross-entropy (fused, stable) and mean squared error.
#include "engine/ops.h"
#include "engine/ops_common.h"

namespace sprig {
using namespace detail;

namespace {

struct CrossEntropyBackward : Node {
  Tensor labels;  // (N) int32
  const char* name() const override { return "CrossEntropyBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Tensor& logits = inputs[0];                                             // (N, C)
    Tensor dlogits = Tensor::empty(logits.shape(), DType::F32, logits.device());  // (N, C)
    backend_for(logits.device())
        .softmax_cross_entropy_backward(logits.size(0), logits.size(1), logits.ptr(),
                                        labels.ptr_as<int32_t>(), dout.ptr(), dlogits.ptr());
    return {dlogits};
  }
};

struct MseBackward : Node {
  const char* name() const override { return "MseBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Tensor &pred = inputs[0], &target = inputs[1];
    const Backend& be = backend_for(pred.device());
    Tensor dpred, dtarget;
    if (needs_grad(0)) {
      dpred = Tensor::empty(pred.shape(), DType::F32, be.device());
      be.mse_backward(pred.numel(), pred.ptr(), target.ptr(), dout.ptr(), dpred.ptr());
    }
    if (needs_grad(1)) {  // d/dtarget = -d/dpred
      dtarget = Tensor::empty(target.shape(), DType::F32, be.device());
      be.mse_backward(pred.numel(), target.ptr(), pred.ptr(), dout.ptr(), dtarget.ptr());
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
  // Labels may also come from the host with GPU logits: they are checked there and uploaded,
  // so the step does not wait for the GPU to check them (labels already on the GPU are checked
  // by a kernel, which does wait).
  SPRIG_CHECK(labels.device() == logits.device() || labels.device().is_cpu(),
              "cross_entropy: labels on ", labels.device().str(), " but logits on ",
              logits.device().str());
  int64_t N = logits.size(0), C = logits.size(1);
  SPRIG_CHECK(N > 0 && C > 0, "cross_entropy: empty logits ", to_string(logits.shape()));
  const Backend& be = backend_for(logits.device());
  if (!backend_for(labels.device()).labels_in_range(N, labels.ptr_as<int32_t>(), C)) {
    const std::vector<int32_t> host = labels.to_vector_i32();
    for (int64_t i = 0; i < N; ++i)
      SPRIG_CHECK(host[i] >= 0 && host[i] < C, "cross_entropy: label ", host[i], " at index ", i,
                  " is outside [0, ", C, ")");
  }
  const Tensor labels_here = labels.to(logits.device());  // (N)
  const int32_t* lab = labels_here.ptr_as<int32_t>();
  Tensor y = Tensor::empty({}, DType::F32, be.device());  // ()
  be.softmax_cross_entropy_forward(N, C, logits.ptr(), lab, y.ptr());
  if (!any_requires_grad({&logits})) return y;
  auto node = make_node<CrossEntropyBackward>({logits});
  node->labels = labels_here;
  return record(y, node);
}

Tensor mse_loss(const Tensor& pred, const Tensor& target) {
  check_float(pred, "mse_loss", "pred");
  check_float(target, "mse_loss", "target");
  check_same_device(pred, target, "mse_loss");
  check_same_shape(pred, target, "mse_loss");
  SPRIG_CHECK(pred.numel() > 0, "mse_loss: empty input");
  Tensor y = Tensor::empty({}, DType::F32, pred.device());  // ()
  backend_for(pred.device()).mse_forward(pred.numel(), pred.ptr(), target.ptr(), y.ptr());
  if (!any_requires_grad({&pred, &target})) return y;
  return record(y, make_node<MseBackward>({pred, target}));
}

}  // namespace sprig
