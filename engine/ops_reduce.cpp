// Full reductions to one value: sum and mean.
#include "engine/ops.h"
#include "engine/ops_common.h"
#include "kernels/cpu/eltwise.h"
#include "kernels/cpu/reduce.h"

namespace sprig {
using namespace detail;

namespace {

struct SumBackward : Node {
  float factor = 1.0f;  // 1 for sum, 1/n for mean
  const char* name() const override { return factor == 1.0f ? "SumBackward" : "MeanBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    return {Tensor::full(inputs[0].shape(), dout.item() * factor)};
  }
};

Tensor reduce(const Tensor& x, bool is_mean, const char* op) {
  check_float(x, op, "input");
  SPRIG_CHECK(!is_mean || x.numel() > 0, op, ": mean of an empty tensor");
  double total = cpu::sum(x.numel(), x.data());
  float factor = is_mean ? 1.0f / float(x.numel()) : 1.0f;
  Tensor y = Tensor::full({}, float(is_mean ? total / double(x.numel()) : total));
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
