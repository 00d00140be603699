#pragma once
// ONNX export of a sprig model (https://onnx.ai), written with engine/protobuf.h (no protobuf
// or onnx library). Each layer of the Sequential becomes one node:
//   conv(...)  -> Conv (kernel_shape, strides, pads, dilations; bias as the third input)
//   linear(..) -> Gemm (transB = 1: sprig's weight is (out, in); bias as C)
//   relu       -> Relu
//   maxpool(.) -> MaxPool (kernel_shape, strides, pads)
//   flatten    -> Flatten (axis = 1)
// Parameters are float32 initializers (raw_data, little-endian) named as in the checkpoint
// ("0.weight"). The graph input "input" is (N, per-sample shape) with a symbolic batch "N";
// the output "logits" is (N, output shape). Masked parameters are exported as they are (their
// pruned entries are exactly zero); a shrunk model is an ordinary smaller model.
#include <cstdint>
#include <string>

#include "nn/model.h"

namespace sprig::nn {

// IR version 8 (onnx 1.10+) with the default-domain opset 17 (onnx 1.12+): every runtime from
// onnxruntime 1.12 on loads it, and all five operators have had their current semantics since
// opset 13 or earlier.
inline constexpr int64_t kOnnxIrVersion = 8;
inline constexpr int64_t kOnnxOpset = 17;
inline constexpr const char* kOnnxInputName = "input";
inline constexpr const char* kOnnxOutputName = "logits";

// The serialised ModelProto. Throws sprig::Error naming the layer (index and spec) when a layer
// cannot be exported, or when the model has no layers.
std::string onnx_model_bytes(const Model& model);

// Writes onnx_model_bytes(model) to path atomically (temporary file in the same directory,
// fsync, rename): on any failure an existing file at path is left untouched and sprig::Error
// names the path and the reason.
void export_onnx(const Model& model, const std::string& path);

}  // namespace sprig::nn
