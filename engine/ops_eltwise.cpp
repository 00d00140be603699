// Element-wise ops: add, sub, mul, scale, relu. Forward and backward side by side.
#include "engine/ops.h"
#include "engine/ops_common.h"

namespace sprig {
using namespace detail;

namespace {

struct AddBackward : Node {
  float sign_b = 1.0f;  // +1 for add, -1 for sub
  const char* name() const override { return sign_b > 0 ? "AddBackward" : "SubBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor db;
    if (needs_grad(1)) {
      if (sign_b > 0) {
        db = dout;
      } else {
        db = Tensor::empty(dout.shape(), DType::F32, dout.device());
        backend_for(dout.device()).scale(dout.numel(), dout.ptr(), -1.0f, db.ptr());
      }
    }
    return {needs_grad(0) ? dout : Tensor(), db};
  }
};

Tensor add_or_sub(const Tensor& a, const Tensor& b, float sign_b, const char* op) {
  check_float(a, op, "a");
  check_float(b, op, "b");
  check_same_device(a, b, op);
  check_same_shape(a, b, op);
  const Backend& be = backend_for(a.device());
  Tensor out = Tensor::empty(a.shape(), DType::F32, be.device());
  if (sign_b > 0)
    be.add(a.numel(), a.ptr(), b.ptr(), out.ptr());
  else
    be.sub(a.numel(), a.ptr(), b.ptr(), out.ptr());
  if (!any_requires_grad({&a, &b})) return out;
  auto node = make_node<AddBackward>({a, b});
  node->sign_b = sign_b;
  return record(out, node);
}

struct MulBackward : Node {
  const char* name() const override { return "MulBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor da, db;
    const Tensor &a = inputs[0], &b = inputs[1];
    const Backend& be = backend_for(dout.device());
    if (needs_grad(0)) {
      da = Tensor::empty(a.shape(), DType::F32, be.device());
      be.mul(a.numel(), dout.ptr(), b.ptr(), da.ptr());
    }
    if (needs_grad(1)) {
      db = Tensor::empty(b.shape(), DType::F32, be.device());
      be.mul(b.numel(), dout.ptr(), a.ptr(), db.ptr());
    }
    return {da, db};
  }
};

struct ScaleBackward : Node {
  float s = 1.0f;
  const char* name() const override { return "ScaleBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor dx = Tensor::empty(dout.shape(), DType::F32, dout.device());
    backend_for(dout.device()).scale(dout.numel(), dout.ptr(), s, dx.ptr());
    return {dx};
  }
};

struct ReluBackward : Node {
  Tensor y;  // the output; y > 0 exactly where x > 0, so it stands in for x
  const char* name() const override { return "ReluBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor dx = Tensor::empty(dout.shape(), DType::F32, dout.device());
    backend_for(dout.device()).relu_backward(dout.numel(), y.ptr(), dout.ptr(), dx.ptr());
    return {dx};
  }
};

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return add_or_sub(a, b, 1.0f, "add");
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return add_or_sub(a, b, -1.0f, "sub");
}

Tensor mul(const Tensor& a, const Tensor& b) {
  check_float(a, "mul", "a");
  check_float(b, "mul", "b");
  check_same_device(a, b, "mul");
  check_same_shape(a, b, "mul");
  Tensor out = Tensor::empty(a.shape(), DType::F32, a.device());
  backend_for(a.device()).mul(a.numel(), a.ptr(), b.ptr(), out.ptr());
  if (!any_requires_grad({&a, &b})) return out;
  return record(out, make_node<MulBackward>({a, b}));
}

Tensor scale(const Tensor& a, float s) {
  check_float(a, "scale", "a");
  Tensor out = Tensor::empty(a.shape(), DType::F32, a.device());
  backend_for(a.device()).scale(a.numel(), a.ptr(), s, out.ptr());
  if (!any_requires_grad({&a})) return out;
  auto node = make_node<ScaleBackward>({a});
  node->s = s;
  return record(out, node);
}

Tensor relu(const Tensor& x) {
  check_float(x, "relu", "x");
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  backend_for(x.device()).relu_forward(x.numel(), x.ptr(), y.ptr());
  if (!any_requires_grad({&x})) return y;
  auto node = make_node<ReluBackward>({x});
  node->y = y.detach();
  return record(y, node);
}

}  // namespace sprig
