// Choosing units to prune and installing the masks: prune_model (layer and global scope), N:M,
// and the torch.nn.utils.prune-like wrappers.
//
// Decisions worth knowing:
// - A fractional amount prunes round(amount * units) units, rounding half to even like Python's
//   round() in torch.nn.utils.prune (0.5 of 5 weights prunes 2, 0.5 of 7 prunes 4).
// - Targets are cumulative: units an earlier mask pruned stay pruned and count toward them.
// - count is per layer with Layer scope and over all chosen units with Global scope.
// - Ties in score are broken by position: the earlier layer, then the lower index, goes first.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "prune/masking_internal.h"

namespace sprig::prune {

using detail::already_pruned;
using detail::install_mask;
using detail::install_units;
using detail::LayerUnits;
using detail::report_for;
using detail::select_units;
using detail::Target;
using detail::unit_of;
using detail::WeightView;

std::pair<int64_t, int64_t> parse_nm(const std::string& s) {
  auto fail = [&](const char* why) {
    return Error("bad N:M sparsity pattern '" + s + "': " + why + " (e.g. 2:4)");
  };
  auto number = [&](const std::string& t) {
    if (t.empty() || t.size() > 9 || t.find_first_not_of("0123456789") != std::string::npos)
      throw fail("N and M must be positive integers");
    return int64_t(std::stoll(t));
  };
  size_t colon = s.find(':');
  if (colon == std::string::npos) throw fail("expected N:M");
  int64_t n = number(s.substr(0, colon)), m = number(s.substr(colon + 1));
  if (n <= 0 || m <= 0) throw fail("N and M must be positive integers");
  if (n > m) throw fail("N must not exceed M");
  return {n, m};
}

// ---- choosing layers ----

namespace {

struct WeightedLayer {
  std::string name;  // of the weight, e.g. "2.weight"
  nn::ParameterPtr weight, bias;
};

}  // namespace

static std::vector<WeightedLayer> weighted_layers(const nn::Model& model) {
  SPRIG_CHECK(model.net, "cannot prune a model without layers");
  std::vector<WeightedLayer> out;
  for (auto& [path, m] : model.net->named_modules()) {
    if (auto* l = dynamic_cast<const nn::Linear*>(m))
      out.push_back({path + ".weight", l->weight, l->bias});
    if (auto* c = dynamic_cast<const nn::Conv2d*>(m))
      out.push_back({path + ".weight", c->weight, c->bias});
  }
  return out;
}

static void check_spec(const PruneSpec& s) {
  SPRIG_CHECK(s.amount >= 0.0 && s.amount <= 1.0, "pruning amount must be in [0, 1], got ",
              s.amount);
  SPRIG_CHECK(s.count >= -1, "pruning count must be >= 0 (or -1 to use the amount), got ", s.count);
  SPRIG_CHECK(!std::isnan(s.threshold), "pruning threshold is NaN");
  SPRIG_CHECK(!(s.count >= 0 && s.threshold >= 0), "give a pruning count (", s.count,
              ") or a threshold (", s.threshold, "), not both");
  SPRIG_CHECK(s.min_keep >= 0, "min_keep must be >= 0, got ", s.min_keep);
  if (s.granularity == Granularity::NM)
    SPRIG_CHECK(s.n > 0 && s.m > 0 && s.n <= s.m, "bad N:M sparsity ", s.n, ":", s.m,
                ": need 0 < N <= M");
}

void validate_spec(const nn::Model& model, const PruneSpec& spec) {
  check_spec(spec);
  detail::check_applies(spec.criterion, spec.granularity);
  SPRIG_CHECK(!prunable_weights(model, spec).empty(), "nothing to prune: ",
              weighted_layers(model).empty()
                  ? "the model has no conv or linear weights"
                  : "the include/exclude lists leave no weight (filter pruning skips the last "
                    "layer, channel pruning the first)");
}

std::vector<std::pair<std::string, nn::ParameterPtr>> prunable_weights(const nn::Model& model,
                                                                       const PruneSpec& spec) {
  std::vector<WeightedLayer> layers = weighted_layers(model);
  auto listed = [](const std::vector<std::string>& names, const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  std::vector<std::string> valid;
  for (auto& l : layers) valid.push_back(l.name);
  auto check_names = [&](const std::vector<std::string>& names, const char* what) {
    for (auto& n : names) {
      if (listed(valid, n)) continue;
      std::string all;
      for (auto& v : valid) all += (all.empty() ? "" : ", ") + v;
      throw Error("unknown weight '" + n + "' in the " + what + " list; prunable weights are " +
                  (all.empty() ? "(none)" : all));
    }
  };
  check_names(spec.include, "include");
  check_names(spec.exclude, "exclude");

  std::vector<std::pair<std::string, nn::ParameterPtr>> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    // The last layer's outputs are the classes and the first layer's inputs are the data.
    if (spec.granularity == Granularity::Filter && i + 1 == layers.size()) continue;
    if (spec.granularity == Granularity::Channel && i == 0) continue;
    if (!spec.include.empty() && !listed(spec.include, layers[i].name)) continue;
    if (listed(spec.exclude, layers[i].name)) continue;
    out.push_back({layers[i].name, layers[i].weight});
  }
  return out;
}

// ---- choosing units ----

// Units whose every element an earlier mask already zeroed: they stay pruned.
std::vector<uint8_t> detail::already_pruned(const nn::Parameter& w, const WeightView& v,
                                            Granularity g) {
  const int64_t U = detail::num_units(v, g);
  std::vector<uint8_t> pruned(U, 0);
  if (!w.mask) return pruned;
  const Tensor host_keep = w.mask->keep.to(Device::cpu());
  const uint8_t* keep = host_keep.data_as<uint8_t>();  // (rows, cols)
  std::vector<int64_t> kept(U, 0);
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = 0; c < v.cols; ++c) kept[unit_of(v, g, r, c)] += keep[r * v.cols + c] != 0;
  for (int64_t u = 0; u < U; ++u) pruned[u] = kept[u] == 0;
  return pruned;
}

// Marks more units of `layers` pruned, lowest score first, until the spec's target for them
// together is met. With one layer this is layer scope, with all of them global scope. No layer
// loses units below min_keep; units pruned earlier count toward the target and stay pruned.
void detail::select_units(const std::vector<LayerUnits*>& layers, const PruneSpec& spec,
                          const UnitFilter& may_prune) {
  struct Candidate {
    float score;
    int64_t layer, index;
  };
  int64_t total = 0, pruned = 0;
  std::vector<int64_t> room(layers.size());  // units each layer may still lose
  std::vector<Candidate> cands;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerUnits& L = *layers[l];
    const int64_t U = int64_t(L.score.size());
    int64_t p = 0;
    for (int64_t u = 0; u < U; ++u) {
      if (L.pruned[u])
        ++p;
      else
        cands.push_back({L.score[u], int64_t(l), u});
    }
    total += U;
    pruned += p;
    room[l] = std::max<int64_t>(0, U - spec.min_keep - p);
  }
  std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score < b.score;
    if (a.layer != b.layer) return a.layer < b.layer;
    return a.index < b.index;
  });

  const bool by_threshold = spec.count < 0 && spec.threshold >= 0;
  int64_t target = 0;
  if (spec.count >= 0) {
    SPRIG_CHECK(spec.count <= total, "cannot prune ", spec.count, " units of ",
                layers.size() == 1 ? "'" + layers[0]->name + "'" : std::string("the model"),
                ": there are only ", total);
    target = spec.count;
  } else if (by_threshold) {
    target = total;  // the threshold stops it
  } else {
    target = int64_t(std::nearbyint(spec.amount * double(total)));  // half to even
  }
  for (const Candidate& c : cands) {
    if (pruned >= target) break;
    if (by_threshold && !(c.score < spec.threshold)) break;
    if (room[c.layer] == 0) continue;
    if (may_prune && !may_prune(c.layer, c.index)) continue;
    layers[c.layer]->pruned[c.index] = 1;
    --room[c.layer];
    ++pruned;
  }
}

void detail::normalise_scores(LayerUnits& L) {
  double ss = 0.0;
  for (float x : L.score) ss += double(x) * double(x);
  if (ss > 0.0)
    for (float& x : L.score) x = float(double(x) / std::sqrt(ss));
}

// ---- installing masks ----

// keep must already include the old mask's zeros. A mask that now mixes two structures is
// recorded as element, the only structure both follow; one that adds no zeros keeps its own.
void detail::install_mask(nn::Parameter& p, Tensor keep, Granularity g) {
  if (p.mask && p.mask->granularity != g) {
    const Tensor host_old = p.mask->keep.to(Device::cpu());
    const uint8_t* old = host_old.data_as<uint8_t>();
    const uint8_t* now = keep.data_as<uint8_t>();
    bool old_has_zeros = false, same = true;
    for (int64_t i = 0; i < p.numel(); ++i) {
      old_has_zeros |= old[i] == 0;
      same &= (old[i] != 0) == (now[i] != 0);
    }
    if (same)
      g = p.mask->granularity;
    else if (old_has_zeros)
      g = Granularity::Element;
  }
  p.set_mask(std::move(keep), g);
}

LayerReport detail::report_for(const Target& t, int64_t units, int64_t pruned_units) {
  LayerReport r;
  r.name = t.name;
  r.units = units;
  r.pruned_units = pruned_units;
  r.params = t.weight->numel() + (t.bias ? t.bias->numel() : 0);
  r.nonzero = t.weight->count_nonzero() + (t.bias ? t.bias->count_nonzero() : 0);
  return r;
}

void detail::install_units(const Target& t, const WeightView& v, Granularity g,
                           const std::vector<uint8_t>& pruned) {
  nn::Parameter& w = *t.weight;
  const Tensor host_old = w.mask ? w.mask->keep.to(Device::cpu()) : Tensor();
  const uint8_t* old = w.mask ? host_old.data_as<uint8_t>() : nullptr;
  Tensor keep = Tensor::empty(w.value.shape(), DType::U8);
  uint8_t* k = keep.data_as<uint8_t>();  // (rows, cols)
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = 0; c < v.cols; ++c) {
      int64_t i = r * v.cols + c;
      k[i] = !pruned[unit_of(v, g, r, c)] && (!old || old[i]);
    }
  install_mask(w, keep, g);

  // A pruned filter's bias would still add a constant to its output; mask it too so the
  // output is exactly 0 and shrink() can drop the filter without changing the model.
  bool any = std::find(pruned.begin(), pruned.end(), 1) != pruned.end();
  if (g != Granularity::Filter || !t.bias || !(any || t.bias->mask)) return;
  nn::Parameter& b = *t.bias;
  SPRIG_CHECK(b.numel() == v.rows, "bias '", b.name, "' has ", b.numel(), " entries for ", v.rows,
              " filters of '", t.name, "'");
  const Tensor host_bold = b.mask ? b.mask->keep.to(Device::cpu()) : Tensor();
  const uint8_t* bold = b.mask ? host_bold.data_as<uint8_t>() : nullptr;
  Tensor bkeep = Tensor::empty(b.value.shape(), DType::U8);
  uint8_t* bk = bkeep.data_as<uint8_t>();  // (out)
  for (int64_t r = 0; r < v.rows; ++r) bk[r] = !pruned[r] && (!bold || bold[r]);
  install_mask(b, bkeep, Granularity::Filter);
}

// N:M: in every group of M consecutive columns of a row keep the N highest-scoring weights. A
// short last group (cols not a multiple of M) keeps min(N, len): padded with zeros to M it is a
// valid N:M group, which is what sparse N:M kernels do with a ragged edge. Weights an earlier
// mask pruned stay pruned, so such a group may keep fewer than N.
static LayerReport prune_nm(const Target& t, const PruneSpec& spec, const Tensor& scores) {
  nn::Parameter& w = *t.weight;
  const WeightView v = detail::weight_view(w, spec);
  const float* s = scores.data();  // (rows, cols)
  const Tensor host_old = w.mask ? w.mask->keep.to(Device::cpu()) : Tensor();
  const uint8_t* old = w.mask ? host_old.data_as<uint8_t>() : nullptr;
  Tensor keep = Tensor::zeros(w.value.shape(), DType::U8);
  uint8_t* k = keep.data_as<uint8_t>();  // (rows, cols)
  std::vector<int64_t> idx;
  int64_t kept = 0;
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c0 = 0; c0 < v.cols; c0 += spec.m) {
      const int64_t len = std::min(spec.m, v.cols - c0);
      idx.clear();
      for (int64_t i = r * v.cols + c0; i < r * v.cols + c0 + len; ++i)
        if (!old || old[i]) idx.push_back(i);
      std::sort(idx.begin(), idx.end(),
                [&](int64_t a, int64_t b) { return s[a] != s[b] ? s[a] < s[b] : a < b; });
      const int64_t n_keep = std::min<int64_t>(std::min(spec.n, len), int64_t(idx.size()));
      for (size_t j = idx.size() - n_keep; j < idx.size(); ++j) k[idx[j]] = 1;
      kept += n_keep;
    }
  install_mask(w, keep, Granularity::NM);
  return report_for(t, w.numel(), w.numel() - kept);
}

// The core of prune_model and the wrappers: prunes targets per spec (already checked).
static std::vector<LayerReport> prune_targets(const std::vector<Target>& targets,
                                              const PruneSpec& spec,
                                              const std::map<std::string, Tensor>& activations) {
  std::vector<LayerReport> reports;
  const Granularity g = spec.granularity;
  if (g == Granularity::NM) {
    // Score every layer before any mask changes, so a bad layer leaves the model as it was.
    std::vector<Tensor> scores;
    for (const Target& t : targets)
      scores.push_back(unit_scores(*t.weight, spec.criterion, Granularity::NM, spec));
    for (size_t i = 0; i < targets.size(); ++i)
      reports.push_back(prune_nm(targets[i], spec, scores[i]));
    return reports;
  }

  // Score everything first so a bad layer fails before any mask changes.
  std::vector<WeightView> views;
  std::vector<LayerUnits> units(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    const Target& t = targets[i];
    views.push_back(detail::weight_view(*t.weight, spec));
    auto a = activations.find(t.name);
    Tensor s = unit_scores(*t.weight, spec.criterion, g, spec,
                           a == activations.end() ? nullptr : &a->second);
    units[i].name = t.name;
    units[i].score = s.to_vector();
    units[i].pruned = already_pruned(*t.weight, views[i], g);
  }

  if (spec.scope == Scope::Global) {
    // Element scores are compared raw across layers, as torch's global_unstructured does.
    // Structured scores grow with the unit's size (a conv filter sums C*R*S weights, a linear
    // neuron `in` weights) and differ in scale between layers, so each layer's scores are first
    // divided by the L2 norm of that layer's score vector. A threshold is then compared with
    // the normalised scores.
    if (g != Granularity::Element)
      for (LayerUnits& L : units) detail::normalise_scores(L);
    std::vector<LayerUnits*> all;
    for (LayerUnits& L : units) all.push_back(&L);
    select_units(all, spec);
  } else {
    for (LayerUnits& L : units) select_units({&L}, spec);
  }

  for (size_t i = 0; i < targets.size(); ++i) {
    install_units(targets[i], views[i], g, units[i].pruned);
    int64_t np = std::count(units[i].pruned.begin(), units[i].pruned.end(), 1);
    reports.push_back(report_for(targets[i], int64_t(units[i].pruned.size()), np));
  }
  return reports;
}

PruneReport prune_model(nn::Model& model, const PruneSpec& spec,
                        const std::map<std::string, Tensor>& activation_scores) {
  validate_spec(model, spec);
  if (spec.granularity == Granularity::Filter)
    return detail::prune_filter_groups(model, spec, activation_scores);
  std::vector<WeightedLayer> layers = weighted_layers(model);
  auto chosen = prunable_weights(model, spec);
  std::vector<Target> targets;
  for (auto& [name, w] : chosen) {
    nn::Parameter* bias = nullptr;
    for (auto& l : layers)
      if (l.name == name) bias = l.bias.get();
    targets.push_back({name, w.get(), bias});
  }
  PruneReport report;
  report.layers = prune_targets(targets, spec, activation_scores);
  for (auto& p : model.parameters()) {
    report.params += p->numel();
    report.nonzero += p->count_nonzero();
  }
  return report;
}

// ---- torch.nn.utils.prune-like wrappers ----
// Unlike prune_model they may prune a tensor completely (min_keep 0), as torch does, but the
// amount is cumulative as in PruneSpec (torch applies a repeated call to what is left).

static void prune_one(nn::Parameter& p, PruneSpec spec) {
  spec.min_keep = 0;
  check_spec(spec);
  prune_targets({Target{p.name, &p, nullptr}}, spec, {});
}

void l1_unstructured(nn::Parameter& p, double amount) {
  PruneSpec s;
  s.criterion = Criterion::Magnitude;
  s.amount = amount;
  prune_one(p, s);
}

void random_unstructured(nn::Parameter& p, double amount, uint64_t seed) {
  PruneSpec s;
  s.criterion = Criterion::Random;
  s.amount = amount;
  s.seed = seed;
  prune_one(p, s);
}

void ln_structured(nn::Parameter& p, double amount, int n, int dim) {
  SPRIG_CHECK(n == 1 || n == 2, "ln_structured: norm n must be 1 or 2, got ", n);
  SPRIG_CHECK(dim == 0 || dim == 1, "ln_structured: dim must be 0 (outputs) or 1 (inputs), got ",
              dim);
  PruneSpec s;
  s.criterion = n == 1 ? Criterion::L1Norm : Criterion::L2Norm;
  s.granularity = dim == 0 ? Granularity::Filter : Granularity::Channel;
  s.amount = amount;
  prune_one(p, s);  // a lone parameter: its bias, if any, is the caller's to mask
}

void global_unstructured(const std::vector<nn::Parameter*>& params, double amount, Criterion c) {
  PruneSpec s;
  s.criterion = c;
  s.scope = Scope::Global;
  s.amount = amount;
  s.min_keep = 0;
  check_spec(s);
  std::vector<Target> targets;
  for (nn::Parameter* p : params) {
    SPRIG_CHECK(p, "global_unstructured: null parameter");
    targets.push_back({p->name, p, nullptr});
  }
  prune_targets(targets, s, {});
}

void remove(nn::Parameter& p) {
  p.apply_mask();  // in case the value was written behind the mask's back
  p.mask = nullptr;
}

void remove(nn::Model& model) {
  for (auto& p : model.parameters()) remove(*p);
}

double sparsity(const nn::Model& model) {
  int64_t total = 0, nonzero = 0;
  for (auto& p : model.parameters()) {
    total += p->numel();
    nonzero += p->count_nonzero();
  }
  return total ? 1.0 - double(nonzero) / double(total) : 0.0;
}

}  // namespace sprig::prune
