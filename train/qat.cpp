#include "train/qat.h"

namespace sprig::train {

QuantizeOutcome quantize_with_qat(const nn::Model& model, const data::Dataset& calibration,
                                  const data::Dataset& train, const data::Dataset& test, Task task,
                                  const infer::QuantizeOptions& opt, const QatConfig& qat) {
  QuantizeOutcome out;
  std::vector<infer::InputRange> ranges;
  out.model = infer::prepare_quantization(model, calibration.images, opt, &ranges);
  if (qat.epochs > 0) {
    infer::set_fake_quant(out.model, ranges);
    out.model.model.net->train();
    auto optim = make_optimizer({"adam", qat.lr}, out.model.model.parameters());
    FitConfig fc;
    fc.epochs = qat.epochs;
    fc.batch_size = qat.batch_size;
    fc.seed = qat.seed;
    fc.log_lines = qat.log_lines;
    out.qat_epochs = fit(out.model.model, *optim, train, test, task, fc);
  }
  infer::quantize_layers(out.model, ranges, opt);  // takes the fake quantisers off
  return out;
}

}  // namespace sprig::train
