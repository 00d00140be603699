// The one executor of packed models (infer/executor.h): the walk over blocks and the fusion
// decisions, on whichever device the activations and the runner's layers live.
#include "infer/executor.h"

#include "engine/backend.h"

namespace sprig::infer::detail {

Tensor run_blocks(const nn::Sequential& seq, Tensor h, const LayerRunner& runner,
                  const InferenceModel::Observer* observe, const Tensor* residual,
                  bool residual_relu) {
  auto& mods = seq.layers;
  // Activations are (N, ...) at a block's entry: transposed ones never leave the block.
  const int64_t N = h.dim() > 0 ? h.size(0) : 1;
  auto packed = [&](size_t i) -> const PackedLayer* {
    return i < mods.size() ? runner.find(mods[i].get()) : nullptr;
  };
  auto chains = [&](size_t i) {
    const PackedLayer* p = packed(i);
    return p && !p->int8 && runner.chains(*p, N);
  };
  auto is_relu = [&](size_t i) {
    return i < mods.size() && dynamic_cast<nn::ReLU*>(mods[i].get());
  };
  bool transposed = false;  // h holds (features, N)
  for (size_t i = 0; i < mods.size(); ++i) {
    nn::Module& m = *mods[i];
    if (const PackedLayer* p = runner.find(&m)) {
      if (observe) (*observe)(*p, h);
      LayerCall call;
      call.x_t = transposed;
      call.relu = is_relu(i + 1);
      if (residual && i + 1 == mods.size()) {  // the block's add (and ReLU) in this layer
        call.residual = residual;
        call.relu = residual_relu;
      }
      const size_t next = call.relu ? i + 2 : i + 1;  // the module that takes this one's output
      if (p->int8) {
        // An int8 consumer (past a Flatten) gets its input codes: no float output written and
        // no quantise pass.
        size_t consumer = next;
        if (consumer < mods.size() && dynamic_cast<nn::Flatten*>(mods[consumer].get())) ++consumer;
        const PackedLayer* c = packed(consumer);
        if (!observe && c && c->int8 && runner.requantizes(*p)) call.requantize = &c->int8->input;
      } else {
        // Transposed only for a next layer that takes this one's features (a mismatch goes the
        // checked way and gets its error there).
        call.y_t = chains(i) && chains(next) && packed(next)->cols == p->rows;
      }
      h = runner.run(*p, m, h, call);
      transposed = call.y_t;
      i = next - 1;
      continue;
    }
    if (h.dtype() == DType::U8 && dynamic_cast<nn::Flatten*>(&m)) {  // codes between int8 layers
      h = h.reshape({N, h.numel() / std::max<int64_t>(N, 1)});
      continue;
    }
    if (auto* inner = dynamic_cast<nn::Sequential*>(&m)) {
      h = run_blocks(*inner, h, runner, observe);
    } else if (auto* res = dynamic_cast<nn::Residual*>(&m)) {
      const Tensor side =
          res->identity_shortcut() ? h : run_blocks(*res->shortcut, h, runner, observe);
      const auto& body = res->body->layers;
      const PackedLayer* last = body.empty() ? nullptr : runner.find(body.back().get());
      if (last && runner.fuses_residual(*last)) {
        // The shortcut goes into the body's last layer, which adds it in its stores: no pass
        // over three activations for the add. ResNet-20 pruned 90%: its 16-channel blocks' add
        // and ReLU had taken 0.22 ms a block, 32 samples of 64 KiB on one core.
        h = run_blocks(*res->body, h, runner, observe, &side, res->relu_out);
        continue;
      }
      const Tensor main = run_blocks(*res->body, h, runner, observe);
      SPRIG_CHECK(main.shape() == side.shape(), "residual block: its branches give ",
                  to_string(main.shape()), " and ", to_string(side.shape()));
      Tensor y = Tensor::empty(main.shape(), DType::F32, main.device());
      const Backend& be = backend_for(main.device());
      if (res->relu_out)
        be.add_relu(y.numel(), main.ptr(), side.ptr(), y.ptr());
      else
        be.add(y.numel(), main.ptr(), side.ptr(), y.ptr());
      h = y;
    } else {
      h = m(h);
    }
  }
  return h;
}

}  // namespace sprig::infer::detail
