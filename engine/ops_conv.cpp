// 2-D convolution front-end; the kernels (forward and backward) are in kernels/cpu/conv.cpp.
#include "engine/ops.h"
#include "engine/ops_common.h"
#include "kernels/cpu/conv.h"

namespace sprig {
using namespace detail;

namespace {

struct Conv2dBackward : Node {
  Conv2dShape s;
  const char* name() const override { return "Conv2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    const Tensor &x = inputs[0], &w = inputs[1];
    const Device dev = dy.device();
    Tensor dx, dw, db;
    if (needs_grad(0)) dx = Tensor::empty(x.shape(), DType::F32, dev);  // (N, C, H, W)
    if (needs_grad(1)) dw = Tensor::empty(w.shape(), DType::F32, dev);  // (K, C, R, S)
    if (needs_grad(2)) db = Tensor::empty({s.K}, DType::F32, dev);      // (K)
    backend_for(dev).conv2d_backward(
        s, x.ptr(), w.ptr(), dy.ptr(), dx.defined() ? dx.ptr() : nullptr,
        dw.defined() ? dw.ptr() : nullptr, db.defined() ? db.ptr() : nullptr);
    return {dx, dw, db};
  }
};

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt) {
  check_float(x, "conv2d", "input");
  check_float(weight, "conv2d", "weight");
  check_same_device(x, weight, "conv2d");
  SPRIG_CHECK(x.dim() == 4, "conv2d: input must be (N, C, H, W), got ", to_string(x.shape()));
  SPRIG_CHECK(weight.dim() == 4, "conv2d: weight must be (K, C, R, S), got ",
              to_string(weight.shape()));
  SPRIG_CHECK(x.size(1) == weight.size(1), "conv2d: input has ", x.size(1), " channels but weight ",
              to_string(weight.shape()), " expects ", weight.size(1));
  SPRIG_CHECK(opt.stride >= 1 && opt.padding >= 0 && opt.dilation >= 1,
              "conv2d: need stride >= 1, padding >= 0, dilation >= 1 (got ", opt.stride, ", ",
              opt.padding, ", ", opt.dilation, ")");
  Conv2dShape s{x.size(0),      x.size(1),      x.size(2),  x.size(3),   weight.size(0),
                weight.size(2), weight.size(3), opt.stride, opt.padding, opt.dilation};
  SPRIG_CHECK(s.P() >= 1 && s.Q() >= 1, "conv2d: input ", to_string(x.shape()),
              " is smaller than the (dilated) kernel ", to_string(weight.shape()), " with padding ",
              opt.padding);
  if (bias.defined()) {
    check_float(bias, "conv2d", "bias");
    check_same_device(x, bias, "conv2d");
    SPRIG_CHECK(bias.shape() == Shape{s.K}, "conv2d: bias ", to_string(bias.shape()),
                " does not match ", s.K, " output channels");
  }
  Tensor y = Tensor::empty({s.N, s.K, s.P(), s.Q()}, DType::F32, x.device());
  backend_for(x.device())
      .conv2d_forward(s, x.ptr(), weight.ptr(), bias.defined() ? bias.ptr() : nullptr, y.ptr());
  if (!any_requires_grad({&x, &weight, &bias})) return y;
  auto node = make_node<Conv2dBackward>({x, weight, bias});
  node->s = s;
  return record(y, node);
}

}  // namespace sprig
