// Matrix products: matmul and linear (x W^T + b). Forward and backward side by side.
#include "engine/ops.h"
#include "engine/ops_common.h"

namespace sprig {
using namespace detail;

namespace {

struct MatmulBackward : Node {
  const char* name() const override { return "MatmulBackward"; }
  std::vector<Tensor> backward(const Tensor& dc) override {
    const Tensor &a = inputs[0], &b = inputs[1];  // a (M, K), b (K, N), dc (M, N)
    int64_t M = a.size(0), K = a.size(1), N = b.size(1);
    const Backend& be = backend_for(dc.device());
    Tensor da, db;
    if (needs_grad(0)) {  // da (M, K) = dc b^T
      da = Tensor::empty({M, K}, DType::F32, be.device());
      be.gemm(false, true, M, K, N, 1.0f, dc.ptr(), N, b.ptr(), N, 0.0f, da.ptr(), K);
    }
    if (needs_grad(1)) {  // db (K, N) = a^T dc
      db = Tensor::empty({K, N}, DType::F32, be.device());
      be.gemm(true, false, K, N, M, 1.0f, a.ptr(), K, dc.ptr(), N, 0.0f, db.ptr(), N);
    }
    return {da, db};
  }
};

struct LinearBackward : Node {
  const char* name() const override { return "LinearBackward"; }
  std::vector<Tensor> backward(const Tensor& dy) override {
    const Tensor &x = inputs[0], &w = inputs[1];  // x (N, in), w (out, in), dy (N, out)
    int64_t N = x.size(0), in = x.size(1), out = w.size(0);
    const Backend& be = backend_for(dy.device());
    Tensor dx, dw, db;
    if (needs_grad(0)) {  // dx (N, in) = dy w
      dx = Tensor::empty({N, in}, DType::F32, be.device());
      be.gemm(false, false, N, in, out, 1.0f, dy.ptr(), out, w.ptr(), in, 0.0f, dx.ptr(), in);
    }
    if (needs_grad(1)) {  // dw (out, in) = dy^T x
      dw = Tensor::empty({out, in}, DType::F32, be.device());
      be.gemm(true, false, out, in, N, 1.0f, dy.ptr(), out, x.ptr(), in, 0.0f, dw.ptr(), in);
    }
    if (needs_grad(2)) {  // db (out) = sum over the batch of dy
      db = Tensor::empty({out}, DType::F32, be.device());
      be.sum_rows(N, out, dy.ptr(), db.ptr());
    }
    return {dx, dw, db};
  }
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_float(a, "matmul", "a");
  check_float(b, "matmul", "b");
  check_same_device(a, b, "matmul");
  SPRIG_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "matmul: shapes ",
              to_string(a.shape()), " and ", to_string(b.shape()),
              " do not chain (need (M, K) x (K, N))");
  int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const Backend& be = backend_for(a.device());
  Tensor c = Tensor::empty({M, N}, DType::F32, be.device());
  be.gemm(false, false, M, N, K, 1.0f, a.ptr(), K, b.ptr(), N, 0.0f, c.ptr(), N);
  if (!any_requires_grad({&a, &b})) return c;
  return record(c, make_node<MatmulBackward>({a, b}));
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float(x, "linear", "input");
  check_float(weight, "linear", "weight");
  check_same_device(x, weight, "linear");
  SPRIG_CHECK(weight.dim() == 2, "linear: weight must be (out, in), got ",
              to_string(weight.shape()));
  SPRIG_CHECK(x.dim() == 2 && x.size(1) == weight.size(1), "linear: input ", to_string(x.shape()),
              " does not match weight ", to_string(weight.shape()), " (need input (N, ",
              weight.size(1), "))");
  int64_t N = x.size(0), in = x.size(1), out = weight.size(0);
  if (bias.defined()) {
    check_float(bias, "linear", "bias");
    check_same_device(x, bias, "linear");
    SPRIG_CHECK(bias.shape() == Shape{out}, "linear: bias ", to_string(bias.shape()),
                " does not match ", out, " outputs");
  }
  const Backend& be = backend_for(x.device());
  Tensor y = Tensor::empty({N, out}, DType::F32, be.device());
  be.gemm(false, true, N, out, in, 1.0f, x.ptr(), in, weight.ptr(), in, 0.0f, y.ptr(), out);
  if (bias.defined()) be.add_row_bias(N, out, bias.ptr(), y.ptr());
  if (!any_requires_grad({&x, &weight, &bias})) return y;
  return record(y, make_node<LinearBackward>({x, weight, bias}));
}

}  // namespace sprig
