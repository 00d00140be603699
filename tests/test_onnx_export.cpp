// ONNX export (nn/onnx_export.h, sprig export): the graph decoded field by field with the
// independent reader in tests/protobuf_reader.h (nodes, attributes, initializers, inputs and
// outputs) for the zoo models, masked and shrunk models, layers that cannot be exported, the
// command line with its errors, and numerical agreement with onnxruntime (tests/onnx_check.py).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "infer/quantize.h"
#include "nn/checkpoint.h"
#include "nn/onnx_export.h"
#include "prune/prune.h"
#include "prune/shrink.h"
#include "tests/cli_test_util.h"
#include "tests/protobuf_reader.h"

using namespace sprig;
namespace fs = std::filesystem;
namespace pb = sprig::testing::pb;
using sprig::testing::count_lines;
using sprig::testing::Result;
using sprig::testing::run;

namespace {

// ---- decoding -------------------------------------------------------------------------------

struct OnnxNode {
  std::vector<std::string> inputs, outputs;
  std::string name, op;
  std::map<std::string, pb::Message> attrs;
};

struct Decoded {
  pb::Message model, graph;
  std::vector<OnnxNode> nodes;
  std::map<std::string, pb::Message> inits;  // by name
  std::vector<std::string> init_order;
};

Decoded decode(const std::string& bytes) {
  Decoded d;
  d.model = pb::Message(bytes);
  d.graph = d.model.msg(7);
  for (const pb::Message& n : d.graph.msgs(1)) {
    OnnxNode node{n.strs(1), n.strs(2), n.str(3), n.str(4), {}};
    for (const pb::Message& a : n.msgs(5)) {
      INFO("attribute of node ", node.name);
      REQUIRE(node.attrs.count(a.str(1)) == 0);
      node.attrs[a.str(1)] = a;
    }
    d.nodes.push_back(node);
  }
  for (const pb::Message& t : d.graph.msgs(5)) {
    d.init_order.push_back(t.str(8));
    d.inits[t.str(8)] = t;
  }
  return d;
}

std::vector<int64_t> repeated_ints(const pb::Message& m, uint32_t field) {
  std::vector<int64_t> r;
  for (const pb::Field* f : m.all(field)) {
    REQUIRE(f->wire_type == 0);
    r.push_back(f->as_int64());
  }
  return r;
}

// AttributeProto: type 7 (INTS) with ints = field 8.
std::vector<int64_t> ints_attr(const OnnxNode& n, const std::string& name) {
  INFO("node ", n.name, " attribute ", name);
  REQUIRE(n.attrs.count(name) == 1);
  const pb::Message& a = n.attrs.at(name);
  CHECK(a.i64(20) == 7);
  return repeated_ints(a, 8);
}

// AttributeProto: type 2 (INT) with i = field 3.
int64_t int_attr(const OnnxNode& n, const std::string& name) {
  INFO("node ", n.name, " attribute ", name);
  REQUIRE(n.attrs.count(name) == 1);
  const pb::Message& a = n.attrs.at(name);
  CHECK(a.i64(20) == 2);
  return a.i64(3);
}

// ValueInfoProto -> (name, dims) with the symbolic batch as -1; checks the FLOAT element type.
std::pair<std::string, std::vector<int64_t>> value_info(const pb::Message& v) {
  pb::Message tensor = v.msg(2).msg(1);
  CHECK(tensor.i64(1) == 1);
  std::vector<int64_t> dims;
  for (const pb::Message& d : tensor.msg(2).msgs(1)) {
    if (d.count(2)) {
      CHECK(d.str(2) == "N");
      dims.push_back(-1);
    } else {
      dims.push_back(d.i64(1));
    }
  }
  return {v.str(1), dims};
}

std::string float_bytes(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  std::string s(v.size() * 4, '\0');
  std::memcpy(&s[0], v.data(), s.size());  // the test machine is little-endian (x86, arm64)
  return s;
}

// Every initializer is F32 raw_data holding exactly the parameter's value, in parameter order.
void check_initializers(const Decoded& d, const nn::Model& m) {
  auto params = m.named_parameters();
  REQUIRE(d.init_order.size() == params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    INFO("initializer ", name);
    CHECK(d.init_order[i] == name);
    const pb::Message& t = d.inits.at(name);
    CHECK(repeated_ints(t, 1) == p->value.shape());
    CHECK(t.i64(2) == 1);  // FLOAT
    CHECK(t.str(9) == float_bytes(p->value));
  }
}

// An INT64 initializer's raw_data (8 bytes little-endian each).
std::vector<int64_t> raw_int64(const std::string& raw) {
  REQUIRE(raw.size() % 8 == 0);
  std::vector<int64_t> r(raw.size() / 8);
  std::memcpy(r.data(), raw.data(), raw.size());  // the test machine is little-endian
  return r;
}

std::vector<std::string> op_types(const Decoded& d) {
  std::vector<std::string> r;
  for (const OnnxNode& n : d.nodes) r.push_back(n.op);
  return r;
}

void check_header(const Decoded& d, const nn::Model& m) {
  CHECK(d.model.i64(1) == 8);  // ir_version
  CHECK(d.model.str(2) == "sprig");
  CHECK(!d.model.str(3).empty());
  auto opsets = d.model.msgs(8);
  REQUIRE(opsets.size() == 1);
  CHECK(opsets[0].str(1).empty());  // the default ai.onnx domain
  CHECK(opsets[0].i64(2) == 17);
  std::map<std::string, std::string> meta;
  for (const pb::Message& e : d.model.msgs(14)) meta[e.str(1)] = e.str(2);
  CHECK(meta["sprig.spec"] == m.spec);
  auto in = value_info(d.graph.msg(11));
  auto out = value_info(d.graph.msg(12));
  CHECK(in.first == "input");
  CHECK(out.first == "logits");
  Shape want_in = {-1}, want_out = {-1};
  for (int64_t v : m.input_shape) want_in.push_back(v);
  for (int64_t v : m.output_shape()) want_out.push_back(v);
  CHECK(in.second == want_in);
  CHECK(out.second == want_out);
  // A chain: each node reads the previous node's output; the last writes "logits".
  std::string prev = "input";
  for (const OnnxNode& n : d.nodes) {
    INFO("node ", n.name);
    REQUIRE(!n.inputs.empty());
    CHECK(n.inputs[0] == prev);
    REQUIRE(n.outputs.size() == 1);
    prev = n.outputs[0];
  }
  CHECK(prev == "logits");
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
  REQUIRE(out.good());
}

// Prunes half the filters / neurons by L1 norm and removes them physically.
nn::Model shrunk(const std::string& name, const Shape& in, uint64_t seed) {
  nn::Model m = nn::build_model(name, in, seed);
  prune::PruneSpec s;
  s.criterion = prune::Criterion::L1Norm;
  s.granularity = prune::Granularity::Filter;
  s.amount = 0.5;
  prune::prune_model(m, s);
  prune::shrink(m);
  return m;
}

// Every BatchNorm below m.
void batchnorms(nn::Module& m, std::vector<nn::BatchNorm*>& out) {
  if (auto* bn = dynamic_cast<nn::BatchNorm*>(&m)) out.push_back(bn);
  for (auto& [name, child] : m.children()) batchnorms(*child, out);
}

// BatchNorms that do something: scales around 1 and shifts around 0 per channel, then running
// statistics from a few training-mode passes over random data whose mean and spread are not
// 0 and 1. The model is left in eval mode.
void make_batchnorm_nontrivial(nn::Model& m, uint64_t seed) {
  Rng rng(seed);
  std::vector<nn::BatchNorm*> bns;
  batchnorms(*m.net, bns);
  REQUIRE(!bns.empty());
  for (nn::BatchNorm* bn : bns) {
    bn->weight->value.copy_(Tensor::uniform({bn->num_features}, 0.5f, 1.5f, rng));
    bn->bias->value.copy_(Tensor::normal({bn->num_features}, 0.0f, 0.3f, rng));
  }
  Shape batch = {8};
  for (int64_t v : m.input_shape) batch.push_back(v);
  {
    NoGradGuard no_grad;
    m.net->train();
    for (int i = 0; i < 3; ++i) m.forward(Tensor::normal(batch, 0.5f, 2.0f, rng));
  }
  m.net->eval();
  const std::vector<float> var = bns.front()->running_var.to_vector();
  REQUIRE(var[0] != 1.0f);  // the passes moved the statistics
}

// A resnet with every block's inner width halved by prune::shrink: each block's first conv loses
// its odd filters, with their BN scale and shift zeroed, so those channels are exactly zero.
// (Filter pruning alone leaves the BN shift, and shrink rightly keeps such channels.)
nn::Model resnet_with_thin_blocks(const std::string& name, const Shape& in, uint64_t seed) {
  nn::Model m = nn::build_model(name, in, seed);
  std::vector<nn::Residual*> blocks;
  std::function<void(nn::Module&)> walk = [&](nn::Module& mod) {
    if (auto* r = dynamic_cast<nn::Residual*>(&mod)) blocks.push_back(r);
    for (auto& [n, child] : mod.children()) walk(*child);
  };
  walk(*m.net);
  REQUIRE(blocks.size() == 9);
  for (nn::Residual* r : blocks) {
    auto* conv = dynamic_cast<nn::Conv2d*>(r->body->layers[0].get());
    auto* bn = dynamic_cast<nn::BatchNorm*>(r->body->layers[1].get());
    REQUIRE((conv && bn));
    std::vector<float> w = conv->weight->value.to_vector();  // (K, C, 3, 3)
    std::vector<float> g = bn->weight->value.to_vector(), b = bn->bias->value.to_vector();  // (K)
    const int64_t k = conv->out_channels, per = int64_t(w.size()) / k;
    for (int64_t c = 1; c < k; c += 2) {
      std::fill(w.begin() + c * per, w.begin() + (c + 1) * per, 0.0f);
      g[c] = b[c] = 0.0f;
    }
    conv->weight->value.copy_(Tensor::from_vector(w, conv->weight->value.shape()));
    bn->weight->value.copy_(Tensor::from_vector(g, {k}));
    bn->bias->value.copy_(Tensor::from_vector(b, {k}));
  }
  prune::shrink(m);
  return m;
}

// A layer kind the exporter does not know.
struct Tanh : nn::Module {
  Tensor forward(const Tensor& x) override { return x; }
  std::string spec() const override { return "tanh"; }
};

}  // namespace

TEST_SUITE("onnx export") {
  TEST_CASE("cnn2: Conv Relu Conv Relu Flatten Gemm with attributes and initializers") {
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 1);
    Decoded d = decode(nn::onnx_model_bytes(m));
    check_header(d, m);
    CHECK(op_types(d) ==
          std::vector<std::string>{"Conv", "Relu", "Conv", "Relu", "Flatten", "Gemm"});
    for (size_t i : {0, 2}) {
      const OnnxNode& c = d.nodes[i];
      CHECK(ints_attr(c, "kernel_shape") == std::vector<int64_t>{3, 3});
      CHECK(ints_attr(c, "strides") == std::vector<int64_t>{1, 1});
      CHECK(ints_attr(c, "pads") == std::vector<int64_t>{1, 1, 1, 1});
      CHECK(ints_attr(c, "dilations") == std::vector<int64_t>{1, 1});
      CHECK(c.attrs.size() == 4);
      std::string k = std::to_string(i);
      CHECK(c.inputs == std::vector<std::string>{i ? "1" : "input", k + ".weight", k + ".bias"});
    }
    CHECK(d.nodes[0].outputs[0] == "0");
    CHECK(d.nodes[1].attrs.empty());
    CHECK(int_attr(d.nodes[4], "axis") == 1);
    const OnnxNode& gemm = d.nodes[5];
    CHECK(int_attr(gemm, "transB") == 1);
    CHECK(gemm.attrs.size() == 1);
    CHECK(gemm.inputs == std::vector<std::string>{"4", "5.weight", "5.bias"});
    CHECK(repeated_ints(d.inits.at("0.weight"), 1) == std::vector<int64_t>{8, 1, 3, 3});
    CHECK(repeated_ints(d.inits.at("2.weight"), 1) == std::vector<int64_t>{16, 8, 3, 3});
    CHECK(repeated_ints(d.inits.at("5.weight"), 1) == std::vector<int64_t>{10, 16 * 28 * 28});
    check_initializers(d, m);
  }

  TEST_CASE("mlp: Flatten Gemm Relu Gemm Relu Gemm") {
    nn::Model m = nn::build_model("mlp", {1, 28, 28}, 2);
    Decoded d = decode(nn::onnx_model_bytes(m));
    check_header(d, m);
    CHECK(op_types(d) ==
          std::vector<std::string>{"Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"});
    for (size_t i : {1, 3, 5}) CHECK(int_attr(d.nodes[i], "transB") == 1);
    CHECK(repeated_ints(d.inits.at("1.weight"), 1) == std::vector<int64_t>{300, 784});
    CHECK(repeated_ints(d.inits.at("3.weight"), 1) == std::vector<int64_t>{100, 300});
    CHECK(repeated_ints(d.inits.at("5.bias"), 1) == std::vector<int64_t>{10});
    check_initializers(d, m);
  }

  TEST_CASE("lenet5 and a spec: MaxPool, strides, dilations, no bias") {
    nn::Model l = nn::build_model("lenet5", {1, 28, 28}, 3);
    Decoded d = decode(nn::onnx_model_bytes(l));
    check_header(d, l);
    CHECK(op_types(d)[2] == "MaxPool");
    CHECK(ints_attr(d.nodes[2], "kernel_shape") == std::vector<int64_t>{2, 2});
    CHECK(ints_attr(d.nodes[2], "strides") == std::vector<int64_t>{2, 2});
    CHECK(ints_attr(d.nodes[2], "pads") == std::vector<int64_t>{0, 0, 0, 0});
    check_initializers(d, l);

    nn::Model m = nn::build_model(
        "conv(4,3,stride=2,pad=2,dilation=2,bias=0) relu maxpool(3,stride=2,pad=1) flatten "
        "linear(5,bias=0)",
        {3, 11, 9}, 4);
    d = decode(nn::onnx_model_bytes(m));
    check_header(d, m);
    CHECK(op_types(d) == std::vector<std::string>{"Conv", "Relu", "MaxPool", "Flatten", "Gemm"});
    CHECK(d.nodes[0].inputs == std::vector<std::string>{"input", "0.weight"});
    CHECK(ints_attr(d.nodes[0], "strides") == std::vector<int64_t>{2, 2});
    CHECK(ints_attr(d.nodes[0], "pads") == std::vector<int64_t>{2, 2, 2, 2});
    CHECK(ints_attr(d.nodes[0], "dilations") == std::vector<int64_t>{2, 2});
    CHECK(ints_attr(d.nodes[2], "kernel_shape") == std::vector<int64_t>{3, 3});
    CHECK(ints_attr(d.nodes[2], "pads") == std::vector<int64_t>{1, 1, 1, 1});
    CHECK(d.nodes[4].inputs == std::vector<std::string>{"3", "4.weight"});
    check_initializers(d, m);
  }

  TEST_CASE("masked models export their values (zeros included); shrunk models are smaller") {
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 5);
    prune::l1_unstructured(*m.named_parameters()[4].second, 0.9);  // 5.weight
    REQUIRE(m.named_parameters()[4].second->mask);
    Decoded d = decode(nn::onnx_model_bytes(m));
    check_initializers(d, m);
    std::vector<float> w = pb::unpack_float(d.inits.at("5.weight").str(9));
    int64_t zeros = 0;
    for (float v : w) zeros += v == 0.0f;
    CHECK(zeros == 112896);  // 90% of 125440

    nn::Model s = shrunk("cnn2", {1, 28, 28}, 6);
    CHECK(s.spec == "conv(4,3,pad=1) relu conv(8,3,pad=1) relu flatten linear(10)");
    d = decode(nn::onnx_model_bytes(s));
    check_header(d, s);
    CHECK(repeated_ints(d.inits.at("2.weight"), 1) == std::vector<int64_t>{8, 4, 3, 3});
    CHECK(repeated_ints(d.inits.at("5.weight"), 1) == std::vector<int64_t>{10, 8 * 28 * 28});
    check_initializers(d, s);
  }

  TEST_CASE("resnet20 / resnet20b: nested blocks, Add, Slice + Pad, BN folded or not") {
    auto count = [](const Decoded& d, const std::string& op) {
      int n = 0;
      for (const OnnxNode& node : d.nodes) n += node.op == op;
      return n;
    };
    auto find = [](const Decoded& d, const std::string& name) -> const OnnxNode& {
      for (const OnnxNode& node : d.nodes)
        if (node.name == name) return node;
      FAIL("no node ", name);
      return d.nodes.front();
    };
    nn::Model a = nn::build_model("resnet20", {3, 8, 8}, 21);
    make_batchnorm_nontrivial(a, 22);
    nn::OnnxExportOptions unfolded;
    unfolded.fold_bn = false;
    Decoded f = decode(nn::onnx_model_bytes(a));
    Decoded u = decode(nn::onnx_model_bytes(a, unfolded));
    for (const Decoded* d : {&f, &u}) {
      CHECK(count(*d, "Conv") == 19);
      CHECK(count(*d, "Add") == 9);
      CHECK(count(*d, "Relu") == 19);
      CHECK(count(*d, "Slice") == 2);
      CHECK(count(*d, "Pad") == 2);
      CHECK(count(*d, "GlobalAveragePool") == 1);
      CHECK(d->nodes.back().op == "Gemm");
      CHECK(d->nodes.back().outputs[0] == "logits");
    }
    CHECK(count(f, "BatchNormalization") == 0);
    CHECK(count(u, "BatchNormalization") == 19);
    // Unfolded, every parameter and running statistic is an initializer holding its value.
    for (auto& [name, p] : a.named_parameters()) {
      INFO(name);
      REQUIRE(u.inits.count(name));
      CHECK(u.inits.at(name).str(9) == float_bytes(p->value));
    }
    for (auto& [name, t] : a.named_buffers()) {
      INFO(name);
      REQUIRE(u.inits.count(name));
      CHECK(u.inits.at(name).str(9) == float_bytes(*t));
    }

    // A block: conv1+bn1 -> relu -> conv2+bn2, plus the shortcut, then Add and Relu.
    const OnnxNode& conv = find(f, "layer2.0.conv1+bn1");
    CHECK(conv.inputs == std::vector<std::string>{"layer1.2.relu", "layer2.0.conv1+bn1.weight",
                                                  "layer2.0.conv1+bn1.bias"});
    CHECK(ints_attr(conv, "strides") == std::vector<int64_t>{2, 2});
    const OnnxNode& slice = find(f, "layer2.0.shortcut.0.slice");
    CHECK(slice.inputs[0] == "layer1.2.relu");
    CHECK(raw_int64(f.inits.at("layer2.0.shortcut.0.slice.steps").str(9)) ==
          std::vector<int64_t>{2, 2});
    CHECK(f.inits.at("layer2.0.shortcut.0.slice.steps").i64(2) == 7);  // INT64
    const OnnxNode& pad = find(f, "layer2.0.shortcut.0.pad");
    CHECK(pad.inputs[0] == "layer2.0.shortcut.0.slice");
    CHECK(raw_int64(f.inits.at("layer2.0.shortcut.0.pad.pads").str(9)) ==
          std::vector<int64_t>{0, 8, 0, 0, 0, 8, 0, 0});
    CHECK(find(f, "layer2.0.add").inputs ==
          std::vector<std::string>{"layer2.0.conv2+bn2", "layer2.0.shortcut.0.pad"});
    CHECK(find(f, "layer2.1.add").inputs ==
          std::vector<std::string>{"layer2.1.conv2+bn2", "layer2.0.relu"});  // identity

    // The folded weights and bias, against the formula in double.
    auto* block = dynamic_cast<nn::Residual*>(
        dynamic_cast<nn::Sequential*>(a.net->layers[4].get())->layers[0].get());  // layer2.0
    REQUIRE(block);
    auto* c1 = dynamic_cast<nn::Conv2d*>(block->body->layers[0].get());
    auto* b1 = dynamic_cast<nn::BatchNorm*>(block->body->layers[1].get());
    REQUIRE((c1 && b1));
    std::vector<float> w = c1->weight->value.to_vector(), g = b1->weight->value.to_vector(),
                       beta = b1->bias->value.to_vector(), mu = b1->running_mean.to_vector(),
                       var = b1->running_var.to_vector();
    std::vector<float> fw = pb::unpack_float(f.inits.at("layer2.0.conv1+bn1.weight").str(9));
    std::vector<float> fb = pb::unpack_float(f.inits.at("layer2.0.conv1+bn1.bias").str(9));
    REQUIRE(fw.size() == w.size());
    REQUIRE(fb.size() == 32);
    const size_t per = w.size() / 32;
    for (size_t k = 0; k < 32; ++k) {
      const double scale = double(g[k]) / std::sqrt(double(var[k]) + 1e-5);
      CHECK(fb[k] == doctest::Approx(-double(mu[k]) * scale + beta[k]).epsilon(1e-6));
      for (size_t j = 0; j < per; j += 17)
        CHECK(fw[k * per + j] == doctest::Approx(double(w[k * per + j]) * scale).epsilon(1e-6));
    }
    // Unfolded: BatchNormalization with the statistics as initializers and BN's epsilon.
    const OnnxNode& bn = find(u, "layer2.0.bn1");
    CHECK(bn.op == "BatchNormalization");
    CHECK(bn.inputs == std::vector<std::string>{"layer2.0.conv1", "layer2.0.bn1.weight",
                                                "layer2.0.bn1.bias", "layer2.0.bn1.running_mean",
                                                "layer2.0.bn1.running_var"});
    CHECK(u.inits.at("layer2.0.bn1.running_var").str(9) == float_bytes(b1->running_var));
    REQUIRE(bn.attrs.count("epsilon"));
    CHECK(bn.attrs.at("epsilon").i64(20) == 1);  // FLOAT

    // Option B: the shortcut is conv + BN, folded into one Conv.
    nn::Model b = nn::build_model("resnet20b", {3, 8, 8}, 23);
    make_batchnorm_nontrivial(b, 24);
    Decoded fb2 = decode(nn::onnx_model_bytes(b));
    Decoded ub2 = decode(nn::onnx_model_bytes(b, unfolded));
    CHECK(count(fb2, "Conv") == 21);
    CHECK(count(fb2, "BatchNormalization") == 0);
    CHECK(count(fb2, "Slice") + count(fb2, "Pad") == 0);
    CHECK(count(ub2, "BatchNormalization") == 21);
    CHECK(find(fb2, "layer3.0.add").inputs ==
          std::vector<std::string>{"layer3.0.conv2+bn2", "layer3.0.shortcut.0+1"});
    CHECK(find(ub2, "layer3.0.add").inputs ==
          std::vector<std::string>{"layer3.0.bn2", "layer3.0.shortcut.1"});
  }

  TEST_CASE("NaN or negative running statistics are an error naming the buffer") {
    nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 25);
    std::vector<nn::BatchNorm*> bns;
    batchnorms(*m.net, bns);
    std::vector<float> var = bns[4]->running_var.to_vector();
    var[3] = std::nanf("");
    bns[4]->running_var.copy_(Tensor::from_vector(var, {int64_t(var.size())}));
    for (bool fold : {true, false}) {
      nn::OnnxExportOptions opt;
      opt.fold_bn = fold;
      std::string msg;
      try {
        nn::onnx_model_bytes(m, opt);
      } catch (const Error& e) {
        msg = e.what();
      }
      CHECK(msg.find("layer1.1.bn2.running_var holds nan at channel 3") != std::string::npos);
    }
    var[3] = -1.0f;
    bns[4]->running_var.copy_(Tensor::from_vector(var, {int64_t(var.size())}));
    CHECK_THROWS_WITH_AS(nn::onnx_model_bytes(m), doctest::Contains("holds -1 at channel 3"),
                         Error);
  }

  TEST_CASE("a layer with no ONNX equivalent is an error naming it") {
    nn::Model m = nn::build_model("mlp", {1, 28, 28}, 7);
    m.net->layers.insert(m.net->layers.begin() + 2, std::make_shared<Tanh>());
    std::string msg;
    try {
      nn::onnx_model_bytes(m);
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK(msg.find("layer 2 'tanh'") != std::string::npos);
    CHECK(msg.find("no ONNX equivalent") != std::string::npos);

    // A block's own Add would clash with a layer the spec named "add".
    nn::Model clash = nn::build_model("res[add:conv(2,3,pad=1)] flatten linear(3)", {2, 4, 4}, 7);
    CHECK_THROWS_WITH_AS(nn::onnx_model_bytes(clash), doctest::Contains("value '0.add'"), Error);

    // Nothing is written when the model cannot be exported.
    fs::path dir = sprig::testing::temp_dir("test_onnx_export");
    fs::path out = dir / "kept.onnx";
    write_file(out, "precious");
    CHECK_THROWS_AS(nn::export_onnx(m, out.string()), Error);
    CHECK(read_file(out) == "precious");
    fs::remove_all(dir);
  }

  TEST_CASE("sprig export: writes the same bytes; bad input is a one-line error, --out kept") {
    fs::path dir = sprig::testing::temp_dir("test_onnx_export_cli");
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 8);
    std::string ck = (dir / "cnn2.safetensors").string();
    nn::save_checkpoint(ck, m);
    fs::path out = dir / "cnn2.onnx";

    Result ok = run("export " + ck + " --format onnx --out " + out.string() + " --json");
    INFO(ok.out);
    REQUIRE(ok.code == 0);
    CHECK(read_file(out) == nn::onnx_model_bytes(nn::load_checkpoint(ck).model));
    CHECK(ok.out.find("\"opset\":17") != std::string::npos);
    Result help = run("export --help");
    CHECK(help.code == 0);
    CHECK(help.out.find("--format") != std::string::npos);
    CHECK(help.out.find("--no-fold-bn") != std::string::npos);

    // A ResNet checkpoint, folded by default, unfolded with --no-fold-bn.
    nn::Model r = nn::build_model("resnet20b", {3, 8, 8}, 9);
    make_batchnorm_nontrivial(r, 10);
    std::string rck = (dir / "resnet20b.safetensors").string();
    nn::save_checkpoint(rck, r);
    nn::Model loaded = nn::load_checkpoint(rck).model;
    nn::OnnxExportOptions unfolded;
    unfolded.fold_bn = false;
    for (bool fold : {true, false}) {
      Result e = run("export " + rck + " --out " + out.string() + (fold ? "" : " --no-fold-bn") +
                     " --json");
      INFO(e.out);
      REQUIRE(e.code == 0);
      CHECK(e.out.find(fold ? "\"fold_bn\":true" : "\"fold_bn\":false") != std::string::npos);
      CHECK(read_file(out) ==
            nn::onnx_model_bytes(loaded, fold ? nn::OnnxExportOptions{} : unfolded));
    }

    fs::path kept = dir / "kept.onnx";
    struct Bad {
      std::string args, words[2];
    };
    const Bad bad[] = {
        {"export " + ck + " --format tflite --out " + kept.string(), {"'tflite'", "onnx"}},
        {"export " + (dir / "missing.safetensors").string() + " --out " + kept.string(),
         {"missing.safetensors", "error"}},
        {"export --in " + ck + " --format onnx --out " + kept.string() + "/x.onnx",
         {"kept.onnx/x.onnx", "cannot write"}},
        {"export " + ck + " --out " + dir.string(), {dir.string(), "exists and is a directory"}},
    };
    for (const Bad& b : bad) {
      write_file(kept, "precious");
      Result r = run(b.args);
      INFO(b.args, "\n", r.out);
      CHECK(r.code != 0);
      CHECK(count_lines(r.out) == 1);
      CHECK(r.out.rfind("sprig: error: ", 0) == 0);
      for (const std::string& w : b.words) CHECK(r.out.find(w) != std::string::npos);
      CHECK(read_file(kept) == "precious");
    }
    // No temporary files left behind by the failed writes.
    for (const auto& e : fs::directory_iterator(dir))
      CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
    fs::remove_all(dir);
  }
}

// ---- onnxruntime ------------------------------------------------------------------------------

namespace {

std::string check_script() {
  return std::string(SPRIG_SOURCE_DIR) + "/tests/onnx_check.py";
}

// A Python with numpy and onnxruntime: $SPRIG_PYTHON, python3 on PATH, or Debian's. Empty when
// none has both.
std::string python_with_onnxruntime() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SPRIG_PYTHON")) candidates.push_back(env);
  candidates.push_back("python3");
  candidates.push_back("/usr/bin/python3");
  for (const std::string& py : candidates) {
    std::string cmd = "'" + py + "' -c 'import numpy, onnxruntime' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

}  // namespace

TEST_CASE("onnxruntime runs the exports and agrees with sprig to 1e-5 (relative)") {
  std::string py = python_with_onnxruntime();
  // Not a skip: CI installs onnxruntime (scripts/setup.sh --test), so its absence is a failure.
  REQUIRE_MESSAGE(!py.empty(),
                  "no python3 with numpy and onnxruntime (run bash scripts/setup.sh --test, or "
                  "set SPRIG_PYTHON to one)");
  fs::path dir = sprig::testing::temp_dir("test_onnx_export_ort");
  const Shape image = {1, 28, 28};
  struct Exported {
    std::string label;
    nn::Model model;
    bool fold_bn = true;
  };
  std::vector<Exported> models;
  models.push_back({"cnn2-dense", nn::build_model("cnn2", image, 11)});
  models.push_back({"cnn2-shrunk", shrunk("cnn2", image, 12)});
  models.push_back({"mlp-dense", nn::build_model("mlp", image, 13)});
  models.push_back({"mlp-shrunk", shrunk("mlp", image, 14)});
  models.push_back({"lenet5-dense", nn::build_model("lenet5", image, 15)});
  models.push_back(
      {"spec-stride-dilation-pool",
       nn::build_model("conv(4,3,stride=2,pad=2,dilation=2,bias=0) relu maxpool(3,stride=2,pad=1) "
                       "conv(6,2) relu flatten linear(5,bias=0)",
                       {3, 17, 15}, 16)});
  CHECK(models[1].model.spec == "conv(4,3,pad=1) relu conv(8,3,pad=1) relu flatten linear(10)");
  CHECK(models[3].model.spec == "flatten linear(150) relu linear(50) relu linear(10)");
  // ResNets with BatchNorm statistics that matter, folded and not; small inputs keep it quick.
  const Shape small = {3, 12, 12};
  for (const char* name : {"resnet20", "resnet20b"}) {
    nn::Model m = nn::build_model(name, small, 18);
    make_batchnorm_nontrivial(m, 19);
    models.push_back({std::string(name) + "-folded", m, true});
    models.push_back({std::string(name) + "-unfolded", m, false});
  }
  {
    nn::Model m = resnet_with_thin_blocks("resnet20", small, 20);
    CHECK(m.spec.find("layer1:seq[res[conv1:conv(8,3,pad=1,bias=0)") != std::string::npos);
    make_batchnorm_nontrivial(m, 21);
    models.push_back({"resnet20-shrunk-folded", m, true});
    models.push_back({"resnet20-shrunk-unfolded", m, false});
  }
  // The other new layers: BN after a conv with a bias and after a linear (1d), average pooling
  // with padding, a shortcut with off-centre zero channels (1 before, 3 after: what shrinking a
  // ResNet's stages leaves), a block without the ReLU.
  {
    nn::Model m = nn::build_model(
        "conv(4,3,pad=1) bn relu avgpool(3,stride=2,pad=1) res[conv(8,3,stride=2,pad=1) bn relu "
        "conv(8,3,pad=1,bias=0) bn | shortcut(8,stride=2,pad=1)] res(relu=0)[conv(8,1) bn] gap "
        "flatten linear(6) bn relu linear(5)",
        {2, 11, 11}, 22);
    make_batchnorm_nontrivial(m, 23);
    models.push_back({"spec-bn-avgpool-shortcut-folded", m, true});
    models.push_back({"spec-bn-avgpool-shortcut-unfolded", m, false});
  }

  std::string args;
  Rng rng(17);
  for (Exported& e : models) {
    nn::Model& m = e.model;
    Shape batch = {7};
    for (int64_t v : m.input_shape) batch.push_back(v);
    Tensor x = Tensor::normal(batch, 0.0f, 1.0f, rng);  // (7, C, H, W)
    Tensor y;
    {
      NoGradGuard no_grad;
      m.net->eval();
      y = m.forward(x).detach();  // (7, classes)
    }
    std::string data = (dir / (e.label + ".safetensors")).string();
    std::string onnx = (dir / (e.label + ".onnx")).string();
    save_safetensors(data, {{"input", x}, {"logits", y}});
    nn::OnnxExportOptions opt;
    opt.fold_bn = e.fold_bn;
    nn::export_onnx(m, onnx, opt);
    args += " '" + e.label + "' '" + onnx + "' '" + data + "'";
  }
  // The script prints each model's largest error; its exit code says whether all agreed.
  std::string cmd = "'" + py + "' '" + check_script() + "'" + args;
  CHECK(std::system(cmd.c_str()) == 0);
  fs::remove_all(dir);
}

TEST_CASE("onnxruntime runs int8 models exported in QDQ form and agrees with sprig's int8") {
  std::string py = python_with_onnxruntime();
  REQUIRE_MESSAGE(!py.empty(),
                  "no python3 with numpy and onnxruntime (run bash scripts/setup.sh --test, or "
                  "set SPRIG_PYTHON to one)");
  fs::path dir = sprig::testing::temp_dir("test_onnx_export_qdq");
  struct Case {
    const char* label;
    const char* spec;
    Shape in;
  };
  // One-layer models first: the same uint8 codes (sprig quantises as ONNX defines it) and the
  // same int8 weights, so only float rounding of one sum may differ (1e-5). In deeper models
  // that rounding can move a later layer's input across a rounding boundary, one uint8 step:
  // about 5e-5 of the values, each worth a step times its weights (5e-3).
  const Case cases[] = {
      {"qdq-linear", "flatten linear(7)", {2, 5, 5}},
      {"qdq-conv", "conv(5,3,stride=2,pad=1)", {3, 9, 8}},
      {"qdq-cnn2", "cnn2", {1, 28, 28}},
      {"qdq-mlp-pruned", "mlp", {1, 28, 28}},
      {"qdq-spec",
       "conv(4,3,stride=2,pad=1) relu maxpool(2) conv(6,1,bias=0) flatten linear(5)",
       {3, 13, 11}},
      {"qdq-resnet20", "resnet20", {3, 12, 12}},
  };
  std::string single, deep;  // onnx_check arguments
  Rng rng(31);
  for (const Case& c : cases) {
    nn::Model m = nn::build_model(c.spec, c.in, 32);
    if (std::string(c.label) == "qdq-resnet20") make_batchnorm_nontrivial(m, 33);  // folded first
    if (std::string(c.label) == "qdq-mlp-pruned") {
      prune::PruneSpec ps;
      ps.amount = 0.9;
      prune::prune_model(m, ps);
    }
    Shape batch = {16};
    batch.insert(batch.end(), c.in.begin(), c.in.end());
    infer::QuantizeOptions qo;
    qo.pack.format = infer::PackFormat::Dense;
    infer::InferenceModel q = infer::quantize_model(m, Tensor::normal(batch, 0.0f, 1.0f, rng), qo);
    Tensor x = Tensor::normal(batch, 0.0f, 1.0f, rng);  // (16, C, H, W)
    Tensor y = q.forward(x);                            // sprig's int8 kernels
    std::string data = (dir / (std::string(c.label) + ".safetensors")).string();
    std::string onnx = (dir / (std::string(c.label) + ".onnx")).string();
    save_safetensors(data, {{"input", x}, {"logits", y}});
    nn::OnnxExportOptions opt;
    opt.qdq = infer::qdq_layers(q);
    REQUIRE(opt.qdq.size() == q.layers.size());
    nn::export_onnx(q.model, onnx, opt);
    (q.layers.size() == 1 ? single : deep) +=
        " '" + std::string(c.label) + "' '" + onnx + "' '" + data + "'";
  }
  // A layer the model does not have is an error naming it.
  nn::OnnxExportOptions bad;
  bad.qdq["7"] = {};
  CHECK_THROWS_WITH_AS(nn::onnx_model_bytes(nn::build_model("mlp", {1, 28, 28}, 1), bad),
                       doctest::Contains("quantised layer '7'"), Error);
  for (auto [rtol, args] : {std::pair<const char*, std::string>{"1e-5", single}, {"5e-3", deep}}) {
    std::string cmd = "'" + py + "' '" + check_script() + "' --qdq --rtol " + rtol + args;
    CHECK(std::system(cmd.c_str()) == 0);
  }
  fs::remove_all(dir);
}
