#pragma once
// Post-training int8 quantisation of a model for inference: BatchNorms folded and zeroed
// neurons shrunk first (pack_model), each conv / linear input's range calibrated on real
// samples, each weight quantised per output channel (a pruned zero stays exactly zero), and each
// layer planned on int8 kernels: dense (gemm_u8s8 / conv2d_u8s8) or, for linear layers, CSR or
// 1 x 4 / 4 x 4 blocks (kernels/cpu/sparse_int8.h). The result is an InferenceModel whose int8
// layers run on those kernels and whose dense model holds the dequantised weights, the reference
// the int8 kernels are checked against; save_packed writes it.
#include <string>
#include <vector>

#include "infer/pack.h"
#include "nn/onnx_export.h"

namespace sprig::infer {

// How an input's range is chosen from the calibration samples:
//   minmax      the smallest and largest value seen
//   percentile  the values at the percentile's two tails (outliers clipped, the rest finer)
//   entropy     the upper end minimising the KL divergence between the positive values'
//               histogram and its uint8 rendering (TensorRT's calibration); lower end minmax
enum class Calibration { MinMax, Percentile, Entropy };
Calibration parse_calibration(const std::string& s);  // minmax|percentile|entropy
const char* calibration_name(Calibration c);

struct QuantizeOptions {
  Calibration calibration = Calibration::MinMax;
  double percentile = 99.99;  // percentile: the share (%) of values inside the range, in (50, 100]
  int64_t calibration_batch = 256;  // samples per forward while calibrating
  // The plan: format Auto measures, per layer at pack.batch, the int8 kernels (dense, and CSR,
  // 1 x 4 and 4 x 4 blocks for linear layers) and the float plan's candidates (pack_model), and
  // keeps the fastest: a mixed-precision model whose float layers are exact. Dense forces int8
  // dense; Csr, and Bsr with pack.block_rows x 4 blocks (1 or 4), force that sparse int8 kernel
  // on linear layers (conv layers have none and stay int8 dense); Nm is refused. Shrink as in
  // pack_model.
  PackOptions pack;
  bool int8_only = false;  // Auto: int8 candidates only (every layer int8: the smallest file)
};

// The range [lo, hi] of one conv / linear layer's input over the calibration samples.
struct InputRange {
  float lo = 0.0f, hi = 0.0f;
};

// Runs m on samples (N, input_shape...) in batches and returns the range of each of m.layers'
// inputs by the method.
std::vector<InputRange> calibrate(const InferenceModel& m, const Tensor& samples,
                                  const QuantizeOptions& opt);

// model -> its int8 inference model, calibrated on samples (N, input_shape...): the steps
// below, one after the other.
InferenceModel quantize_model(const nn::Model& model, const Tensor& samples,
                              const QuantizeOptions& opt = {});

// The steps of quantize_model, for a caller that trains in between (quantisation-aware
// training, QAT):
// 1. The float inference model (shrunk and BN folded as opt.pack says; every layer dense) and
//    the range of each layer's input on samples, in *ranges.
InferenceModel prepare_quantization(const nn::Model& model, const Tensor& samples,
                                    const QuantizeOptions& opt, std::vector<InputRange>* ranges);
// 2. (QAT) While m.model trains, each conv / linear layer fake-quantises its input with the
//    calibrated range and its weight per channel (nn::FakeQuant), so the float model computes
//    what the int8 one will; masks keep pruned weights at zero as in any training.
//    clear_fake_quant turns that off again.
void set_fake_quant(InferenceModel& m, const std::vector<InputRange>& ranges);
void clear_fake_quant(InferenceModel& m);
// 3. Quantises every layer's current weight and plans the int8 kernels (opt.pack.format).
void quantize_layers(InferenceModel& m, const std::vector<InputRange>& ranges,
                     const QuantizeOptions& opt);

// The int8 layers of m for the ONNX export of m.model in QDQ form (nn/onnx_export.h).
std::map<std::string, nn::OnnxExportOptions::QdqLayer> qdq_layers(const InferenceModel& m);

}  // namespace sprig::infer
