// Fake quantisation for quantisation-aware training: forward rounds to the codes the int8
// kernels will use and back to float; backward is the straight-through estimator (Bengio et al.
// 2013; PyTorch's FakeQuantize): the gradient passes unchanged where the quantiser does not
// clamp. Rounding has no useful derivative (zero almost everywhere), so no finite-difference
// check applies; the tests check the estimator's definition instead.
#include <cmath>

#include "engine/ops.h"
#include "engine/ops_common.h"

namespace sprig {
using namespace detail;

namespace {

struct FakeQuantizeBackward : Node {
  Tensor x;  // the input, which tells where the quantiser clamped
  float scale = 1.0f;
  int32_t zero = 0;
  const char* name() const override { return "FakeQuantizeBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor dx = Tensor::empty(dout.shape(), DType::F32, dout.device());
    backend_for(dout.device())
        .fake_quantize_backward(dout.numel(), x.ptr(), dout.ptr(), scale, zero, dx.ptr());
    return {dx};
  }
};

// Every weight lies inside its channel's range (the scale comes from the largest), so the
// estimator passes the whole gradient.
struct FakeQuantizeChannelsBackward : Node {
  const char* name() const override { return "FakeQuantizeChannelsBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override { return {dout}; }
};

}  // namespace

Tensor fake_quantize(const Tensor& x, float scale, int32_t zero) {
  check_float(x, "fake_quantize", "x");
  SPRIG_CHECK(std::isfinite(scale) && scale > 0 && zero >= 0 && zero <= 255,
              "fake_quantize: scale ", scale, " and zero point ", zero,
              " are not a positive scale and a uint8");
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  backend_for(x.device()).fake_quantize(x.numel(), x.ptr(), scale, zero, y.ptr());
  if (!any_requires_grad({&x})) return y;
  auto node = make_node<FakeQuantizeBackward>({x});
  node->x = x.detach();
  node->scale = scale;
  node->zero = zero;
  return record(y, node);
}

Tensor fake_quantize_per_channel(const Tensor& w) {
  check_float(w, "fake_quantize_per_channel", "w");
  SPRIG_CHECK(w.dim() >= 1, "fake_quantize_per_channel: w must have an output-channel dimension");
  const int64_t rows = w.size(0), cols = rows ? w.numel() / rows : 0;
  Tensor y = Tensor::empty(w.shape(), DType::F32, w.device());
  backend_for(w.device()).fake_quantize_channels(rows, cols, w.ptr(), y.ptr());
  if (!any_requires_grad({&w})) return y;
  return record(y, make_node<FakeQuantizeChannelsBackward>({w}));
}

}  // namespace sprig
