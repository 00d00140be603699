// Filter pruning by dependency groups: every channel of the network is scored once from all the
// layers that make it and pruned in all of them (see prune/prune.h and prune/groups.h).
//
// Decisions worth knowing:
// - A channel's members are its producers' weight rows (one score each from the criterion,
//   computed per layer as for a plain chain) or, for bn-scale, the |gamma| of every BatchNorm on
//   it; GroupReduce turns them into one score. Mean is the default (as Torch-Pruning's), so a
//   channel of a residual stream made by ten layers is not ten times as important as one made
//   by a single layer.
// - When several layers make a group's channels, each layer's scores are first divided by their
//   mean over its rows: a norm grows with the row's length (a stage-3 conv's rows are 4x as long
//   as a stage-1 conv's), and unscaled the stream's early channels would always look least
//   important. A group made by one layer keeps its raw scores (a threshold compares them).
// - min_keep holds per group and per producing layer: a residual stream may not empty its stem.
// - A group is pruned only when every producer's weight is among the chosen weights (--layers,
//   --exclude): pruning a channel of the stream in some blocks and not others would not remove it.
// - A channel counts as already pruned when every producer's row is masked out completely.
// - Pruning masks the producers' rows and biases and the BatchNorm scales and shifts, so the
//   channel is exactly zero in training and evaluation mode (BN of a zero input with zero scale
//   and shift is zero); consumers' inputs are left to shrink().
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "prune/groups.h"
#include "prune/masking_internal.h"

namespace sprig::prune::detail {

namespace {

std::string weight_name(const GraphLayer& L) {
  return L.name + ".weight";
}

// What one group needs while choosing.
struct GroupWork {
  int group = -1;
  std::vector<int> candidates;  // its units that may be pruned, in the group's order
  LayerUnits units;             // scores and pruned flags of the candidates
  std::vector<uint8_t> before;  // (candidates) pruned flags before this call
};

// Why nothing in `group` can be pruned, or "" when something can.
std::string kept_reason(const DependencyGraph& g, const DependencyGroup& group,
                        const std::set<std::string>& chosen, Criterion c) {
  bool any_free = false;
  std::string opaque;
  for (int u : group.units) {
    any_free = any_free || !g.units[u].fixed;
    if (opaque.empty()) opaque = g.units[u].opaque_reader;
  }
  if (!any_free)
    return !opaque.empty() ? opaque + " reads its channels, and pruning cannot see through it"
                           : "its channels are the model's outputs";
  for (int l : group.producers)
    if (!chosen.count(weight_name(g.layers[l])))
      return "'" + weight_name(g.layers[l]) +
             "', which makes its channels, is not among the weights to prune (--layers, "
             "--exclude)";
  if (c == Criterion::BnScale)
    for (int u : group.units)
      if (!g.units[u].fixed && g.units[u].norms.empty())
        return "criterion bn-scale needs a BatchNorm on its channels, and it has none";
  return "";
}

}  // namespace

PruneReport prune_filter_groups(nn::Model& model, const PruneSpec& spec,
                                const std::map<std::string, Tensor>& activation_scores) {
  const DependencyGraph g = build_dependency_graph(model);
  std::set<std::string> chosen;
  for (auto& [name, w] : prunable_weights(model, spec)) chosen.insert(name);

  // Score every producer of every prunable group first, so a bad layer fails before any mask
  // changes.
  std::vector<GroupReport> reports(g.groups.size());
  std::vector<GroupWork> work;
  // graph layer -> (out) scores of its channels: the criterion's per producer row, or |gamma|
  // per BatchNorm channel for bn-scale
  std::map<int, std::vector<float>> member_scores;
  std::map<int, std::vector<uint8_t>> rows_pruned;  // graph layer -> (out) masked-out rows
  for (size_t gi = 0; gi < g.groups.size(); ++gi) {
    const DependencyGroup& group = g.groups[gi];
    GroupReport& rep = reports[gi];
    rep.name = group.name;
    std::set<int> members(group.producers.begin(), group.producers.end());
    for (int u : group.units)
      for (const UnitRef& r : g.units[u].norms) members.insert(r.layer);
    for (int l : members) rep.layers.push_back(g.layers[l].name);
    for (int u : group.units) rep.units += !g.units[u].fixed;
    rep.kept = kept_reason(g, group, chosen, spec.criterion);
    if (!rep.kept.empty()) continue;

    for (int l : group.producers) {
      const nn::Parameter& w = as_weighted(g.layers[l].module).weight();
      const WeightView v = weight_view(w, spec);
      rows_pruned[l] = already_pruned(w, v, Granularity::Filter);
    }
    if (spec.criterion == Criterion::BnScale) {
      // The members are the BatchNorms: |gamma| per channel, read once per layer.
      for (int l : members) {
        auto* bn = dynamic_cast<nn::BatchNorm*>(g.layers[l].module);
        if (!bn) continue;
        std::vector<float> gamma = bn->weight->value.to_vector();  // (C)
        for (size_t c = 0; c < gamma.size(); ++c) {
          SPRIG_CHECK(!std::isnan(gamma[c]), "criterion 'bn-scale': '", g.layers[l].name,
                      ".weight' holds NaN at channel ", c);
          gamma[c] = std::fabs(gamma[c]);
        }
        member_scores[l] = std::move(gamma);
      }
    }
    for (int l : group.producers) {
      if (spec.criterion == Criterion::BnScale) break;
      const nn::Parameter& w = as_weighted(g.layers[l].module).weight();
      auto a = activation_scores.find(weight_name(g.layers[l]));
      std::vector<float> rs = unit_scores(w, spec.criterion, Granularity::Filter, spec,
                                          a == activation_scores.end() ? nullptr : &a->second)
                                  .to_vector();  // (out)
      if (group.producers.size() > 1) {
        double mean = 0.0;
        for (float x : rs) mean += x;
        mean /= double(rs.size());
        if (mean > 0.0)
          for (float& x : rs) x = float(double(x) / mean);
      }
      member_scores[l] = std::move(rs);
    }
    GroupWork gw;
    gw.group = int(gi);
    gw.units.name = group.name;
    for (int u : group.units) {
      const ChannelUnit& unit = g.units[u];
      if (unit.fixed) continue;
      const auto& members_of_unit =
          spec.criterion == Criterion::BnScale ? unit.norms : unit.producers;
      double sum = 0.0;
      for (const UnitRef& r : members_of_unit) sum += member_scores.at(r.layer)[r.index];
      const double n = double(std::max<size_t>(members_of_unit.size(), 1));
      bool pruned = true;
      for (const UnitRef& r : unit.producers) pruned = pruned && rows_pruned.at(r.layer)[r.index];
      gw.candidates.push_back(u);
      gw.units.score.push_back(float(spec.group_reduce == GroupReduce::Sum ? sum : sum / n));
      gw.units.pruned.push_back(pruned);
    }
    gw.before = gw.units.pruned;
    work.push_back(std::move(gw));
  }

  if (work.empty()) {
    std::string why;
    for (const GroupReport& rep : reports)
      if (rep.units > 0) why += (why.empty() ? "" : "; ") + rep.name + ": " + rep.kept;
    throw Error("nothing to prune: no dependency group can lose filters (" +
                (why.empty() ? std::string("every channel is an output of the model") : why) + ")");
  }
  // Rows each producer still has; a channel goes only while all its producers keep min_keep.
  std::map<int, int64_t> rows_left;
  for (auto& [l, pruned] : rows_pruned) rows_left[l] = std::count(pruned.begin(), pruned.end(), 0);
  std::vector<GroupWork*> selecting;  // the groups one select_units call sees
  UnitFilter producers_keep = [&](size_t i, int64_t k) {
    const ChannelUnit& unit = g.units[selecting[i]->candidates[k]];
    for (const UnitRef& r : unit.producers)
      if (rows_left[r.layer] <= spec.min_keep) return false;
    for (const UnitRef& r : unit.producers) --rows_left[r.layer];
    return true;
  };
  if (spec.scope == Scope::Global) {
    std::vector<LayerUnits*> all;
    for (GroupWork& gw : work) {
      normalise_scores(gw.units);
      all.push_back(&gw.units);
      selecting.push_back(&gw);
    }
    select_units(all, spec, producers_keep);
  } else {
    for (GroupWork& gw : work) {
      selecting = {&gw};
      select_units({&gw.units}, spec, producers_keep);
    }
  }

  // Which channels are pruned now, by unit.
  std::vector<uint8_t> unit_pruned(g.units.size(), 0);
  for (GroupWork& gw : work) {
    GroupReport& rep = reports[gw.group];
    for (size_t k = 0; k < gw.candidates.size(); ++k) {
      const int u = gw.candidates[k];
      unit_pruned[u] = gw.units.pruned[k];
      rep.pruned += gw.units.pruned[k];
      if (gw.units.pruned[k] && !gw.before[k]) {
        const UnitRef& first = g.units[u].producers[0];
        rep.removed.push_back(g.layers[first.layer].name + "[" + std::to_string(first.index) + "]");
      }
    }
    if (rep.pruned == 0)
      rep.kept =
          "no channel was chosen (the amount rounds to 0, min_keep, or no score is below "
          "the threshold)";
  }

  // Masks: producers' rows and biases, then the BatchNorm channels of the pruned groups.
  PruneReport report;
  for (size_t l = 0; l < g.layers.size(); ++l) {
    const GraphLayer& L = g.layers[l];
    std::vector<uint8_t> rows(size_t(L.out), 0);  // (out) 1 = pruned
    bool any = false;
    for (int64_t k = 0; k < L.out; ++k) any = (rows[k] = unit_pruned[L.out_units[k]]) || any;
    if (rows_pruned.count(int(l))) {
      const Weighted lw = as_weighted(L.module);
      const Target t{weight_name(L), &lw.weight(), lw.bias()};
      install_units(t, weight_view(lw.weight(), spec), Granularity::Filter, rows);
      report.layers.push_back(report_for(t, L.out, std::count(rows.begin(), rows.end(), 1)));
    } else if (auto* bn = dynamic_cast<nn::BatchNorm*>(L.module); bn && any) {
      for (nn::Parameter* p : {bn->weight.get(), bn->bias.get()}) {
        const Tensor old = p->mask ? p->mask->keep.to(Device::cpu()) : Tensor();
        Tensor keep = Tensor::empty({L.out}, DType::U8);
        uint8_t* k = keep.data_as<uint8_t>();  // (C)
        for (int64_t c = 0; c < L.out; ++c)
          k[c] = !rows[c] && (!old.defined() || old.data_as<uint8_t>()[c]);
        install_mask(*p, keep, Granularity::Filter);
      }
    }
  }
  report.groups = std::move(reports);
  for (auto& p : model.parameters()) {
    report.params += p->numel();
    report.nonzero += p->count_nonzero();
  }
  return report;
}

}  // namespace sprig::prune::detail
