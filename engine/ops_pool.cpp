// Max pooling front-end; kernels in kernels/cpu/pool.cpp.
#include "engine/ops.h"
#include "engine/ops_common.h"
#include "kernels/cpu/pool.h"

namespace sprig {
using namespace detail;

namespace {

struct MaxPool2dBackward : Node {
  cpu::Pool2dShape s;
  Tensor argmax;  // (N, C, P, Q) int32, flat index within each (H, W) plane
  const char* name() const override { return "MaxPool2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    Tensor dx = Tensor::empty(inputs[0].shape(), DType::F32, dy.device());
    backend_for(dy.device()).maxpool2d_backward(s, dy.ptr(), argmax.ptr_as<int32_t>(), dx.ptr());
    return {dx};
  }
};

}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_float(x, "max_pool2d", "input");
  SPRIG_CHECK(x.dim() == 4, "max_pool2d: input must be (N, C, H, W), got ", to_string(x.shape()));
  if (stride == 0) stride = kernel;
  SPRIG_CHECK(kernel >= 1 && stride >= 1 && padding >= 0 && 2 * padding <= kernel,
              "max_pool2d: need kernel >= 1, stride >= 1, 0 <= padding <= kernel/2 (got ", kernel,
              ", ", stride, ", ", padding, ")");
  cpu::Pool2dShape s{x.size(0), x.size(1), x.size(2), x.size(3), kernel, stride, padding};
  SPRIG_CHECK(s.P() >= 1 && s.Q() >= 1, "max_pool2d: input ", to_string(x.shape()),
              " is smaller than the ", kernel, "x", kernel, " window");
  Tensor y = Tensor::empty({s.N, s.C, s.P(), s.Q()}, DType::F32, x.device());
  Tensor argmax = Tensor::empty(y.shape(), DType::I32, x.device());
  backend_for(x.device()).maxpool2d_forward(s, x.ptr(), y.ptr(), argmax.ptr_as<int32_t>());
  if (!any_requires_grad({&x})) return y;
  auto node = make_node<MaxPool2dBackward>({x});
  node->s = s;
  node->argmax = argmax;
  return record(y, node);
}

}  // namespace sprig
