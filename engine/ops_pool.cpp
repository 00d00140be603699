// Pooling front-ends (max, average, global average, the option-A shortcut); kernels in
// kernels/cpu/pool.cpp.
#include "engine/ops.h"
#include "engine/ops_common.h"
#include "kernels/cpu/pool.h"

namespace sprig {
using namespace detail;

namespace {

struct MaxPool2dBackward : Node {
  Pool2dShape s;
  Tensor argmax;  // (N, C, P, Q) int32, flat index within each (H, W) plane
  const char* name() const override { return "MaxPool2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    Tensor dx = Tensor::empty(inputs[0].shape(), DType::F32, dy.device());
    backend_for(dy.device()).maxpool2d_backward(s, dy.ptr(), argmax.ptr_as<int32_t>(), dx.ptr());
    return {dx};
  }
};

struct AvgPool2dBackward : Node {
  Pool2dShape s;
  const char* name() const override { return "AvgPool2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    Tensor dx = Tensor::empty(inputs[0].shape(), DType::F32, dy.device());  // (N, C, H, W)
    backend_for(dy.device()).avgpool2d_backward(s, dy.ptr(), dx.ptr());
    return {dx};
  }
};

struct GlobalAvgPool2dBackward : Node {
  int64_t planes = 0, hw = 0;
  const char* name() const override { return "GlobalAvgPool2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    Tensor dx = Tensor::empty(inputs[0].shape(), DType::F32, dy.device());  // (N, C, H, W)
    backend_for(dy.device()).global_avgpool_backward(planes, hw, dy.ptr(), dx.ptr());
    return {dx};
  }
};

struct ShortcutBackward : Node {
  ShortcutShape s;
  const char* name() const override { return "ShortcutBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    Tensor dx = Tensor::empty(inputs[0].shape(), DType::F32, dy.device());  // (N, C, H, W)
    backend_for(dy.device()).shortcut_backward(s, dy.ptr(), dx.ptr());
    return {dx};
  }
};

// The window checks max and average pooling share; returns the kernels' shape.
Pool2dShape pool_shape(const Tensor& x, const char* op, int64_t kernel, int64_t stride,
                       int64_t padding) {
  check_float(x, op, "input");
  SPRIG_CHECK(x.dim() == 4, op, ": input must be (N, C, H, W), got ", to_string(x.shape()));
  if (stride == 0) stride = kernel;
  SPRIG_CHECK(kernel >= 1 && stride >= 1 && padding >= 0 && 2 * padding <= kernel, op,
              ": need kernel >= 1, stride >= 1, 0 <= padding <= kernel/2 (got ", kernel, ", ",
              stride, ", ", padding, ")");
  Pool2dShape s{x.size(0), x.size(1), x.size(2), x.size(3), kernel, stride, padding};
  SPRIG_CHECK(s.P() >= 1 && s.Q() >= 1, op, ": input ", to_string(x.shape()),
              " is smaller than the ", kernel, "x", kernel, " window");
  return s;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const Pool2dShape s = pool_shape(x, "max_pool2d", kernel, stride, padding);
  Tensor y = Tensor::empty({s.N, s.C, s.P(), s.Q()}, DType::F32, x.device());
  if (!any_requires_grad({&x})) {  // no backward: no argmax to keep
    backend_for(x.device()).maxpool2d_forward(s, x.ptr(), y.ptr(), nullptr);
    return y;
  }
  Tensor argmax = Tensor::empty(y.shape(), DType::I32, x.device());
  backend_for(x.device()).maxpool2d_forward(s, x.ptr(), y.ptr(), argmax.ptr_as<int32_t>());
  auto node = make_node<MaxPool2dBackward>({x});
  node->s = s;
  node->argmax = argmax;
  return record(y, node);
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const Pool2dShape s = pool_shape(x, "avg_pool2d", kernel, stride, padding);
  Tensor y = Tensor::empty({s.N, s.C, s.P(), s.Q()}, DType::F32, x.device());
  backend_for(x.device()).avgpool2d_forward(s, x.ptr(), y.ptr());
  if (!any_requires_grad({&x})) return y;
  auto node = make_node<AvgPool2dBackward>({x});
  node->s = s;
  return record(y, node);
}

Tensor global_avg_pool2d(const Tensor& x) {
  check_float(x, "global_avg_pool2d", "input");
  SPRIG_CHECK(x.dim() == 4, "global_avg_pool2d: input must be (N, C, H, W), got ",
              to_string(x.shape()));
  const int64_t planes = x.size(0) * x.size(1), hw = x.size(2) * x.size(3);
  Tensor y = Tensor::empty({x.size(0), x.size(1), 1, 1}, DType::F32, x.device());
  backend_for(x.device()).global_avgpool_forward(planes, hw, x.ptr(), y.ptr());
  if (!any_requires_grad({&x})) return y;
  auto node = make_node<GlobalAvgPool2dBackward>({x});
  node->planes = planes;
  node->hw = hw;
  return record(y, node);
}

Tensor shortcut(const Tensor& x, int64_t out_channels, int64_t stride, int64_t pad_lo) {
  check_float(x, "shortcut", "input");
  SPRIG_CHECK(x.dim() == 4, "shortcut: input must be (N, C, H, W), got ", to_string(x.shape()));
  const int64_t C = x.size(1);
  pad_lo = shortcut_pad_lo(out_channels, C, pad_lo);
  SPRIG_CHECK(stride >= 1 && out_channels >= C && pad_lo >= 0 && pad_lo <= out_channels - C,
              "shortcut: need stride >= 1 and room for the input's ", C, " channels among ",
              out_channels, " output channels after ", pad_lo, " zero channels (stride ", stride,
              ")");
  ShortcutShape s{x.size(0), C, x.size(2), x.size(3), out_channels, stride, pad_lo};
  Tensor y = Tensor::empty({s.N, s.K, s.P(), s.Q()}, DType::F32, x.device());
  backend_for(x.device()).shortcut_forward(s, x.ptr(), y.ptr());
  if (!any_requires_grad({&x})) return y;
  auto node = make_node<ShortcutBackward>({x});
  node->s = s;
  return record(y, node);
}

}  // namespace sprig
