// prune::shrink: zeroed filters / neurons are removed physically, with the matching inputs of
// their consumers, and the model computes the same outputs with the hand-counted parameters.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/summary.h"
#include "prune/shrink.h"
#include "tests/shrink_test_util.h"

using namespace sprig;
using test::check_close;
namespace fs = std::filesystem;

namespace {

nn::Parameter& weight_of(nn::Model& m, size_t layer) {
  for (auto& [name, p] : m.named_parameters())
    if (name == std::to_string(layer) + ".weight") return *p;
  FAIL("no weight in layer " << layer);
  throw;
}

nn::Parameter* bias_of(nn::Model& m, size_t layer) {
  for (auto& [name, p] : m.named_parameters())
    if (name == std::to_string(layer) + ".bias") return p.get();
  return nullptr;
}

// Zeroes output unit `unit` of a conv/linear layer: its weight row and (optionally) its bias.
void zero_unit(nn::Model& m, size_t layer, int64_t unit, bool bias_too = true) {
  nn::Parameter& w = weight_of(m, layer);
  int64_t row = w.numel() / w.value.size(0);
  std::fill(w.value.data() + unit * row, w.value.data() + (unit + 1) * row, 0.0f);
  if (nn::Parameter* b = bias_of(m, layer); b && bias_too) b->value.data()[unit] = 0.0f;
}

std::vector<float> run(const nn::Model& m, const Tensor& x) {
  NoGradGuard no_grad;
  return m.forward(x).to_vector();
}

// Shrinks m and checks that a random batch gives the same outputs before and after, that the
// parameter count and spec are the expected ones and that the summary agrees.
prune::ShrinkReport shrink_and_check(nn::Model& m, int64_t params, const std::string& spec) {
  Tensor x = test::random_batch(m.input_shape, 4, 7);
  std::vector<float> before = run(m, x);
  int64_t params_before = m.num_parameters();
  prune::ShrinkReport r = prune::shrink(m);
  check_close(before, run(m, x));
  CHECK(r.params_before == params_before);
  CHECK(r.params_after == params);
  CHECK(m.num_parameters() == params);
  CHECK(m.spec == spec);
  nn::ModelSummary s = nn::summarize(m);
  CHECK(s.params == params);
  for (const prune::ShrinkLayer& l : r.layers)
    CHECK(s.layers[std::stoul(l.name)].spec == l.spec_after);
  // Names follow the new layout, as build_model gives them.
  for (auto& [name, p] : m.named_parameters()) CHECK(p->name == name);
  return r;
}

const prune::ShrinkLayer& layer_report(const prune::ShrinkReport& r, const std::string& name) {
  for (const auto& l : r.layers)
    if (l.name == name) return l;
  FAIL("no report for layer " << name);
  throw;
}

// A layer kind shrink does not know (it passes values through).
struct Identity : nn::Module {
  Tensor forward(const Tensor& x) override { return x; }
  std::string spec() const override { return "identity"; }
};

}  // namespace

TEST_SUITE("shrink") {
  TEST_CASE("conv -> relu -> conv -> relu -> flatten -> linear") {
    nn::Model m = nn::build_model("conv(6,3,pad=1) relu conv(8,3,pad=1) relu flatten linear(5)",
                                  {2, 8, 8}, 1);
    for (int64_t u : {0, 2, 5}) zero_unit(m, 0, u);
    for (int64_t u : {0, 4, 7}) zero_unit(m, 2, u);
    zero_unit(m, 5, 2);  // the model's outputs stay, even an all-zero one
    // conv(3) on 2 channels: 3*2*9+3 = 57; conv(5) on 3: 5*3*9+5 = 140; linear: 5*5*64+5 = 1605
    auto r = shrink_and_check(m, 57 + 140 + 1605,
                              "conv(3,3,pad=1) relu conv(5,3,pad=1) relu flatten linear(5)");
    REQUIRE(r.layers.size() == 3);
    CHECK(layer_report(r, "0").spec_before == "conv(6,3,pad=1)");
    CHECK(layer_report(r, "0").units_after == 3);
    CHECK(layer_report(r, "2").units_before == 8);
    CHECK(layer_report(r, "2").units_after == 5);
    CHECK(layer_report(r, "5").units_after == 5);
    CHECK(m.output_shape() == Shape{5});
  }

  TEST_CASE("conv -> relu -> maxpool -> conv -> relu -> flatten -> linear") {
    nn::Model m = nn::build_model(
        "conv(6,3,pad=1) relu maxpool(2) conv(5,3) relu flatten linear(4)", {1, 10, 10}, 2);
    zero_unit(m, 0, 1);
    zero_unit(m, 0, 3);
    zero_unit(m, 0, 5, /*bias_too=*/false);  // outputs relu(bias), a constant: must stay
    REQUIRE(bias_of(m, 0)->value.data()[5] != 0.0f);
    zero_unit(m, 3, 0);
    zero_unit(m, 3, 4);
    // conv(4) on 1: 4*9+4 = 40; conv(3) on 4: 3*4*9+3 = 111; linear on 3*3*3: 4*27+4 = 112
    auto r = shrink_and_check(m, 40 + 111 + 112,
                              "conv(4,3,pad=1) relu maxpool(2) conv(3,3) relu flatten linear(4)");
    CHECK(layer_report(r, "0").zero_weight_kept == 1);
    CHECK(layer_report(r, "3").zero_weight_kept == 0);
  }

  TEST_CASE("linear -> relu -> linear -> relu -> linear") {
    nn::Model m = nn::build_model("flatten linear(12) relu linear(9) relu linear(3)", {1, 4, 4}, 3);
    for (int64_t u : {0, 6, 11}) zero_unit(m, 1, u);
    for (int64_t u : {0, 4, 8}) zero_unit(m, 3, u);
    // 9*16+9 = 153; 6*9+6 = 60; 3*6+3 = 21
    shrink_and_check(m, 153 + 60 + 21, "flatten linear(9) relu linear(6) relu linear(3)");
  }

  TEST_CASE("a layer whose units are all zero keeps one") {
    nn::Model m = nn::build_model("flatten linear(12) relu linear(9) relu linear(3)", {1, 4, 4}, 4);
    for (int64_t u = 0; u < 9; ++u) zero_unit(m, 3, u);
    // Layer 3 keeps one (zero) unit. Its weights are all zero, so it reads none of layer 1's
    // outputs, and layer 1 keeps one unit too: linear(1) on 16: 17; linear(1) on 1: 2;
    // linear(3) on 1: 6.
    auto r = shrink_and_check(m, 17 + 2 + 6, "flatten linear(1) relu linear(1) relu linear(3)");
    CHECK(layer_report(r, "3").units_after == 1);
    CHECK(layer_report(r, "1").units_after == 1);
  }

  TEST_CASE("units that read only removed inputs go too; a second shrink is a no-op") {
    nn::Model m = nn::build_model("flatten linear(12) relu linear(9) relu linear(3)", {1, 4, 4}, 5);
    zero_unit(m, 1, 2);
    // Unit 3 of layer 3 reads only unit 2 of layer 1 (zero bias): nothing else reaches it.
    nn::Parameter& w3 = weight_of(m, 3);  // (9, 12)
    std::fill(w3.value.data() + 3 * 12, w3.value.data() + 4 * 12, 0.0f);
    w3.value.data()[3 * 12 + 2] = 0.5f;
    bias_of(m, 3)->value.data()[3] = 0.0f;
    // 11*16+11 = 187; 8*11+8 = 96; 3*8+3 = 27
    shrink_and_check(m, 187 + 96 + 27, "flatten linear(11) relu linear(8) relu linear(3)");

    std::vector<nn::Module*> before;
    for (auto& l : m.net->layers) before.push_back(l.get());
    std::string spec = m.spec;
    prune::ShrinkReport again = prune::shrink(m);
    CHECK(again.params_after == again.params_before);
    CHECK(m.spec == spec);
    for (const auto& l : again.layers) CHECK(l.units_after == l.units_before);
    for (size_t i = 0; i < before.size(); ++i) CHECK(m.net->layers[i].get() == before[i]);
  }

  TEST_CASE("seed 002: cnn2 with 7 of 8 and 10 of 16 filters has 79,120 parameters") {
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 0);
    REQUIRE(m.num_parameters() == 126698);
    zero_unit(m, 0, 4);
    for (int64_t u : {0, 3, 7, 8, 11, 15}) zero_unit(m, 2, u);
    // 70 + 640 + 78,410
    shrink_and_check(m, 79120, "conv(7,3,pad=1) relu conv(10,3,pad=1) relu flatten linear(10)");
    nn::ModelSummary s = nn::summarize(m);
    CHECK(s.layers[0].params == 70);
    CHECK(s.layers[2].params == 640);
    CHECK(s.layers[5].params == 78410);
  }

  TEST_CASE("masks are sliced; the shrunk model saves, loads and trains") {
    nn::Model m = nn::build_model(
        "conv(6,3,pad=1) relu maxpool(2) conv(5,3) relu flatten linear(4)", {1, 10, 10}, 6);
    // Filter masks on conv 0 (filters 1 and 4, bias too) and an element mask on conv 3.
    nn::Parameter& w0 = weight_of(m, 0);  // (6, 1, 3, 3)
    Tensor keep0 = Tensor::empty(w0.value.shape(), DType::U8);
    for (int64_t i = 0; i < w0.numel(); ++i)
      keep0.data_as<uint8_t>()[i] = !(i / 9 == 1 || i / 9 == 4);
    w0.set_mask(keep0, nn::Granularity::Filter);
    Tensor bkeep = Tensor::empty({6}, DType::U8);
    for (int64_t i = 0; i < 6; ++i) bkeep.data_as<uint8_t>()[i] = !(i == 1 || i == 4);
    bias_of(m, 0)->set_mask(bkeep, nn::Granularity::Filter);
    nn::Parameter& w3 = weight_of(m, 3);  // (5, 6, 3, 3)
    Tensor keep3 = Tensor::empty(w3.value.shape(), DType::U8);
    for (int64_t i = 0; i < w3.numel(); ++i) keep3.data_as<uint8_t>()[i] = i % 3 != 0;
    w3.set_mask(keep3, nn::Granularity::Element);

    // conv(4): 40; conv(5) on 4: 5*4*9+5 = 185; linear on 5*3*3: 4*45+4 = 184
    shrink_and_check(m, 40 + 185 + 184,
                     "conv(4,3,pad=1) relu maxpool(2) conv(5,3) relu flatten linear(4)");
    nn::Parameter& s0 = weight_of(m, 0);
    REQUIRE(s0.mask);
    CHECK(s0.mask->granularity == nn::Granularity::Filter);
    CHECK(s0.mask->keep.shape() == s0.value.shape());
    for (int64_t i = 0; i < s0.numel(); ++i) CHECK(s0.mask->keep.data_as<uint8_t>()[i] == 1);
    REQUIRE(bias_of(m, 0)->mask);
    CHECK(bias_of(m, 0)->mask->keep.shape() == Shape{4});
    nn::Parameter& s3 = weight_of(m, 3);  // (5, 4, 3, 3): kept input channels 0, 2, 3, 5
    REQUIRE(s3.mask);
    CHECK(s3.mask->granularity == nn::Granularity::Element);
    const int64_t old_c[4] = {0, 2, 3, 5};
    int64_t wrong = 0;
    for (int64_t k = 0; k < 5; ++k)
      for (int64_t c = 0; c < 4; ++c)
        for (int64_t x = 0; x < 9; ++x) {
          int64_t old_i = (k * 6 + old_c[c]) * 9 + x;
          wrong += s3.mask->keep.data_as<uint8_t>()[(k * 4 + c) * 9 + x] != (old_i % 3 != 0);
        }
    CHECK(wrong == 0);
    CHECK(weight_of(m, 6).mask == nullptr);

    // Save and load: same spec, same outputs, masks back.
    fs::path dir = fs::temp_directory_path() / ("sprig_test_shrink_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::string path = (dir / "shrunk.safetensors").string();
    nn::save_checkpoint(path, m);
    nn::Checkpoint ck = nn::load_checkpoint(path);
    fs::remove_all(dir);
    CHECK(ck.model.spec == m.spec);
    CHECK(ck.model.num_parameters() == m.num_parameters());
    Tensor x = test::random_batch(m.input_shape, 3, 11);
    check_close(run(m, x), run(ck.model, x));
    REQUIRE(weight_of(ck.model, 3).mask);

    // Train the loaded model a step: shapes fit, masked weights stay zero.
    nn::Model& t = ck.model;
    nn::Adam opt(t.parameters(), nn::AdamOptions{});
    Tensor labels = Tensor::from_vector_i32({0, 3, 1}, {3});
    Tensor loss = cross_entropy(t.forward(x), labels);
    loss.backward();
    for (auto& p : t.parameters()) {
      REQUIRE(p->grad().defined());
      CHECK(p->grad().shape() == p->value.shape());
    }
    std::vector<float> w_before = weight_of(t, 6).value.to_vector();
    opt.step();
    CHECK(weight_of(t, 6).value.to_vector() != w_before);
    nn::Parameter& t3 = weight_of(t, 3);
    int64_t leaked = 0;
    for (int64_t i = 0; i < t3.numel(); ++i)
      leaked += !t3.mask->keep.data_as<uint8_t>()[i] && t3.value.data()[i] != 0.0f;
    CHECK(leaked == 0);
  }

  TEST_CASE("copy_model is deep") {
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 8);
    zero_unit(m, 0, 1);
    nn::Model c = prune::copy_model(m);
    prune::shrink(c);
    CHECK(m.num_parameters() == 126698);
    CHECK(c.num_parameters() < 126698);
    weight_of(c, 0).value.data()[0] = 42.0f;
    CHECK(weight_of(m, 0).value.data()[0] != 42.0f);
  }

  TEST_CASE(
      "copy_model carries BatchNorm statistics and the mode: a ResNet copy computes the same") {
    nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 10);
    Rng rng(11);
    for (auto& [name, b] : m.named_buffers())
      b->copy_(Tensor::uniform(b->shape(), name.find("var") != std::string::npos ? 0.5f : -0.5f,
                               1.0f, rng));
    m.net->train(false);
    nn::Model c = prune::copy_model(m);
    CHECK(!c.net->is_training());
    const Tensor x = test::random_batch({3, 8, 8}, 2, 12);
    NoGradGuard no_grad;
    CHECK(c.forward(x).to_vector() == m.forward(x).to_vector());
    for (auto& [name, b] : c.named_buffers()) b->fill_(0.0f);
    CHECK(c.forward(x).to_vector() != m.forward(x).to_vector());
  }

  TEST_CASE("an unknown layer between producer and consumer is an error, when it matters") {
    nn::Model m = nn::build_model("conv(6,3,pad=1) relu conv(5,3) flatten linear(4)", {1, 8, 8}, 9);
    m.net->layers.insert(m.net->layers.begin() + 1, std::make_shared<Identity>());
    prune::ShrinkReport r = prune::shrink(m);  // nothing to remove: fine
    CHECK(r.params_after == r.params_before);
    zero_unit(m, 0, 2);
    std::string msg;
    try {
      prune::shrink(m);
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK(msg.find("layer 1 (identity)") != std::string::npos);
    CHECK(msg.find("layer 0 (conv(6,3,pad=1))") != std::string::npos);
    CHECK(m.num_parameters() == r.params_before);  // untouched
  }
}

TEST_SUITE("shrink") {
  TEST_CASE("channel pruning: outputs the consumer never reads are removed, bias or not") {
    // conv(6) -> relu -> conv(5) -> relu -> flatten -> linear(4) on (2, 6, 6).
    nn::Model m = nn::build_model("conv(6,3,pad=1) relu conv(5,3,pad=1) relu flatten linear(4)",
                                  {2, 6, 6}, 11);
    // Channel pruning of layer 2: its input channels 1 and 4 read nothing. Layer 0's filters
    // 1 and 4 keep their nonzero weights and biases, yet no output depends on them.
    nn::Parameter& w2 = weight_of(m, 2);  // (5, 6, 3, 3)
    float* p = w2.value.data();
    for (int64_t k = 0; k < 5; ++k)
      for (int64_t c : {1, 4}) std::fill(p + (k * 6 + c) * 9, p + (k * 6 + c + 1) * 9, 0.0f);
    // And the linear layer never reads conv 2's channel 3 (its 36 columns are zero).
    nn::Parameter& w5 = weight_of(m, 5);  // (4, 5 * 36)
    for (int64_t r = 0; r < 4; ++r)
      std::fill(w5.value.data() + r * 180 + 3 * 36, w5.value.data() + r * 180 + 4 * 36, 0.0f);
    // conv(4): 4*2*9+4 = 76; conv(4): 4*4*9+4 = 148; linear 4*(4*36)+4 = 580.
    shrink_and_check(m, 76 + 148 + 580,
                     "conv(4,3,pad=1) relu conv(4,3,pad=1) relu flatten linear(4)");
  }
}
