#include "prune/shrink.h"

#include <memory>

#include "engine/rng.h"

namespace sprig::prune {

namespace {

// A conv or linear layer seen uniformly: weight (out, ...), optional bias (out).
struct Weighted {
  nn::Conv2d* conv = nullptr;
  nn::Linear* linear = nullptr;
  bool ok() const { return conv || linear; }
  int64_t out() const { return conv ? conv->out_channels : linear->out_features; }
  nn::Parameter& weight() const { return conv ? *conv->weight : *linear->weight; }
  nn::Parameter* bias() const { return conv ? conv->bias.get() : linear->bias.get(); }
};

Weighted as_weighted(nn::Module* m) {
  Weighted w;
  w.conv = dynamic_cast<nn::Conv2d*>(m);
  if (!w.conv) w.linear = dynamic_cast<nn::Linear*>(m);
  return w;
}

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

// The layers between a producer and its consumer: what they are and how they map channels.
struct Group {
  int producer = -1;          // layer index of the last conv/linear seen, -1 before the first
  int64_t block = 1;          // consumer inputs per producer unit (H*W after a flatten of a conv)
  int unknown = -1;           // index of a layer kind shrink cannot see through, -1 if none
  std::vector<int64_t> keep;  // the producer's kept units
  int64_t units = 0;          // the producer's units before shrinking
};

// What to keep of one conv/linear layer, its weight viewed as (out, units, inner).
struct Plan {
  size_t index = 0;
  std::vector<int64_t> rows;  // kept outputs
  std::vector<int64_t> cols;  // kept input units
  int64_t units = 1, inner = 1;
  ShrinkLayer report;
  bool changes() const {
    return int64_t(rows.size()) < report.units_before || int64_t(cols.size()) < units;
  }
};

[[noreturn]] void unsupported(const std::vector<nn::ModulePtr>& layers, const Group& g, size_t i) {
  throw Error("shrink: cannot remove " + std::to_string(g.units - int64_t(g.keep.size())) +
              " units of layer " + std::to_string(g.producer) + " (" + layers[g.producer]->spec() +
              "): layer " + std::to_string(g.unknown) + " (" + layers[g.unknown]->spec() +
              ") between it and its consumer, layer " + std::to_string(i) + " (" +
              layers[i]->spec() +
              "), is not a kind shrink can see through (relu, maxpool, flatten)");
}

// Decides what layer i keeps, given what its producer keeps (g). Reads the layer only.
Plan plan_layer(const std::vector<nn::ModulePtr>& layers, const Group& g, size_t i, bool is_last,
                const std::vector<char>& unread) {
  Weighted w = as_weighted(layers[i].get());
  const nn::Parameter& weight = w.weight();
  const nn::Parameter* bias = w.bias();
  Plan plan;
  plan.index = i;
  const int64_t out = w.out();
  const int64_t row_len = weight.numel() / out;  // C*R*S or in_features

  // Inputs: drop the columns that read the producer's removed units.
  if (g.producer >= 0 && int64_t(g.keep.size()) < g.units) {
    if (g.unknown >= 0) unsupported(layers, g, i);
    SPRIG_CHECK(row_len % (g.units * g.block) == 0, "shrink: layer ", i, " (", layers[i]->spec(),
                ") has ", row_len, " inputs per output, not a multiple of ", g.units,
                " units of layer ", g.producer, " x ", g.block);
    plan.units = g.units;
    plan.cols = g.keep;
  } else {
    plan.cols = {0};  // every input, as one unit
  }
  plan.inner = row_len / plan.units;  // weights per input unit and output row

  // Outputs: a row is removable when its weights on the kept inputs and its bias are all
  // exactly zero (reading the row on the kept inputs only removes units that read nothing but
  // removed units, and makes a second shrink a no-op), or when the consumer never reads it
  // (its columns there are all zero, as channel pruning leaves them): whatever such a unit
  // outputs, even a constant from its bias, is multiplied by zeros.
  Tensor wv = to_cpu(weight.value);  // (out, units, inner)
  const float* wp = wv.data();
  Tensor bv = bias ? to_cpu(bias->value) : Tensor();  // (out)
  int64_t zero_weight_kept = 0;
  for (int64_t r = 0; r < out; ++r) {
    bool zero = true;
    for (size_t k = 0; k < plan.cols.size() && zero; ++k) {
      const float* s = wp + (r * plan.units + plan.cols[k]) * plan.inner;
      for (int64_t x = 0; x < plan.inner && zero; ++x) zero = s[x] == 0.0f;
    }
    bool bias_zero = !bias || bv.data()[r] == 0.0f;
    bool is_unread = r < int64_t(unread.size()) && unread[r];
    bool keep = is_last || ((!zero || !bias_zero) && !is_unread);
    if (keep) plan.rows.push_back(r);
    if (keep && zero && !bias_zero) ++zero_weight_kept;
  }
  // All outputs are zero: keep the first, so the layer still exists (and outputs zeros).
  if (plan.rows.empty()) plan.rows.push_back(0);

  plan.report.name = std::to_string(i);
  plan.report.spec_before = layers[i]->spec();
  plan.report.units_before = out;
  plan.report.units_after = int64_t(plan.rows.size());
  plan.report.zero_weight_kept = zero_weight_kept;
  return plan;
}

// Builds the smaller layer of a plan and copies the kept weights (and masks) into it.
nn::ModulePtr build_small(nn::Module* layer, const Plan& plan, Rng& dummy) {
  Weighted w = as_weighted(layer);
  const bool has_bias = w.bias() != nullptr;
  const int64_t out = int64_t(plan.rows.size());
  const int64_t row_len = int64_t(plan.cols.size()) * plan.inner;
  nn::ModulePtr small;
  if (w.conv) {
    int64_t in_channels = row_len / (w.conv->kernel * w.conv->kernel);
    small = std::make_shared<nn::Conv2d>(in_channels, out, w.conv->kernel, w.conv->opt, has_bias,
                                         dummy);
  } else {
    small = std::make_shared<nn::Linear>(row_len, out, has_bias, dummy);
  }
  small->train(layer->is_training());
  Weighted ws = as_weighted(small.get());
  slice_into(w.weight(), ws.weight(), plan.units, plan.inner, plan.rows, plan.cols);
  if (has_bias) slice_into(*w.bias(), *ws.bias(), 1, 1, plan.rows, {0});
  return small;
}

// For every conv/linear layer, which of its outputs its consumer never reads: the consumer's
// weights on that unit's inputs (a block of `block` features after a flatten) are all zero.
std::vector<std::vector<char>> unread_outputs(const std::vector<nn::ModulePtr>& layers,
                                              const std::vector<Shape>& in_shapes) {
  std::vector<std::vector<char>> unread(layers.size());
  int producer = -1;
  int64_t block = 1;
  bool opaque = false;  // a layer kind shrink cannot see through lies in between
  for (size_t i = 0; i < layers.size(); ++i) {
    nn::Module* layer = layers[i].get();
    Weighted w = as_weighted(layer);
    if (w.ok()) {
      if (producer >= 0 && !opaque) {
        int64_t units = as_weighted(layers[producer].get()).out();
        Tensor wv = to_cpu(w.weight().value);  // (out, units * block * rest)
        int64_t row_len = wv.numel() / w.out();
        if (row_len % (units * block) == 0) {
          int64_t inner = row_len / units;  // consumer weights per producer unit and row
          const float* wp = wv.data();
          std::vector<char>& dead = unread[producer];
          dead.assign(units, 1);
          for (int64_t r = 0; r < w.out(); ++r)
            for (int64_t u = 0; u < units; ++u)
              for (int64_t x = 0; x < inner && dead[u]; ++x)
                if (wp[(r * units + u) * inner + x] != 0.0f) dead[u] = 0;
        }
      }
      producer = int(i);
      block = 1;
      opaque = false;
    } else if (dynamic_cast<nn::Flatten*>(layer)) {
      block *= numel(in_shapes[i]) / in_shapes[i][0];
    } else if (!dynamic_cast<nn::ReLU*>(layer) && !dynamic_cast<nn::MaxPool2d*>(layer)) {
      opaque = true;
    }
  }
  return unread;
}

}  // namespace

static ShrinkReport shrink_on_host(nn::Model& model) {
  std::vector<nn::ModulePtr>& layers = model.net->layers;
  ShrinkReport report;
  report.params_before = model.num_parameters();

  // Per-sample input shape of every layer, for the spatial size at a flatten.
  std::vector<Shape> in_shapes;
  Shape shape = model.input_shape;
  size_t last_weighted = layers.size();
  for (size_t i = 0; i < layers.size(); ++i) {
    in_shapes.push_back(shape);
    shape = layers[i]->output_shape(shape);
    if (as_weighted(layers[i].get()).ok()) last_weighted = i;
  }

  const std::vector<std::vector<char>> unread = unread_outputs(layers, in_shapes);

  // Plan every layer first, so that an unsupported structure throws before anything changed.
  std::vector<Plan> plans;
  Group g;
  for (size_t i = 0; i < layers.size(); ++i) {
    nn::Module* layer = layers[i].get();
    if (as_weighted(layer).ok()) {
      plans.push_back(plan_layer(layers, g, i, i == last_weighted, unread[i]));
      g = Group{};
      g.producer = int(i);
      g.keep = plans.back().rows;
      g.units = plans.back().report.units_before;
    } else if (dynamic_cast<nn::ReLU*>(layer) || dynamic_cast<nn::MaxPool2d*>(layer)) {
      // Both map an all-zero channel to zeros, channel by channel.
    } else if (dynamic_cast<nn::Flatten*>(layer)) {
      // Channel c of a (C, H, W) input becomes features [c*H*W, (c+1)*H*W); a flat input
      // passes through (factor 1).
      const Shape& in = in_shapes[i];
      g.block *= numel(in) / in[0];
    } else if (g.unknown < 0) {
      g.unknown = int(i);
    }
  }

  // Layers with nothing to remove stay the same objects.
  Rng dummy(0);  // the new layers' initial values are overwritten with the kept weights
  for (Plan& plan : plans) {
    if (plan.changes()) layers[plan.index] = build_small(layers[plan.index].get(), plan, dummy);
    plan.report.spec_after = layers[plan.index]->spec();
    report.layers.push_back(plan.report);
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

}  // namespace sprig::prune
