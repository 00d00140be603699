#pragma once
// Define-by-run autograd. Each differentiable op that sees an input requiring grad records
// a Node on its output; backward() walks the nodes in reverse topological order.
#include <functional>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace sprig {

struct Node {
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  // Given d(loss)/d(output), returns d(loss)/d(inputs[i]) for each input, in order.
  // An entry may be undefined when inputs[i] does not require grad.
  virtual std::vector<Tensor> backward(const Tensor& dout) = 0;
  bool needs_grad(size_t i) const {
    return i < inputs.size() && inputs[i].defined() && inputs[i].requires_grad();
  }

  std::vector<Tensor> inputs;  // the tensors this node sends gradients to
};

// Grad mode is per thread; NoGradGuard turns recording off in its scope.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// While one lives, backward() on this thread calls fn with each leaf right after storing its
// gradient. Leaves are visited once, after every path to them, so that gradient is final:
// data-parallel training starts reducing it there while backward goes on. One per thread.
class GradReadyHook {
 public:
  explicit GradReadyHook(std::function<void(const TensorImpl* leaf)> fn);
  ~GradReadyHook();
  GradReadyHook(const GradReadyHook&) = delete;
  GradReadyHook& operator=(const GradReadyHook&) = delete;
};

// True when an op with these inputs must record a node.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);

// Attaches node to out (and marks out as requiring grad) if any of node->inputs requires grad
// and grad mode is on. Returns out.
Tensor record(Tensor out, std::shared_ptr<Node> node);

}  // namespace sprig
