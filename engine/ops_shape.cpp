// Shape views: reshape and flatten share storage with their input.
#include "engine/ops.h"
#include "engine/ops_common.h"

namespace sprig {
using namespace detail;

namespace {

Tensor make_view(const Tensor& x, const Shape& shape) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.impl()->storage;
  impl->offset = x.impl()->offset;
  impl->shape = shape;
  impl->dtype = x.dtype();
  return Tensor(std::move(impl));
}

struct ReshapeBackward : Node {
  const char* name() const override { return "ReshapeBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    return {make_view(dout, inputs[0].shape())};
  }
};

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  SPRIG_CHECK(x.defined(), "reshape: input is undefined");
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      SPRIG_CHECK(infer < 0, "reshape: more than one -1 in ", to_string(shape));
      infer = int64_t(i);
    } else {
      SPRIG_CHECK(out[i] >= 0, "reshape: negative dimension in ", to_string(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    SPRIG_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot infer -1 in ",
                to_string(shape), " for ", x.numel(), " values");
    out[infer] = x.numel() / known;
  }
  SPRIG_CHECK(numel(out) == x.numel(), "reshape: ", to_string(x.shape()), " (", x.numel(),
              " values) cannot be viewed as ", to_string(shape));
  Tensor y = make_view(x, out);
  if (!any_requires_grad({&x})) return y;
  return record(y, make_node<ReshapeBackward>({x}));
}

Tensor flatten(const Tensor& x, int64_t start_dim) {
  SPRIG_CHECK(x.defined(), "flatten: input is undefined");
  int64_t d = x.dim();
  if (start_dim < 0) start_dim += d;
  SPRIG_CHECK(start_dim >= 0 && start_dim < std::max<int64_t>(d, 1), "flatten: start_dim ",
              start_dim, " out of range for shape ", to_string(x.shape()));
  Shape out(x.shape().begin(), x.shape().begin() + start_dim);
  int64_t rest = 1;
  for (int64_t i = start_dim; i < d; ++i) rest *= x.size(i);
  out.push_back(rest);
  return reshape(x, out);
}

}  // namespace sprig
