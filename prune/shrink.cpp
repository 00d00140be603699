#include "prune/shrink.h"

#include <cmath>
#include <memory>

#include "engine/rng.h"
#include "nn/summary.h"
#include "prune/groups.h"

namespace sprig::prune {

namespace {

Tensor to_cpu(const Tensor& t) {
  return t.device().is_cpu() ? t : t.to(Device::cpu());
}

// Copies src viewed as (rows, units, inner) into dst (rows.size(), cols.size(), inner),
// keeping the listed rows and units. A bias is the case units = inner = 1.
template <typename T>
void gather(const T* src, int64_t units, int64_t inner, const std::vector<int64_t>& rows,
            const std::vector<int64_t>& cols, T* dst) {
  for (int64_t r : rows)
    for (int64_t c : cols) {
      const T* s = src + (r * units + c) * inner;
      for (int64_t x = 0; x < inner; ++x) *dst++ = s[x];
    }
}

// Slices one parameter (value and mask) of the old layer into the same-named parameter of the
// new one; the new value stays a leaf with requires_grad.
void slice_into(const nn::Parameter& from, nn::Parameter& to, int64_t units, int64_t inner,
                const std::vector<int64_t>& rows, const std::vector<int64_t>& cols) {
  Tensor src = to_cpu(from.value);
  gather(src.data(), units, inner, rows, cols, to.value.data());
  Device dev = from.value.device();
  if (!dev.is_cpu()) {
    to.value = to.value.to(dev);
    to.value.set_requires_grad(true);
  }
  if (from.mask) {
    Tensor keep_src = to_cpu(from.mask->keep);
    Tensor keep = Tensor::empty(to.value.shape(), DType::U8);
    gather(keep_src.data_as<uint8_t>(), units, inner, rows, cols, keep.data_as<uint8_t>());
    // The granularity stays: an output-channel mask is still one, and an element mask is
    // still valid. Block and N:M masks keep their zeros but their tiles / groups may no longer
    // line up once rows or columns go (they are then masks with the same zeros).
    to.mask = std::make_shared<nn::Mask>(nn::Mask{from.mask->granularity, keep.to(dev)});
  }
}

// One step of the removal fixed point: unit u can go when it is not fixed, has producers, and
// either nothing reads it (every consumer's weights on it are zero) or it is exactly zero: every
// producer row is zero on the inputs that stay and has a zero bias, and every BatchNorm on it
// has zero scale and shift (with a zero input, BN would still output its shift minus the
// scaled running mean). Reading rows on the inputs that stay lets removals cascade forward, so
// a second shrink is a no-op.
bool removable(const DependencyGraph& g, int u, const std::vector<char>& removed,
               std::vector<char>* constant_output) {
  const ChannelUnit& unit = g.units[u];
  if (unit.producers.empty() || (unit.fixed && unit.opaque_reader.empty())) return false;
  bool unread = !unit.consumers.empty();
  for (const UnitRef& c : unit.consumers) {
    const GraphLayer& L = g.layers[c.layer];
    Weighted w = as_weighted(L.module);
    Tensor wv = to_cpu(w.weight().value);  // (out, in, inner)
    const int64_t inner = wv.numel() / (w.out() * L.in);
    for (int64_t r = 0; r < w.out() && unread; ++r)
      for (int64_t x = 0; x < inner && unread; ++x)
        unread = wv.data()[(r * L.in + c.index) * inner + x] == 0.0f;
  }
  if (unread && !unit.fixed) return true;
  bool weights_zero = true, bias_zero = true;
  for (const UnitRef& p : unit.producers) {
    const GraphLayer& L = g.layers[p.layer];
    Weighted w = as_weighted(L.module);
    Tensor wv = to_cpu(w.weight().value);
    const int64_t inner = wv.numel() / (w.out() * L.in);
    for (int64_t c = 0; c < L.in && weights_zero; ++c) {
      if (removed[L.in_units[c]]) continue;
      const float* row = wv.data() + (p.index * L.in + c) * inner;
      for (int64_t x = 0; x < inner && weights_zero; ++x) weights_zero = row[x] == 0.0f;
    }
    if (w.bias()) bias_zero = bias_zero && to_cpu(w.bias()->value).data()[p.index] == 0.0f;
  }
  for (const UnitRef& n : unit.norms) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(g.layers[n.layer].module);
    bias_zero = bias_zero && to_cpu(bn->weight->value).data()[n.index] == 0.0f &&
                to_cpu(bn->bias->value).data()[n.index] == 0.0f;
  }
  if (weights_zero && !bias_zero && constant_output) (*constant_output)[u] = 1;
  if (unit.fixed && (unread || (weights_zero && bias_zero))) {
    const GraphLayer& P = g.layers[unit.producers[0].layer];
    throw Error("shrink: cannot remove channel " + std::to_string(unit.producers[0].index) +
                " of layer " + P.name + " (" + P.module->spec() + "): " + unit.opaque_reader +
                " reads it and is not a kind shrink can see through (bn, relu, pooling, "
                "flatten, shortcut, res)");
  }
  return !unit.fixed && weights_zero && bias_zero;
}

// The removed units: the fixed point of `removable`, then each layer keeps at least one
// output (its first), so no layer vanishes.
std::vector<char> removed_units(const DependencyGraph& g, std::vector<char>& constant_output) {
  std::vector<char> removed(g.units.size(), 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t u = 0; u < g.units.size(); ++u)
      if (!removed[u] && removable(g, int(u), removed, nullptr)) removed[u] = changed = true;
  }
  for (const GraphLayer& L : g.layers) {
    if (!as_weighted(L.module).ok()) continue;
    bool any = false;
    for (int u : L.out_units) any = any || !removed[u];
    if (!any && !L.out_units.empty()) removed[L.out_units[0]] = 0;
  }
  constant_output.assign(g.units.size(), 0);
  for (size_t u = 0; u < g.units.size(); ++u)
    if (!removed[u]) removable(g, int(u), removed, &constant_output);
  return removed;
}

std::vector<int64_t> kept(const std::vector<int>& units, const std::vector<char>& removed) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < units.size(); ++i)
    if (!removed[units[i]]) out.push_back(int64_t(i));
  return out;
}

// The smaller copy of one graph layer, or null when it keeps everything.
nn::ModulePtr build_small(const GraphLayer& L, const std::vector<char>& removed, Rng& dummy) {
  const std::vector<int64_t> rows = kept(L.out_units, removed), cols = kept(L.in_units, removed);
  if (int64_t(rows.size()) == L.out && int64_t(cols.size()) == L.in) return nullptr;
  const int64_t out = int64_t(rows.size()), in = int64_t(cols.size());
  nn::ModulePtr small;
  if (auto* conv = dynamic_cast<nn::Conv2d*>(L.module)) {
    auto c = std::make_shared<nn::Conv2d>(in, out, conv->kernel, conv->opt, conv->bias != nullptr,
                                          dummy);
    const int64_t kk = conv->kernel * conv->kernel;
    slice_into(*conv->weight, *c->weight, L.in, kk, rows, cols);
    if (conv->bias) slice_into(*conv->bias, *c->bias, 1, 1, rows, {0});
    small = c;
  } else if (auto* lin = dynamic_cast<nn::Linear*>(L.module)) {
    auto l = std::make_shared<nn::Linear>(in, out, lin->bias != nullptr, dummy);
    slice_into(*lin->weight, *l->weight, L.in, 1, rows, cols);
    if (lin->bias) slice_into(*lin->bias, *l->bias, 1, 1, rows, {0});
    small = l;
  } else if (auto* bn = dynamic_cast<nn::BatchNorm*>(L.module)) {
    auto b = std::make_shared<nn::BatchNorm>(out, bn->eps, bn->momentum);
    slice_into(*bn->weight, *b->weight, 1, 1, rows, {0});
    slice_into(*bn->bias, *b->bias, 1, 1, rows, {0});
    Tensor mean = to_cpu(bn->running_mean), var = to_cpu(bn->running_var);  // (C) each
    gather(mean.data(), 1, 1, rows, {0}, b->running_mean.data());
    gather(var.data(), 1, 1, rows, {0}, b->running_var.data());
    small = b;
  } else if (auto* sc = dynamic_cast<nn::Shortcut*>(L.module)) {
    // The input's surviving channels stay contiguous in the output (they are the same units);
    // the zero channels kept before them are the new padding.
    const int64_t lo = sc->pad_lo >= 0 ? sc->pad_lo : (sc->out_channels - L.in) / 2;
    int64_t pad = 0;
    for (int64_t r : rows) pad += r < lo;
    small = std::make_shared<nn::Shortcut>(out, sc->stride, pad);
  } else {
    throw Error("shrink: layer " + L.name + " (" + L.module->spec() + ") cannot be shrunk");
  }
  small->train(L.module->is_training());
  return small;
}

}  // namespace

static ShrinkReport shrink_on_host(nn::Model& model) {
  ShrinkReport report;
  report.params_before = model.num_parameters();
  // Everything is planned before any layer is replaced, so an error leaves the model as it was.
  const DependencyGraph g = build_dependency_graph(model);
  std::vector<char> constant_output;
  const std::vector<char> removed = removed_units(g, constant_output);
  Rng dummy(0);  // the new layers' initial values are overwritten with the kept weights
  std::vector<nn::ModulePtr> replacement(g.layers.size());
  for (size_t i = 0; i < g.layers.size(); ++i)
    replacement[i] = build_small(g.layers[i], removed, dummy);

  // Layers with nothing to remove stay the same objects.
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const GraphLayer& L = g.layers[i];
    Weighted w = as_weighted(L.module);
    ShrinkLayer r;
    if (w.ok()) {
      r.name = L.name;
      r.spec_before = L.module->spec();
      r.units_before = L.out;
      r.units_after = int64_t(kept(L.out_units, removed).size());
      for (int u : L.out_units) r.zero_weight_kept += constant_output[u];
    }
    if (replacement[i]) L.parent->layers[L.index] = replacement[i];
    if (w.ok()) {
      r.spec_after = L.parent->layers[L.index]->spec();
      report.layers.push_back(r);
    }
  }
  for (auto& [name, p] : model.named_parameters()) p->name = name;
  model.spec = model.net->spec();
  report.params_after = model.num_parameters();
  return report;
}

nn::Model copy_model(const nn::Model& m) {
  nn::Model c = nn::build_model(m.spec, m.input_shape, 0);
  auto src = m.named_parameters();
  auto dst = c.named_parameters();
  SPRIG_CHECK(src.size() == dst.size(), "copy_model: the model has ", src.size(),
              " parameters but its spec '", m.spec, "' builds ", dst.size());
  for (size_t k = 0; k < src.size(); ++k) {
    const nn::Parameter& s = *src[k].second;
    nn::Parameter& d = *dst[k].second;
    SPRIG_CHECK(s.value.shape() == d.value.shape(), "copy_model: parameter ", src[k].first,
                " has shape ", to_string(s.value.shape()), " but the spec gives ",
                to_string(d.value.shape()));
    d.value = s.value.clone();
    d.value.set_requires_grad(true);
    if (s.mask)
      d.mask = std::make_shared<nn::Mask>(nn::Mask{s.mask->granularity, s.mask->keep.clone()});
  }
  auto src_buffers = m.named_buffers(), dst_buffers = c.named_buffers();
  for (size_t k = 0; k < src_buffers.size() && k < dst_buffers.size(); ++k)
    *dst_buffers[k].second = src_buffers[k].second->clone();
  c.net->train(m.net->is_training());
  return c;
}

// Shrinking gathers rows and columns of small weights: a GPU model makes the trip through the
// host (and comes back even when shrink refuses the model).
ShrinkReport shrink(nn::Model& model) {
  const Device device = model.device();
  if (device.is_cpu()) return shrink_on_host(model);
  model.to(Device::cpu());
  try {
    ShrinkReport report = shrink_on_host(model);
    model.to(device);
    return report;
  } catch (...) {
    model.to(device);
    throw;
  }
}

void validate_flops_target(const PruneSpec& spec, double reduction) {
  SPRIG_CHECK(std::isfinite(reduction) && reduction >= 0.0 && reduction < 1.0,
              "FLOPs reduction must be in [0, 1), got ", reduction);
  SPRIG_CHECK(spec.granularity == Granularity::Filter || spec.granularity == Granularity::Channel,
              "a FLOPs target needs filter or channel granularity: ",
              nn::granularity_name(spec.granularity),
              " pruning zeroes weights inside layers that stay as wide, so their dense FLOPs stay");
  SPRIG_CHECK(spec.count < 0 && spec.threshold < 0,
              "a FLOPs target chooses the amount itself: drop the count / threshold");
}

FlopsSearch amount_for_flops(const nn::Model& model, const PruneSpec& spec,
                             const std::map<std::string, Tensor>& activation_scores,
                             double reduction) {
  validate_flops_target(spec, reduction);
  FlopsSearch out;
  out.flops_before = out.flops_after = nn::summarize(model).flops;
  if (reduction == 0.0) return out;
  const double budget = (1.0 - reduction) * double(out.flops_before);
  auto flops_at = [&](double amount) {
    nn::Model trial = copy_model(model);
    // Gradient-based criteria read the gradients accumulated on the original's parameters.
    auto from = model.named_parameters(), to = trial.named_parameters();
    for (size_t k = 0; k < from.size(); ++k)
      if (from[k].second->grad().defined())
        to[k].second->value.impl()->grad = from[k].second->grad().clone().impl_ptr();
    PruneSpec s = spec;
    s.amount = amount;
    prune_model(trial, s, activation_scores);
    shrink(trial);
    return nn::summarize(trial).flops;
  };
  // Each group prunes its lowest-scoring units, a prefix that grows with the amount, so the
  // FLOPs fall monotonically and bisection finds the boundary.
  double lo = 0.0, hi = 1.0 - 1e-9;
  int64_t flops_hi = flops_at(hi);
  SPRIG_CHECK(double(flops_hi) <= budget, "a FLOPs reduction of ", reduction,
              " is out of reach: pruning all but --min-keep ", spec.min_keep,
              " units of every group leaves ", flops_hi, " of ", out.flops_before, " FLOPs (",
              100.0 * (1.0 - double(flops_hi) / double(out.flops_before)), "% removed)");
  while (hi - lo > 1e-4) {
    const double mid = 0.5 * (lo + hi);
    const int64_t f = flops_at(mid);
    if (double(f) <= budget) {
      hi = mid;
      flops_hi = f;
    } else {
      lo = mid;
    }
  }
  out.amount = hi;
  out.flops_after = flops_hi;
  return out;
}

}  // namespace sprig::prune
