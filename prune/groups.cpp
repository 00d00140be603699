#include "prune/groups.h"

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>

namespace sprig::prune {

namespace {

// Union-find over channel nodes, with path halving.
struct Nodes {
  std::vector<int> parent;
  std::vector<char> fixed;
  std::vector<std::string> opaque;  // the unknown layer that reads the node, or ""
  int make() {
    parent.push_back(int(parent.size()));
    fixed.push_back(0);
    opaque.emplace_back();
    return parent.back();
  }
  int find(int a) {
    while (parent[a] != a) a = parent[a] = parent[parent[a]];
    return a;
  }
  void unite(int a, int b) {
    a = find(a), b = find(b);
    if (a == b) return;
    parent[b] = a;
    fixed[a] = fixed[a] || fixed[b];
    if (opaque[a].empty()) opaque[a] = opaque[b];
  }
};

// An activation during the walk: one node per channel (images) or feature (flat tensors).
struct Edge {
  std::vector<int> nodes;
  Shape shape;  // per sample
};

// The layer being recorded, with its channels as nodes until units are numbered.
struct PendingLayer {
  GraphLayer layer;
  std::vector<int> in_nodes, out_nodes;
};

class Walker {
 public:
  Nodes nodes;
  std::vector<PendingLayer> layers;

  Edge walk(nn::Module& m, const std::string& name, nn::Sequential* parent, size_t index,
            const Edge& in) {
    if (auto* seq = dynamic_cast<nn::Sequential*>(&m)) {
      Edge e = in;
      for (size_t i = 0; i < seq->layers.size(); ++i)
        e = walk(*seq->layers[i], join(name, seq->name_of(i)), seq, i, e);
      return e;
    }
    if (auto* res = dynamic_cast<nn::Residual*>(&m)) {
      Edge body = walk(*res->body, name, nullptr, 0, in);
      Edge side = res->identity_shortcut()
                      ? in
                      : walk(*res->shortcut, join(name, "shortcut"), nullptr, 0, in);
      SPRIG_CHECK(body.nodes.size() == side.nodes.size(), "dependency graph: block ", name,
                  " adds ", body.nodes.size(), " channels to ", side.nodes.size());
      for (size_t c = 0; c < body.nodes.size(); ++c) nodes.unite(body.nodes[c], side.nodes[c]);
      return {body.nodes, res->output_shape(in.shape)};
    }
    const Shape out_shape = m.output_shape(in.shape);
    PendingLayer p;
    p.layer.name = name;
    p.layer.module = &m;
    p.layer.parent = parent;
    p.layer.index = index;
    Edge out{{}, out_shape};
    if (dynamic_cast<nn::Conv2d*>(&m) || dynamic_cast<nn::Linear*>(&m)) {
      p.in_nodes = in.nodes;
      for (int64_t k = 0; k < out_shape[0]; ++k) out.nodes.push_back(nodes.make());
      p.out_nodes = out.nodes;
    } else if (dynamic_cast<nn::BatchNorm*>(&m)) {
      p.in_nodes = p.out_nodes = out.nodes = in.nodes;
    } else if (auto* sc = dynamic_cast<nn::Shortcut*>(&m)) {
      const int64_t C = in.shape[0];
      const int64_t lo = sc->pad_lo_for(C);
      for (int64_t k = 0; k < sc->out_channels; ++k)
        out.nodes.push_back(k >= lo && k < lo + C ? in.nodes[k - lo] : nodes.make());
      p.in_nodes = in.nodes;
      p.out_nodes = out.nodes;
    } else if (dynamic_cast<nn::Flatten*>(&m)) {
      int64_t per = 1;
      for (size_t d = 1; d < in.shape.size(); ++d) per *= in.shape[d];
      for (int64_t f = 0; f < out_shape[0]; ++f) out.nodes.push_back(in.nodes[f / per]);
      return out;
    } else if (dynamic_cast<nn::ReLU*>(&m) || dynamic_cast<nn::MaxPool2d*>(&m) ||
               dynamic_cast<nn::AvgPool2d*>(&m) || dynamic_cast<nn::GlobalAvgPool2d*>(&m)) {
      out.nodes = in.nodes;
      return out;
    } else {
      // A kind the walk does not know: its inputs and outputs are fixed (nothing is removed
      // across it), and shrink names it when that keeps a zero unit in place.
      for (int n : in.nodes) {
        const int r = nodes.find(n);
        nodes.fixed[r] = 1;
        if (nodes.opaque[r].empty()) nodes.opaque[r] = "layer " + name + " (" + m.spec() + ")";
      }
      const int64_t outs = out_shape.empty() ? 0 : out_shape[0];
      for (int64_t k = 0; k < outs; ++k) {
        out.nodes.push_back(nodes.make());
        nodes.fixed[out.nodes.back()] = 1;
      }
      return out;
    }
    p.layer.in = int64_t(p.in_nodes.size());
    p.layer.out = int64_t(p.out_nodes.size());
    layers.push_back(std::move(p));
    return out;
  }

  static std::string join(const std::string& a, const std::string& b) {
    return a.empty() ? b : a + "." + b;
  }
};

}  // namespace

int DependencyGraph::find_layer(const std::string& name) const {
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].name == name) return int(i);
  return -1;
}

DependencyGraph build_dependency_graph(const nn::Model& model) {
  SPRIG_CHECK(model.net, "dependency graph: the model has no layers");
  Walker w;
  Edge in{{}, model.input_shape};
  for (int64_t c = 0; c < model.input_shape[0]; ++c) {
    in.nodes.push_back(w.nodes.make());
    w.nodes.fixed[in.nodes.back()] = 1;  // the data's channels
  }
  Edge out = w.walk(*model.net, "", nullptr, 0, in);
  for (int n : out.nodes) w.nodes.fixed[w.nodes.find(n)] = 1;  // the model's outputs
  for (int n : in.nodes) w.nodes.fixed[w.nodes.find(n)] = 1;

  DependencyGraph g;
  std::map<int, int> unit_of_root;
  auto unit = [&](int node) {
    int root = w.nodes.find(node);
    auto it = unit_of_root.find(root);
    if (it != unit_of_root.end()) return it->second;
    int u = int(g.units.size());
    g.units.emplace_back();
    g.units.back().fixed = w.nodes.fixed[root] != 0;
    g.units.back().opaque_reader = w.nodes.opaque[root];
    unit_of_root[root] = u;
    return u;
  };
  for (auto& p : w.layers) {
    const int li = int(g.layers.size());
    GraphLayer L = p.layer;
    for (int n : p.in_nodes) L.in_units.push_back(unit(n));
    for (int n : p.out_nodes) L.out_units.push_back(unit(n));
    const bool weighted = as_weighted(L.module).ok();
    const bool norm = dynamic_cast<const nn::BatchNorm*>(L.module) != nullptr;
    for (int64_t k = 0; k < L.out && (weighted || norm); ++k)
      (weighted ? g.units[L.out_units[k]].producers : g.units[L.out_units[k]].norms)
          .push_back({li, k});
    for (int64_t c = 0; c < L.in && weighted; ++c)
      g.units[L.in_units[c]].consumers.push_back({li, c});
    g.layers.push_back(std::move(L));
  }

  // Groups: units joined through shared producer layers (union-find over layers).
  std::vector<int> layer_group(g.layers.size());
  std::iota(layer_group.begin(), layer_group.end(), 0);
  std::function<int(int)> root = [&](int a) {
    return layer_group[a] == a ? a : layer_group[a] = root(layer_group[a]);
  };
  for (auto& u : g.units)
    for (size_t i = 1; i < u.producers.size(); ++i) {
      int a = root(u.producers[0].layer), b = root(u.producers[i].layer);
      if (a != b) layer_group[std::max(a, b)] = std::min(a, b);
    }
  std::map<int, int> group_of_root;
  for (size_t li = 0; li < g.layers.size(); ++li) {
    if (!as_weighted(g.layers[li].module).ok()) continue;
    int r = root(int(li));
    auto it = group_of_root.find(r);
    if (it == group_of_root.end()) {
      it = group_of_root.emplace(r, int(g.groups.size())).first;
      g.groups.emplace_back();
      g.groups.back().name = g.layers[r].name;
    }
    g.groups[it->second].producers.push_back(int(li));
  }
  // Units in the order of their first producer's rows, so reports list channels as the
  // group's first layer numbers them.
  std::vector<int> order(g.units.size());
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](int u) {
    const auto& p = g.units[u].producers;
    return p.empty() ? std::pair<int, int64_t>{1 << 30, 0}
                     : std::pair<int, int64_t>{p[0].layer, p[0].index};
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
  for (int u : order) {
    auto& unit = g.units[u];
    if (unit.producers.empty()) continue;
    unit.group = group_of_root.at(root(unit.producers[0].layer));
    g.groups[unit.group].units.push_back(u);
  }
  return g;
}

}  // namespace sprig::prune
