// Full reductions to one value: sum and mean.
#include "engine/ops.h"
#include "engine/ops_common.h"

namespace sprig {
using namespace detail;

namespace {

struct SumBackward : Node {
  float factor = 1.0f;  // 1 for sum, 1/n for mean
  const char* name() const override { return factor == 1.0f ? "SumBackward" : "MeanBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor dx = Tensor::empty(inputs[0].shape(), DType::F32, dout.device());
    backend_for(dout.device()).fill_scaled(dx.numel(), dout.ptr(), factor, dx.ptr());
    return {dx};
  }
};

Tensor reduce(const Tensor& x, bool is_mean, const char* op) {
  check_float(x, op, "input");
  SPRIG_CHECK(!is_mean || x.numel() > 0, op, ": mean of an empty tensor");
  // The mean divides the double sum before rounding to float.
  const float factor = is_mean ? float(1.0 / double(x.numel())) : 1.0f;
  Tensor y = Tensor::empty({}, DType::F32, x.device());  // ()
  backend_for(x.device()).sum(x.numel(), x.ptr(), factor, y.ptr());
  if (!any_requires_grad({&x})) return y;
  auto node = make_node<SumBackward>({x});
  node->factor = factor;
  return record(y, node);
}

}  // namespace

Tensor sum(const Tensor& x) {
  return reduce(x, false, "sum");
}
Tensor mean(const Tensor& x) {
  return reduce(x, true, "mean");
}

}  // namespace sprig
