#include "nn/onnx_export.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "engine/atomic_file.h"
#include "engine/protobuf.h"

#ifndef SPRIG_VERSION
#define SPRIG_VERSION "unknown"
#endif

namespace sprig::nn {

namespace {

using protobuf::Writer;

// Field numbers from onnx/onnx.proto (github.com/onnx/onnx, the IR_VERSION 7 revision at commit
// 004aa57f; protobuf field numbers are never reused, and IR 8 only added fields we do not use).
namespace model_proto {  // ModelProto
constexpr uint32_t kIrVersion = 1, kProducerName = 2, kProducerVersion = 3, kGraph = 7,
                   kOpsetImport = 8, kMetadataProps = 14;
}
namespace opset_id {  // OperatorSetIdProto
constexpr uint32_t kDomain = 1, kVersion = 2;
}
namespace string_entry {  // StringStringEntryProto
constexpr uint32_t kKey = 1, kValue = 2;
}
namespace graph_proto {  // GraphProto
constexpr uint32_t kNode = 1, kName = 2, kInitializer = 5, kInput = 11, kOutput = 12;
}
namespace node_proto {  // NodeProto
constexpr uint32_t kInput = 1, kOutput = 2, kName = 3, kOpType = 4, kAttribute = 5;
}
namespace attribute_proto {  // AttributeProto
constexpr uint32_t kName = 1, kF = 2, kI = 3, kInts = 8, kType = 20;
constexpr uint64_t kTypeFloat = 1, kTypeInt = 2, kTypeInts = 7;  // AttributeProto.AttributeType
}  // namespace attribute_proto
namespace tensor_proto {  // TensorProto
constexpr uint32_t kDims = 1, kDataType = 2, kName = 8, kRawData = 9;
constexpr uint64_t kFloat = 1, kUint8 = 2, kInt8 = 3, kInt64 = 7;  // TensorProto.DataType
}  // namespace tensor_proto
namespace value_info {  // ValueInfoProto, TypeProto, TypeProto.Tensor, TensorShapeProto
constexpr uint32_t kName = 1, kType = 2;
constexpr uint32_t kTensorType = 1;            // TypeProto.tensor_type
constexpr uint32_t kElemType = 1, kShape = 2;  // TypeProto.Tensor
constexpr uint32_t kDim = 1;                   // TensorShapeProto.dim
constexpr uint32_t kDimValue = 1, kDimParam = 2;
}  // namespace value_info

// `repeated int64` fields that onnx.proto does not mark [packed = true] (dims, ints) are
// written one record per value, as onnx's own serialiser does; parsers accept either form.
void repeated_int64(Writer& w, uint32_t field, const std::vector<int64_t>& values) {
  for (int64_t v : values) w.int64(field, v);
}

Writer int_attribute(const std::string& name, int64_t v) {
  Writer a;
  a.string(attribute_proto::kName, name)
      .varint(attribute_proto::kType, attribute_proto::kTypeInt)
      .int64(attribute_proto::kI, v);
  return a;
}

Writer ints_attribute(const std::string& name, const std::vector<int64_t>& v) {
  Writer a;
  a.string(attribute_proto::kName, name).varint(attribute_proto::kType, attribute_proto::kTypeInts);
  repeated_int64(a, attribute_proto::kInts, v);
  return a;
}

// An initializer of the given TensorProto data type holding raw (little-endian) bytes.
Writer raw_initializer(const std::string& name, const std::vector<int64_t>& dims, uint64_t type,
                       const std::string& raw) {
  Writer w;
  repeated_int64(w, tensor_proto::kDims, dims);
  w.varint(tensor_proto::kDataType, type);
  w.string(tensor_proto::kName, name);
  w.string(tensor_proto::kRawData, raw);
  return w;
}

// float32 values as little-endian bytes, whatever the host's byte order.
std::string float_bytes(const float* p, int64_t n) {
  std::string raw;
  raw.reserve(4 * static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, 4);
    for (int b = 0; b < 4; ++b) raw.push_back(static_cast<char>((u >> (8 * b)) & 0xff));
  }
  return raw;
}

// A float32 initializer.
Writer initializer(const std::string& name, const Tensor& value) {
  Tensor t = value.device().is_cpu() ? value : value.to(Device::cpu());
  SPRIG_CHECK(t.dtype() == DType::F32, "onnx export: parameter '", name, "' is ",
              dtype_name(t.dtype()), ", expected F32");
  return raw_initializer(name, t.shape(), tensor_proto::kFloat, float_bytes(t.data(), t.numel()));
}

// A float tensor value with a symbolic batch dimension "N" followed by the per-sample shape.
Writer batched_value_info(const std::string& name, const Shape& per_sample) {
  using namespace value_info;
  Writer shape;
  shape.message(kDim, Writer().string(kDimParam, "N"));
  for (int64_t d : per_sample) shape.message(kDim, Writer().int64(kDimValue, d));
  Writer tensor;
  tensor.varint(kElemType, tensor_proto::kFloat).message(kShape, shape);
  Writer type;
  type.message(kTensorType, tensor);
  Writer v;
  v.string(kName, name).message(kType, type);
  return v;
}

// An int64 initializer (Slice's starts / ends / axes / steps, Pad's pads), 1-D.
Writer int64_initializer(const std::string& name, const std::vector<int64_t>& values) {
  std::string raw;
  raw.reserve(8 * values.size());
  for (int64_t v : values) {
    const uint64_t u = static_cast<uint64_t>(v);
    for (int b = 0; b < 8; ++b) raw.push_back(static_cast<char>((u >> (8 * b)) & 0xff));
  }
  return raw_initializer(name, {static_cast<int64_t>(values.size())}, tensor_proto::kInt64, raw);
}

Writer float_attribute(const std::string& name, float v) {
  Writer a;
  a.string(attribute_proto::kName, name)
      .varint(attribute_proto::kType, attribute_proto::kTypeFloat)
      .float32(attribute_proto::kF, v);
  return a;
}

// A node before serialisation: the graph's last output is renamed to "logits" at the end.
struct Node {
  std::string name, op;
  std::vector<std::string> inputs;
  std::string output;
  std::vector<Writer> attributes;
};

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string layer_label(const std::string& path, const Module& layer) {
  return "layer " + path + " '" + layer.spec() + "'";
}

// Walks the module tree in forward order and emits one or more nodes per layer. Values are
// named after the node that writes them (the module's path, "layer1.0.conv1"), initializers
// after the parameter or buffer they hold ("layer1.0.bn1.running_var").
class GraphBuilder {
 public:
  explicit GraphBuilder(const OnnxExportOptions& opt) : opt_(opt) {}

  // Emits module m at path reading value `in` of per-sample shape `shape`; returns the name of
  // its output value and leaves its per-sample shape in `shape`.
  std::string emit(const Module& m, const std::string& path, const std::string& in, Shape& shape) {
    if (auto* seq = dynamic_cast<const Sequential*>(&m))
      return emit_sequential(*seq, path, in, shape);
    if (auto* res = dynamic_cast<const Residual*>(&m)) return emit_residual(*res, path, in, shape);
    const Shape out_shape = m.output_shape(shape);
    std::string out;
    if (auto* conv = dynamic_cast<const Conv2d*>(&m)) {
      out = emit_conv(*conv, nullptr, path, "", in);
    } else if (auto* bn = dynamic_cast<const BatchNorm*>(&m)) {
      check_statistics(*bn, path);
      out = add(path, "BatchNormalization",
                {in, param(path, "weight", bn->weight), param(path, "bias", bn->bias),
                 buffer(path, "running_mean", bn->running_mean),
                 buffer(path, "running_var", bn->running_var)},
                {float_attribute("epsilon", bn->eps)});
    } else if (auto* lin = dynamic_cast<const Linear*>(&m)) {
      std::vector<std::string> inputs = input_and_weight(path, in, lin->weight);
      if (lin->bias) inputs.push_back(param(path, "bias", lin->bias));
      out = add(path, "Gemm", inputs, {int_attribute("transB", 1)});
    } else if (dynamic_cast<const ReLU*>(&m)) {
      out = add(path, "Relu", {in});
    } else if (auto* pool = dynamic_cast<const MaxPool2d*>(&m)) {
      const int64_t k = pool->kernel, s = pool->stride, p = pool->padding;
      // ONNX pads with -inf as sprig clips; a window wholly in the padding would differ.
      SPRIG_CHECK(2 * p <= k, "onnx export: ", layer_label(path, m), " has padding ", p,
                  " > kernel/2, which ONNX MaxPool does not define the same way");
      out = add(path, "MaxPool", {in},
                {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                 ints_attribute("pads", {p, p, p, p})});
    } else if (auto* pool = dynamic_cast<const AvgPool2d*>(&m)) {
      const int64_t k = pool->kernel, s = pool->stride, p = pool->padding;
      // sprig and PyTorch count the padding's zeros in the average; ONNX's default does not.
      out = add(path, "AveragePool", {in},
                {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                 ints_attribute("pads", {p, p, p, p}), int_attribute("count_include_pad", 1)});
    } else if (dynamic_cast<const GlobalAvgPool2d*>(&m)) {
      out = add(path, "GlobalAveragePool", {in});
    } else if (auto* sc = dynamic_cast<const Shortcut*>(&m)) {
      out = emit_shortcut(*sc, path, in, shape);
    } else if (dynamic_cast<const Flatten*>(&m)) {
      out = add(path, "Flatten", {in}, {int_attribute("axis", 1)});
    } else {
      throw Error("onnx export: " + layer_label(path, m) +
                  " has no ONNX equivalent (exportable: conv, linear, bn, relu, maxpool, avgpool, "
                  "gap, shortcut, flatten, seq, res)");
    }
    shape = out_shape;
    return out;
  }

  std::vector<Node> nodes;
  std::vector<Writer> initializers;
  std::set<std::string> quantized;  // paths exported in QDQ form

 private:
  const OnnxExportOptions& opt_;

  std::string add(const std::string& name, const std::string& op,
                  const std::vector<std::string>& inputs, std::vector<Writer> attributes = {}) {
    nodes.push_back({name, op, inputs, name, std::move(attributes)});
    return name;
  }

  std::string param(const std::string& path, const std::string& local, const ParameterPtr& p) {
    const std::string name = join_path(path, local);  // as in named_parameters / checkpoints
    initializers.push_back(initializer(name, p->value));
    return name;
  }

  std::string buffer(const std::string& path, const std::string& local, const Tensor& t) {
    const std::string name = join_path(path, local);
    initializers.push_back(initializer(name, t));
    return name;
  }

  // A conv / linear layer's first two inputs: `in` and its float weight, or in QDQ form.
  std::vector<std::string> input_and_weight(const std::string& path, const std::string& in,
                                            const ParameterPtr& weight) {
    auto q = opt_.qdq.find(path);
    if (q == opt_.qdq.end()) return {in, param(path, "weight", weight)};
    quantized.insert(path);
    return {qdq_input(path, in, q->second), qdq_weight(path, weight, q->second)};
  }

  // QuantizeLinear -> DequantizeLinear of the layer's input: what sprig's int8 layer sees.
  std::string qdq_input(const std::string& path, const std::string& in,
                        const OnnxExportOptions::QdqLayer& q) {
    SPRIG_CHECK(q.input_scale > 0 && std::isfinite(q.input_scale) && q.input_zero >= 0 &&
                    q.input_zero <= 255,
                "onnx export: layer ", path, "'s input scale ", q.input_scale, " / zero point ",
                q.input_zero, " are not a positive scale and a uint8");
    const std::string scale = path + ".input_scale", zero = path + ".input_zero";
    initializers.push_back(
        raw_initializer(scale, {}, tensor_proto::kFloat, float_bytes(&q.input_scale, 1)));
    initializers.push_back(raw_initializer(zero, {}, tensor_proto::kUint8,
                                           std::string(1, static_cast<char>(q.input_zero))));
    const std::string quantized =
        add(path + ".input_quantize", "QuantizeLinear", {in, scale, zero});
    return add(path + ".input_dequantize", "DequantizeLinear", {quantized, scale, zero});
  }

  // The int8 weight through DequantizeLinear, one scale per output channel (axis 0).
  std::string qdq_weight(const std::string& path, const ParameterPtr& weight,
                         const OnnxExportOptions::QdqLayer& q) {
    const Shape& shape = weight->value.shape();
    const int64_t out = shape[0];
    SPRIG_CHECK(
        int64_t(q.weight.size()) == weight->numel() && int64_t(q.weight_scales.size()) == out,
        "onnx export: layer ", path, "'s int8 weight (", q.weight.size(), " values, ",
        q.weight_scales.size(), " scales) does not match its weight ", to_string(shape));
    const std::string w = path + ".weight_int8", scale = path + ".weight_scale",
                      zero = path + ".weight_zero";
    initializers.push_back(raw_initializer(
        w, shape, tensor_proto::kInt8,
        std::string(reinterpret_cast<const char*>(q.weight.data()), q.weight.size())));
    initializers.push_back(raw_initializer(scale, {out}, tensor_proto::kFloat,
                                           float_bytes(q.weight_scales.data(), out)));
    initializers.push_back(
        raw_initializer(zero, {out}, tensor_proto::kInt8, std::string(size_t(out), '\0')));
    return add(path + ".weight_dequantize", "DequantizeLinear", {w, scale, zero},
               {int_attribute("axis", 0)});
  }

  std::string emit_sequential(const Sequential& seq, const std::string& path, const std::string& in,
                              Shape& shape) {
    std::string current = in;
    for (size_t i = 0; i < seq.layers.size(); ++i) {
      const Module* layer = seq.layers[i].get();
      const std::string child = join_path(path, seq.name_of(i));
      SPRIG_CHECK(layer, "onnx export: layer ", child, " is empty");
      auto* conv = dynamic_cast<const Conv2d*>(layer);
      auto* bn = i + 1 < seq.layers.size() ? dynamic_cast<const BatchNorm*>(seq.layers[i + 1].get())
                                           : nullptr;
      if (opt_.fold_bn && conv && bn) {
        // The BN reads this conv's output and nothing else: fold it into the conv.
        const std::string bn_path = join_path(path, seq.name_of(i + 1));
        check_statistics(*bn, bn_path);
        const Shape conv_out = conv->output_shape(shape);
        current = emit_conv(*conv, bn, child, seq.name_of(i + 1), current);
        shape = bn->output_shape(conv_out);
        ++i;
        continue;
      }
      current = emit(*layer, child, current, shape);
    }
    return current;
  }

  std::string emit_residual(const Residual& res, const std::string& path, const std::string& in,
                            Shape& shape) {
    Shape body_shape = shape, shortcut_shape = shape;
    // The body's layers are the block's children under their own names (Residual::children).
    const std::string body = emit_sequential(*res.body, path, in, body_shape);
    const std::string skip =
        res.identity_shortcut()
            ? in
            : emit_sequential(*res.shortcut, join_path(path, "shortcut"), in, shortcut_shape);
    SPRIG_CHECK(body_shape == shortcut_shape, "onnx export: ", layer_label(path, res),
                ": body gives ", to_string(body_shape), ", shortcut ", to_string(shortcut_shape));
    std::string out = add(join_path(path, "add"), "Add", {body, skip});
    if (res.relu_out) out = add(join_path(path, "relu"), "Relu", {out});
    shape = body_shape;
    return out;
  }

  // A conv, or a conv with the BatchNorm after it folded in (bn != null, named bn_name;
  // BatchNorm::fold_into, b = 0 when the conv has no bias). The folded tensors are named
  // "<conv>+<bn>.weight" /
  // ".bias", since they are neither parameter.
  std::string emit_conv(const Conv2d& conv, const BatchNorm* bn, const std::string& path,
                        const std::string& bn_name, const std::string& in) {
    const int64_t k = conv.kernel, s = conv.opt.stride, p = conv.opt.padding, d = conv.opt.dilation;
    std::vector<Writer> attributes = {
        ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
        ints_attribute("pads", {p, p, p, p}), ints_attribute("dilations", {d, d})};
    SPRIG_CHECK(!bn || !opt_.qdq.count(path), "onnx export: ", layer_label(path, conv),
                " is quantised and has a BatchNorm to fold after it (quantise after folding)");
    if (!bn) {
      std::vector<std::string> inputs = input_and_weight(path, in, conv.weight);
      if (conv.bias) inputs.push_back(param(path, "bias", conv.bias));
      return add(path, "Conv", inputs, std::move(attributes));
    }
    const int64_t out_ch = conv.out_channels;
    SPRIG_CHECK(bn->num_features == out_ch, "onnx export: ", layer_label(path, conv), " has ",
                out_ch, " channels but the BatchNorm after it ", bn->num_features);
    std::vector<float> folded_w = conv.weight->value.to_vector();  // (K, C, R, S)
    std::vector<float> folded_b =
        conv.bias ? conv.bias->value.to_vector() : std::vector<float>(out_ch, 0.0f);  // (K)
    bn->fold_into(int64_t(folded_w.size()) / out_ch, folded_w.data(), folded_b.data());
    const std::string name = path + "+" + bn_name;
    initializers.push_back(
        initializer(name + ".weight", Tensor::from_vector(folded_w, conv.weight->value.shape())));
    initializers.push_back(initializer(name + ".bias", Tensor::from_vector(folded_b, {out_ch})));
    return add(name, "Conv", {in, name + ".weight", name + ".bias"}, std::move(attributes));
  }

  // Option A: x[:, :, ::stride, ::stride] (Slice with steps on H and W), then pad_lo zero
  // channels before and the rest after (Pad on axis 1, constant 0).
  std::string emit_shortcut(const Shortcut& sc, const std::string& path, const std::string& in,
                            const Shape& shape) {
    sc.output_shape(shape);  // checks that out_channels and pad_lo fit the input
    const int64_t channels = shape[0];
    const int64_t lo = sc.pad_lo < 0 ? (sc.out_channels - channels) / 2 : sc.pad_lo;
    const int64_t hi = sc.out_channels - channels - lo;
    std::string current = in;
    if (sc.stride != 1) {
      const std::string n = join_path(path, "slice");
      const int64_t end = std::numeric_limits<int64_t>::max();  // ONNX clamps to the size
      initializers.push_back(int64_initializer(n + ".starts", {0, 0}));
      initializers.push_back(int64_initializer(n + ".ends", {end, end}));
      initializers.push_back(int64_initializer(n + ".axes", {2, 3}));
      initializers.push_back(int64_initializer(n + ".steps", {sc.stride, sc.stride}));
      current = add(n, "Slice", {current, n + ".starts", n + ".ends", n + ".axes", n + ".steps"});
    }
    if (lo != 0 || hi != 0) {
      const std::string n = join_path(path, "pad");
      // pads: begin of (N, C, H, W), then end of (N, C, H, W)
      initializers.push_back(int64_initializer(n + ".pads", {0, lo, 0, 0, 0, hi, 0, 0}));
      current = add(n, "Pad", {current, n + ".pads"});
    }
    return current;
  }

  // Export describes eval mode: the running statistics are the normalisation, so they must be
  // usable numbers.
  static void check_statistics(const BatchNorm& bn, const std::string& path) {
    const std::vector<float> mean = bn.running_mean.to_vector();  // (C)
    const std::vector<float> var = bn.running_var.to_vector();    // (C)
    for (size_t c = 0; c < mean.size(); ++c)
      SPRIG_CHECK(std::isfinite(mean[c]), "onnx export: ", join_path(path, "running_mean"),
                  " holds ", mean[c], " at channel ", c);
    for (size_t c = 0; c < var.size(); ++c)
      SPRIG_CHECK(std::isfinite(var[c]) && var[c] >= 0,
                  "onnx export: ", join_path(path, "running_var"), " holds ", var[c],
                  " at channel ", c, " (a variance is finite and not negative)");
  }
};

}  // namespace

std::string onnx_model_bytes(const Model& model, const OnnxExportOptions& opt) {
  SPRIG_CHECK(model.net, "onnx export: the model has no network");
  SPRIG_CHECK(!model.net->layers.empty(), "onnx export: the model '", model.spec,
              "' has no layers");
  const Shape out_shape = model.output_shape();  // throws when input_shape does not fit

  GraphBuilder g(opt);
  Shape shape = model.input_shape;
  const std::string last = g.emit(*model.net, "", kOnnxInputName, shape);
  for (auto& [path, q] : opt.qdq)
    SPRIG_CHECK(g.quantized.count(path), "onnx export: quantised layer '", path,
                "' is not a conv / linear layer of '", model.spec, "'");
  // Nodes come in forward order, so nothing reads the last node's output but the graph.
  if (!g.nodes.empty() && g.nodes.back().output == last)
    g.nodes.back().output = kOnnxOutputName;
  else
    g.nodes.push_back({"output", "Identity", {last}, kOnnxOutputName, {}});
  // ONNX values are assigned once. Module paths are unique, but a layer the user named "add"
  // or "relu" inside a res[...] would meet the block's own Add / Relu.
  std::set<std::string> written = {kOnnxInputName};
  for (const Node& n : g.nodes)
    SPRIG_CHECK(written.insert(n.output).second, "onnx export: two nodes would write value '",
                n.output, "'; rename the layer of that name in the spec");

  Writer graph;
  for (const Node& n : g.nodes) {
    Writer w;
    for (const std::string& in : n.inputs) w.string(node_proto::kInput, in);
    w.string(node_proto::kOutput, n.output);
    w.string(node_proto::kName, n.name);
    w.string(node_proto::kOpType, n.op);
    for (const Writer& a : n.attributes) w.message(node_proto::kAttribute, a);
    graph.message(graph_proto::kNode, w);
  }
  graph.string(graph_proto::kName, "sprig");
  for (const Writer& t : g.initializers) graph.message(graph_proto::kInitializer, t);
  graph.message(graph_proto::kInput, batched_value_info(kOnnxInputName, model.input_shape));
  graph.message(graph_proto::kOutput, batched_value_info(kOnnxOutputName, out_shape));

  Writer opset;
  opset.string(opset_id::kDomain, "").int64(opset_id::kVersion, kOnnxOpset);
  std::string input_shape;
  for (int64_t d : model.input_shape)
    input_shape += (input_shape.empty() ? "" : ",") + std::to_string(d);
  Writer m;
  m.int64(model_proto::kIrVersion, kOnnxIrVersion)
      .string(model_proto::kProducerName, "sprig")
      .string(model_proto::kProducerVersion, SPRIG_VERSION)
      .message(model_proto::kGraph, graph)
      .message(model_proto::kOpsetImport, opset);
  // The spec and input shape let a reader rebuild the sprig model this came from.
  m.message(
      model_proto::kMetadataProps,
      Writer().string(string_entry::kKey, "sprig.spec").string(string_entry::kValue, model.spec));
  m.message(model_proto::kMetadataProps, Writer()
                                             .string(string_entry::kKey, "sprig.input_shape")
                                             .string(string_entry::kValue, input_shape));
  m.message(model_proto::kMetadataProps,
            Writer()
                .string(string_entry::kKey, "sprig.fold_bn")
                .string(string_entry::kValue, opt.fold_bn ? "1" : "0"));
  return m.bytes();
}

void export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& opt) {
  SPRIG_CHECK(!path.empty(), "onnx export: empty output path");
  const std::string bytes =
      onnx_model_bytes(model, opt);  // every model error before any file exists
  write_file_atomically(path, bytes.data(), bytes.size(), "cannot write ONNX file");
}

}  // namespace sprig::nn
