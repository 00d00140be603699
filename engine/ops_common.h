#pragma once
// Checks shared by the op front-ends (internal to engine/).
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/tensor.h"

namespace sprig::detail {

inline void check_float(const Tensor& t, const char* op, const char* arg) {
  SPRIG_CHECK(t.defined(), op, ": ", arg, " is undefined");
  SPRIG_CHECK(t.dtype() == DType::F32, op, ": ", arg, " must be float32, got ",
              dtype_name(t.dtype()));
}

inline void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  SPRIG_CHECK(a.device() == b.device(), op, ": inputs are on different devices (", a.device().str(),
              " and ", b.device().str(), ")");
}

inline void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  SPRIG_CHECK(a.shape() == b.shape(), op, ": shapes ", to_string(a.shape()), " and ",
              to_string(b.shape()), " differ");
}

// Builds a node of type N with the given inputs; the caller fills the saved fields.
template <typename N>
std::shared_ptr<N> make_node(std::vector<Tensor> inputs) {
  auto node = std::make_shared<N>();
  node->inputs = std::move(inputs);
  return node;
}

}  // namespace sprig::detail
