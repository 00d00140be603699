#include "nn/onnx_export.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

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
constexpr uint32_t kName = 1, kI = 3, kInts = 8, kType = 20;
constexpr uint64_t kTypeInt = 2, kTypeInts = 7;  // AttributeProto.AttributeType
}  // namespace attribute_proto
namespace tensor_proto {  // TensorProto
constexpr uint32_t kDims = 1, kDataType = 2, kName = 8, kRawData = 9;
constexpr uint64_t kFloat = 1;  // TensorProto.DataType.FLOAT
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

Writer node(const std::string& name, const std::string& op, const std::vector<std::string>& inputs,
            const std::string& output, const std::vector<Writer>& attributes = {}) {
  Writer n;
  for (const std::string& in : inputs) n.string(node_proto::kInput, in);
  n.string(node_proto::kOutput, output);
  n.string(node_proto::kName, name);
  n.string(node_proto::kOpType, op);
  for (const Writer& a : attributes) n.message(node_proto::kAttribute, a);
  return n;
}

// A float32 initializer; raw_data is little-endian whatever the host's byte order.
Writer initializer(const std::string& name, const Tensor& value) {
  Tensor t = value.device().is_cpu() ? value : value.to(Device::cpu());
  SPRIG_CHECK(t.dtype() == DType::F32, "onnx export: parameter '", name, "' is ",
              dtype_name(t.dtype()), ", expected F32");
  const float* p = t.data();
  std::string raw;
  raw.reserve(4 * static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, 4);
    for (int b = 0; b < 4; ++b) raw.push_back(static_cast<char>((u >> (8 * b)) & 0xff));
  }
  Writer w;
  repeated_int64(w, tensor_proto::kDims, t.shape());
  w.varint(tensor_proto::kDataType, tensor_proto::kFloat);
  w.string(tensor_proto::kName, name);
  w.string(tensor_proto::kRawData, raw);
  return w;
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

std::string layer_label(size_t i, const Module& layer) {
  return "layer " + std::to_string(i) + " '" + layer.spec() + "'";
}

}  // namespace

std::string onnx_model_bytes(const Model& model) {
  SPRIG_CHECK(model.net, "onnx export: the model has no network");
  const auto& layers = model.net->layers;
  SPRIG_CHECK(!layers.empty(), "onnx export: the model '", model.spec, "' has no layers");
  const Shape out_shape = model.output_shape();  // throws when input_shape does not fit

  Writer graph;
  std::vector<Writer> initializers;
  std::string current = kOnnxInputName;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Module* layer = layers[i].get();
    SPRIG_CHECK(layer, "onnx export: layer ", i, " is empty");
    const std::string idx = std::to_string(i);
    const std::string out = i + 1 == layers.size() ? kOnnxOutputName : "h" + idx;
    auto add_param = [&](const std::string& local, const ParameterPtr& p) {
      std::string name = idx + "." + local;  // as in named_parameters / checkpoints
      initializers.push_back(initializer(name, p->value));
      return name;
    };
    Writer n;
    if (auto* conv = dynamic_cast<const Conv2d*>(layer)) {
      std::vector<std::string> in = {current, add_param("weight", conv->weight)};
      if (conv->bias) in.push_back(add_param("bias", conv->bias));
      const int64_t k = conv->kernel, s = conv->opt.stride, p = conv->opt.padding,
                    d = conv->opt.dilation;
      n = node(idx, "Conv", in, out,
               {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                ints_attribute("pads", {p, p, p, p}), ints_attribute("dilations", {d, d})});
    } else if (auto* lin = dynamic_cast<const Linear*>(layer)) {
      std::vector<std::string> in = {current, add_param("weight", lin->weight)};
      if (lin->bias) in.push_back(add_param("bias", lin->bias));
      n = node(idx, "Gemm", in, out, {int_attribute("transB", 1)});
    } else if (dynamic_cast<const ReLU*>(layer)) {
      n = node(idx, "Relu", {current}, out);
    } else if (auto* pool = dynamic_cast<const MaxPool2d*>(layer)) {
      const int64_t k = pool->kernel, s = pool->stride, p = pool->padding;
      // ONNX pads with -inf as sprig clips; a window wholly in the padding would differ.
      SPRIG_CHECK(2 * p <= k, "onnx export: ", layer_label(i, *layer), " has padding ", p,
                  " > kernel/2, which ONNX MaxPool does not define the same way");
      n = node(idx, "MaxPool", {current}, out,
               {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                ints_attribute("pads", {p, p, p, p})});
    } else if (dynamic_cast<const Flatten*>(layer)) {
      n = node(idx, "Flatten", {current}, out, {int_attribute("axis", 1)});
    } else {
      throw Error("onnx export: " + layer_label(i, *layer) +
                  " has no ONNX equivalent (exportable: conv, linear, relu, maxpool, flatten)");
    }
    graph.message(graph_proto::kNode, n);
    current = out;
  }
  graph.string(graph_proto::kName, "sprig");
  for (const Writer& t : initializers) graph.message(graph_proto::kInitializer, t);
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
  return m.bytes();
}

namespace {

template <typename... Args>
[[noreturn]] void write_fail(const std::string& path, const Args&... args) {
  throw Error(detail::concat("cannot write ONNX file '", path, "': ", args...));
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void export_onnx(const Model& model, const std::string& path) {
  SPRIG_CHECK(!path.empty(), "onnx export: empty output path");
  const std::string bytes = onnx_model_bytes(model);  // every model error before any file exists
  // The temp file sits beside path: rename is atomic only within one filesystem.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) write_fail(path, "cannot create '", tmp, "': ", std::strerror(errno));
  try {
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
      ssize_t put = ::write(fd, p, left);
      if (put < 0 && errno == EINTR) continue;
      if (put < 0) write_fail(path, "write to '", tmp, "' failed: ", std::strerror(errno));
      p += put;
      left -= static_cast<size_t>(put);
    }
    if (::fsync(fd) != 0) write_fail(path, "fsync of '", tmp, "' failed: ", std::strerror(errno));
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) write_fail(path, "close of '", tmp, "' failed: ", std::strerror(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      write_fail(path, "rename from '", tmp, "' failed: ", std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename durable; best effort, the new file is already in place.
  int dir = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace sprig::nn
