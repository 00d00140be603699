#pragma once
// ONNX export of a sprig model (https://onnx.ai), written with engine/protobuf.h (no protobuf
// or onnx library). The module tree is walked in forward order; each layer becomes nodes:
//   conv(...)  -> Conv (kernel_shape, strides, pads, dilations; bias as the third input)
//   conv bn    -> one Conv with the BN folded in (default; see OnnxExportOptions)
//   bn         -> BatchNormalization (epsilon; running statistics: eval mode), 1d and 2d
//   linear(..) -> Gemm (transB = 1: sprig's weight is (out, in); bias as C)
//   relu       -> Relu
//   maxpool(.) -> MaxPool (kernel_shape, strides, pads)
//   avgpool(.) -> AveragePool (kernel_shape, strides, pads, count_include_pad = 1)
//   gap        -> GlobalAveragePool
//   shortcut(.)-> Slice (steps = stride on H and W) then Pad (zero channels on axis 1), each
//                 left out when it does nothing
//   flatten    -> Flatten (axis = 1)
//   seq[...]   -> its layers in order
//   res[b | s] -> b's nodes, s's nodes (none for an identity shortcut), Add, then Relu
// Parameters and BN statistics are float32 initializers (raw_data, little-endian) named as in
// the checkpoint ("0.weight", "layer1.0.bn1.running_var"); a folded conv's are
// "<conv>+<bn>.weight" / ".bias" (e.g. "layer1.0.conv1+bn1.weight"). Nodes and the values
// they write are named by module path ("layer1.0.conv1", "layer1.0.add"). The graph input
// "input" is (N, per-sample shape) with a symbolic batch "N"; the output "logits" is
// (N, output shape). Export always describes eval mode, whatever mode the model is in. Masked
// parameters are exported as they are (their pruned entries are exactly zero, folded or not);
// a shrunk model is an ordinary smaller model.
//
// A layer listed in OnnxExportOptions::qdq is exported in QDQ form, the int8 format ONNX
// Runtime fuses into its integer kernels: its input goes through QuantizeLinear then
// DequantizeLinear (uint8, per tensor: "<path>.input_scale", "<path>.input_zero"), and its
// weight is an INT8 initializer "<path>.weight_int8" read through DequantizeLinear with
// per-output-channel scales (axis 0: "<path>.weight_scale", zero points "<path>.weight_zero").
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/model.h"

namespace sprig::nn {

struct OnnxExportOptions {
  // Fold every BatchNorm that directly follows a conv (the next layer of the same seq) into
  // that conv: w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma /
  // sqrt(var + eps) + beta (a bias is created when the conv had none). Off: BatchNormalization
  // nodes. Other BNs (after a linear, a pool, ...) are always BatchNormalization nodes.
  bool fold_bn = true;
  // Quantised conv / linear layers by path ("0", "layer1.0.conv1"): exported in QDQ form.
  struct QdqLayer {
    float input_scale = 1.0f;  // input = input_scale x (q - input_zero), q uint8
    int32_t input_zero = 0;
    std::vector<int8_t> weight;        // the layer's weight shape, int8
    std::vector<float> weight_scales;  // (out channels): weight = weight_scales[k] x q
  };
  std::map<std::string, QdqLayer> qdq;
};

// IR version 8 (onnx 1.10+) with the default-domain opset 17 (onnx 1.12+): every runtime from
// onnxruntime 1.12 on loads it, and every operator used has had its current semantics since
// opset 15 or earlier.
inline constexpr int64_t kOnnxIrVersion = 8;
inline constexpr int64_t kOnnxOpset = 17;
inline constexpr const char* kOnnxInputName = "input";
inline constexpr const char* kOnnxOutputName = "logits";

// The serialised ModelProto. Throws sprig::Error naming the layer (path and spec) when a layer
// cannot be exported, when a BN's running statistics are not finite (or a variance is
// negative), or when the model has no layers.
std::string onnx_model_bytes(const Model& model, const OnnxExportOptions& opt = {});

// Writes onnx_model_bytes(model) to path atomically (temporary file in the same directory,
// fsync, rename): on any failure an existing file at path is left untouched and sprig::Error
// names the path and the reason.
void export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& opt = {});

}  // namespace sprig::nn
