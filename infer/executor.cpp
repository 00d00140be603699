// The one executor of packed models (infer/executor.h): the walk over blocks and the fusion
// decisions, on whichever device the activations and the runner's layers live.
#include "infer/executor.h"

#include <optional>

#include "engine/backend.h"

namespace sprig::infer::detail {

namespace {

// An activation between modules: (N, ...) in t, or, where lanes is set, the CPU's sample lanes
// of that shape (only ever made by a runner whose lanes_pad says so, so always on the CPU).
struct Act {
  Tensor t;
  std::optional<cpu::LanesShape> lanes;
};

bool same(const cpu::LanesShape& a, const cpu::LanesShape& b) {
  return a.N == b.N && a.C == b.C && a.H == b.H && a.W == b.W && a.pad == b.pad;
}

// h as (N, ...).
Tensor plain(const Act& h) {
  if (!h.lanes) return h.t;
  const cpu::LanesShape& a = *h.lanes;
  Tensor y = Tensor::empty({a.N, a.C, a.H, a.W});  // (N, C, H, W)
  cpu::from_lanes(a, h.t.data(), y.data());
  return y;
}

// x (N, C, H, W) in sample lanes of border pad.
Act in_lanes(const Tensor& x, int64_t pad) {
  const cpu::LanesShape a{x.size(0), x.size(1), x.size(2), x.size(3), pad};
  Act h{Tensor::empty({a.floats()}), a};
  cpu::to_lanes(a, x.data(), h.t.data());
  return h;
}

// h's shape: (N, ...) whatever its layout.
Shape shape_of(const Act& h) {
  if (!h.lanes) return h.t.shape();
  return {h.lanes->N, h.lanes->C, h.lanes->H, h.lanes->W};
}

// The only shortcut that runs on lanes: a lone option-A Shortcut (nullptr for any other).
const nn::Shortcut* lone_shortcut_a(const nn::Residual& res) {
  if (res.identity_shortcut() || res.shortcut->layers.size() != 1) return nullptr;
  return dynamic_cast<const nn::Shortcut*>(res.shortcut->layers[0].get());
}

class Walk {
 public:
  Walk(const LayerRunner& runner, const InferenceModel::Observer* observe)
      : runner_(runner), observe_(observe) {}

  // seq's forward on h; residual (in either layout), when given, is added to the output of its
  // last module, with a ReLU when residual_relu.
  Act blocks(const nn::Sequential& seq, Act h, const Act* residual, bool residual_relu) const;

 private:
  // The border module m takes sample lanes with at input x (N, ...), or -1. Never with an
  // observer, which looks at (N, ...) floats.
  int64_t lanes_pad(const nn::Module& m, const Shape& x) const {
    if (observe_ || x.size() != 4) return -1;
    const PackedLayer* p = runner_.find(&m);
    return p ? runner_.lanes_pad(*p, x) : -1;
  }
  Act residual_block(const nn::Residual& res, Act h) const;

  const LayerRunner& runner_;
  const InferenceModel::Observer* observe_;
};

Act Walk::blocks(const nn::Sequential& seq, Act h, const Act* residual, bool residual_relu) const {
  auto& mods = seq.layers;
  // Activations are (N, ...) or lanes at a block's entry: transposed ones never leave the block.
  const int64_t N = shape_of(h).empty() ? 1 : shape_of(h)[0];
  auto packed = [&](size_t i) -> const PackedLayer* {
    return i < mods.size() ? runner_.find(mods[i].get()) : nullptr;
  };
  auto chains = [&](size_t i) {
    const PackedLayer* p = packed(i);
    return p && !p->int8 && runner_.chains(*p, N);
  };
  auto is_relu = [&](size_t i) {
    return i < mods.size() && dynamic_cast<nn::ReLU*>(mods[i].get());
  };
  bool transposed = false;  // h.t holds (features, N)
  for (size_t i = 0; i < mods.size(); ++i) {
    nn::Module& m = *mods[i];
    if (const PackedLayer* p = runner_.find(&m)) {
      const Shape xs = shape_of(h);
      const int64_t pad = lanes_pad(m, xs);
      if (h.lanes && (pad < 0 || pad > h.lanes->pad)) h = {plain(h), {}};
      if (observe_) (*observe_)(*p, h.t);
      LayerCall call;
      call.x_t = transposed;
      call.x_lanes = h.lanes ? &*h.lanes : nullptr;
      call.relu = is_relu(i + 1);
      const bool last = i + 1 == mods.size();
      if (residual && last) call.relu = residual_relu;         // the block's add (and ReLU) in here
      const size_t next = call.relu && !last ? i + 2 : i + 1;  // what takes this one's output
      // y's shape, for the lanes it may be given in.
      Shape ys;
      if (pad >= 0) {
        ys = m.output_shape({xs[1], xs[2], xs[3]});
        ys.insert(ys.begin(), xs[0]);
      }
      Tensor res;
      if (residual && last) {
        // Lanes out where the shortcut is in the same lanes; else both (N, ...).
        const cpu::LanesShape* rl = residual->lanes ? &*residual->lanes : nullptr;
        if (pad >= 0 && rl && same(*rl, {ys[0], ys[1], ys[2], ys[3], rl->pad}))
          call.y_lanes = rl->pad;
        res = call.y_lanes >= 0 ? residual->t : plain(*residual);
        call.residual = &res;
      } else if (pad >= 0 && next < mods.size()) {
        call.y_lanes = lanes_pad(*mods[next], ys);  // lanes where the next layer takes them
      }
      if (p->int8) {
        // An int8 consumer (past a Flatten) gets its input codes: no float output written and
        // no quantise pass.
        size_t consumer = next;
        if (consumer < mods.size() && dynamic_cast<nn::Flatten*>(mods[consumer].get())) ++consumer;
        const PackedLayer* c = packed(consumer);
        if (!observe_ && c && c->int8 && runner_.requantizes(*p)) call.requantize = &c->int8->input;
      } else {
        // Transposed only for a next layer that takes this one's features (a mismatch goes the
        // checked way and gets its error there).
        call.y_t = chains(i) && chains(next) && packed(next)->cols == p->rows;
      }
      Tensor y = runner_.run(*p, m, h.t, call);
      h = {y, {}};
      if (call.y_lanes >= 0) h.lanes = cpu::LanesShape{ys[0], ys[1], ys[2], ys[3], call.y_lanes};
      transposed = call.y_t;
      i = next - 1;
      continue;
    }
    if (h.t.dtype() == DType::U8 && dynamic_cast<nn::Flatten*>(&m)) {  // codes between int8 layers
      h.t = h.t.reshape({N, h.t.numel() / std::max<int64_t>(N, 1)});
      continue;
    }
    if (auto* inner = dynamic_cast<nn::Sequential*>(&m)) {
      h = blocks(*inner, h, nullptr, false);
    } else if (auto* res = dynamic_cast<nn::Residual*>(&m)) {
      h = residual_block(*res, h);
    } else {
      h = {m(plain(h)), {}};
    }
  }
  return h;
}

Act Walk::residual_block(const nn::Residual& res, Act h) const {
  const auto& body = res.body->layers;
  const nn::Shortcut* sc = lone_shortcut_a(res);
  // Into lanes at the entry where the body's first layer takes them and the shortcut can: the
  // shortcut, the add and the body then share one lay-out of the input.
  if (!h.lanes && !body.empty() && (res.identity_shortcut() || sc)) {
    const int64_t pad = lanes_pad(*body.front(), h.t.shape());
    if (pad >= 0) h = in_lanes(h.t, pad);
  }
  Act side = h;
  if (sc && h.lanes) {
    const cpu::LanesShape& a = *h.lanes;
    SPRIG_CHECK(sc->out_channels >= a.C, sc->spec(), " got ", a.C, " channels");
    const int64_t pad_lo = sc->pad_lo_for(a.C);
    SPRIG_CHECK(pad_lo >= 0 && pad_lo <= sc->out_channels - a.C, sc->spec(), " got ", a.C,
                " channels");
    const ShortcutShape s{a.N, a.C, a.H, a.W, sc->out_channels, sc->stride, pad_lo};
    side.lanes = cpu::LanesShape{a.N, s.K, s.P(), s.Q(), a.pad};
    side.t = Tensor::empty({side.lanes->floats()});
    cpu::shortcut_lanes(s, h.t.data(), a.pad, side.t.data(), a.pad);
  } else if (!res.identity_shortcut()) {
    side = blocks(*res.shortcut, h, nullptr, false);
  }
  const PackedLayer* last = body.empty() ? nullptr : runner_.find(body.back().get());
  if (last && runner_.fuses_residual(*last)) {
    // The shortcut goes into the body's last layer, which adds it in its stores: no pass over
    // three activations for the add. ResNet-20 pruned 90%: its 16-channel blocks' add and ReLU
    // had taken 0.22 ms a block, 32 samples of 64 KiB on one core.
    return blocks(*res.body, h, &side, res.relu_out);
  }
  const Tensor main = plain(blocks(*res.body, h, nullptr, false)), other = plain(side);
  SPRIG_CHECK(main.shape() == other.shape(), "residual block: its branches give ",
              to_string(main.shape()), " and ", to_string(other.shape()));
  Act y{Tensor::empty(main.shape(), DType::F32, main.device()), {}};
  const Backend& be = backend_for(main.device());
  if (res.relu_out)
    be.add_relu(y.t.numel(), main.ptr(), other.ptr(), y.t.ptr());
  else
    be.add(y.t.numel(), main.ptr(), other.ptr(), y.t.ptr());
  return y;
}

}  // namespace

Tensor run_blocks(const nn::Sequential& seq, Tensor h, const LayerRunner& runner,
                  const InferenceModel::Observer* observe) {
  return plain(Walk(runner, observe).blocks(seq, {h, {}}, nullptr, false));
}

}  // namespace sprig::infer::detail
