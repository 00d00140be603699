#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/backend.h"

namespace sprig {

static thread_local bool g_grad_enabled = true;

bool grad_enabled() {
  return g_grad_enabled;
}
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  g_grad_enabled = prev_;
}

static thread_local std::function<void(const TensorImpl*)>* g_grad_ready = nullptr;

GradReadyHook::GradReadyHook(std::function<void(const TensorImpl*)> fn) {
  SPRIG_CHECK(!g_grad_ready, "a GradReadyHook is already installed on this thread");
  g_grad_ready = new std::function<void(const TensorImpl*)>(std::move(fn));
}
GradReadyHook::~GradReadyHook() {
  delete g_grad_ready;
  g_grad_ready = nullptr;
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

Tensor record(Tensor out, std::shared_ptr<Node> node) {
  if (!g_grad_enabled) return out;
  bool needed = false;
  for (const Tensor& t : node->inputs) needed = needed || (t.defined() && t.requires_grad());
  if (!needed) return out;
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = std::move(node);
  return out;
}

// A gradient being summed during backward. The first contribution is taken as is (it may
// share storage with another tensor); a second one copies it before adding in place.
struct GradSlot {
  Tensor value;
  bool owned = false;
};

static void accumulate(GradSlot& slot, const Tensor& g) {
  if (!slot.value.defined()) {
    slot.value = g;
    return;
  }
  if (!slot.owned) {
    slot.value = slot.value.clone();
    slot.owned = true;
  }
  Tensor& acc = slot.value;
  SPRIG_CHECK(acc.shape() == g.shape() && acc.device() == g.device(), "backward: gradient ",
              g.str(), " does not match accumulated ", acc.str());
  backend_for(acc.device()).add(acc.numel(), acc.ptr(), g.ptr(), acc.ptr());
}

// Gradients kept on a tensor (leaves, and non-leaves with retain_grad) accumulate (+=) across
// backward calls, in a buffer the tensor owns.
static void store_grad(TensorImpl& t, const Tensor& g) {
  if (!t.grad) {
    t.grad = g.clone().impl_ptr();
    return;
  }
  Tensor acc(t.grad);
  SPRIG_CHECK(acc.shape() == g.shape() && acc.device() == g.device(), "backward: gradient ",
              g.str(), " does not match the stored ", acc.str());
  backend_for(acc.device()).add(acc.numel(), acc.ptr(), g.ptr(), acc.ptr());
}

void Tensor::backward(const Tensor& seed) const {
  SPRIG_CHECK(requires_grad(), "backward() on a tensor that does not require grad");
  Tensor root_grad = seed;
  if (!root_grad.defined()) {
    SPRIG_CHECK(numel() == 1, "backward() without a seed needs a single value, got shape ",
                to_string(shape()));
    root_grad = Tensor::full(shape(), 1.0f, device());
  }
  SPRIG_CHECK(root_grad.device() == device(), "backward seed is on ", root_grad.device().str(),
              " but ", str(), " is on ", device().str());
  SPRIG_CHECK(root_grad.shape() == shape(), "backward seed ", root_grad.str(), " does not match ",
              str());
  NoGradGuard no_grad;  // backward formulas are not themselves recorded

  // Reverse topological order by iterative depth-first search over grad_fn edges.
  std::vector<TensorImpl*> order;
  std::unordered_set<TensorImpl*> seen;
  std::vector<std::pair<std::shared_ptr<TensorImpl>, size_t>> stack;
  stack.push_back({impl_ptr(), 0});
  seen.insert(impl());
  while (!stack.empty()) {
    auto& [t, next] = stack.back();
    const auto& fn = t->grad_fn;
    if (fn && next < fn->inputs.size()) {
      const Tensor& in = fn->inputs[next++];
      if (in.defined() && in.requires_grad() && !seen.count(in.impl())) {
        seen.insert(in.impl());
        stack.push_back({in.impl_ptr(), 0});
      }
      continue;
    }
    order.push_back(t.get());
    stack.pop_back();
  }

  std::unordered_map<TensorImpl*, GradSlot> grads;
  grads[impl()].value = root_grad;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    TensorImpl* t = *it;
    auto found = grads.find(t);
    if (found == grads.end()) continue;
    Tensor g = found->second.value;
    grads.erase(found);
    if (t->grad_fn && t->retain_grad) store_grad(*t, g);
    if (t->grad_fn) {
      Node& node = *t->grad_fn;
      std::vector<Tensor> dinputs = node.backward(g);
      SPRIG_CHECK(dinputs.size() == node.inputs.size(), node.name(), " returned ", dinputs.size(),
                  " gradients for ", node.inputs.size(), " inputs");
      for (size_t i = 0; i < dinputs.size(); ++i) {
        if (!node.needs_grad(i) || !dinputs[i].defined()) continue;
        SPRIG_CHECK(dinputs[i].shape() == node.inputs[i].shape(), node.name(), " gradient ", i,
                    " has shape ", to_string(dinputs[i].shape()), ", input has ",
                    to_string(node.inputs[i].shape()));
        accumulate(grads[node.inputs[i].impl()], dinputs[i]);
      }
    } else if (t->requires_grad) {
      store_grad(*t, g);
      if (g_grad_ready) (*g_grad_ready)(t);
    }
  }
}

}  // namespace sprig
