// Dependency groups on residual networks (prune/groups.h) and shrinking across them
// (prune/shrink.h): which channels are tied, and that a ResNet with random units zeroed in every
// group shrinks to a smaller dense ResNet with the same logits, in evaluation and training mode,
// for option-A and option-B shortcuts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "nn/summary.h"
#include "prune/groups.h"
#include "prune/shrink.h"

using namespace sprig;

namespace {

Tensor batch(const Shape& per_sample, int64_t n, uint64_t seed) {
  Shape s = {n};
  s.insert(s.end(), per_sample.begin(), per_sample.end());
  Rng rng(seed);
  return Tensor::normal(s, 0.0f, 1.0f, rng);
}

std::vector<float> logits(const nn::Model& m, const Tensor& x, bool training) {
  nn::ModeGuard mode(*m.net, training);
  NoGradGuard no_grad;
  return m.forward(x).to_vector();
}

// max |a - b| <= 1e-5 * max(1, max |a|)
void check_close(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float diff = 0.0f, scale = 1.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(a[i]));
  }
  CHECK(diff <= 1e-5f * scale);
}

// Gives every BatchNorm non-trivial scales, shifts and running statistics, so that a channel
// whose BN was not zeroed would show in the logits.
void randomize_norms(nn::Model& m, uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, p] : m.named_parameters())
    if (p->norm_affine) p->value.copy_(Tensor::uniform(p->value.shape(), 0.5f, 1.5f, rng));
  for (auto& [name, b] : m.named_buffers())
    b->copy_(Tensor::uniform(b->shape(), name.find("var") != std::string::npos ? 0.5f : -0.5f, 1.0f,
                             rng));
}

// Zeroes unit u: the producers' weight rows and biases and the BatchNorm scales and shifts on it.
void zero_unit(const prune::DependencyGraph& g, int u) {
  const prune::ChannelUnit& unit = g.units[u];
  for (const prune::UnitRef& r : unit.producers)
    for (auto& [name, param] : g.layers[r.layer].module->local_parameters()) {
      const int64_t row = param->numel() / param->value.size(0);
      std::fill(param->value.data() + r.index * row, param->value.data() + (r.index + 1) * row,
                0.0f);
    }
  for (const prune::UnitRef& r : unit.norms)
    for (auto& [name, param] : g.layers[r.layer].module->local_parameters())
      param->value.data()[r.index] = 0.0f;
}

// Zeroes each unit of every group that is not fixed with probability p; returns how many.
int64_t zero_random_units(nn::Model& m, double p, uint64_t seed) {
  const prune::DependencyGraph g = prune::build_dependency_graph(m);
  Rng rng(seed);
  int64_t zeroed = 0;
  for (const prune::DependencyGroup& group : g.groups)
    for (int u : group.units)
      if (!g.units[u].fixed && rng.uniform() < p) {
        zero_unit(g, u);
        ++zeroed;
      }
  return zeroed;
}

std::set<std::string> producer_names(const prune::DependencyGraph& g,
                                     const prune::DependencyGroup& group) {
  std::set<std::string> out;
  for (int l : group.producers) out.insert(g.layers[l].name);
  return out;
}

const prune::DependencyGroup& group_named(const prune::DependencyGraph& g,
                                          const std::string& name) {
  for (auto& group : g.groups)
    if (group.name == name) return group;
  FAIL("no group " << name);
  throw;
}

}  // namespace

TEST_SUITE("dependency groups") {
  TEST_CASE("a plain chain: one group per layer, one unit per filter, the classes fixed") {
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 0);
    prune::DependencyGraph g = prune::build_dependency_graph(m);
    REQUIRE(g.groups.size() == 3);
    CHECK(g.groups[0].name == "0");
    CHECK(g.groups[0].units.size() == 8);
    CHECK(g.groups[1].units.size() == 16);
    // Each unit of the first conv is read by one input channel of the second; each of the
    // second by 28 * 28 flatten features of the linear layer.
    for (int u : g.groups[1].units) {
      CHECK(g.units[u].producers.size() == 1);
      CHECK(g.units[u].consumers.size() == 28 * 28);
      CHECK_FALSE(g.units[u].fixed);
    }
    for (int u : g.groups[2].units) CHECK(g.units[u].fixed);
  }

  TEST_CASE("resnet20 option A: the residual stream is one group across all stages") {
    nn::Model m = nn::build_model("resnet20", {3, 32, 32}, 0);
    prune::DependencyGraph g = prune::build_dependency_graph(m);
    // The stream, nine block-inner groups (conv1 of each block), the classifier.
    CHECK(g.groups.size() == 11);
    const prune::DependencyGroup& stream = group_named(g, "conv1");
    std::set<std::string> want = {"conv1"};
    for (int s = 1; s <= 3; ++s)
      for (int b = 0; b < 3; ++b)
        want.insert("layer" + std::to_string(s) + "." + std::to_string(b) + ".conv2");
    CHECK(producer_names(g, stream) == want);
    CHECK(stream.units.size() == 64);
    // Stage 1's 16 channels reach stage 3 through two option-A shortcuts: the stem, every
    // block's conv2 and BN make each of them.
    int64_t full = 0;
    for (int u : stream.units) {
      const prune::ChannelUnit& unit = g.units[u];
      if (unit.producers.size() == 10) {
        ++full;
        CHECK(unit.norms.size() == 10);
      }
    }
    CHECK(full == 16);
    const prune::DependencyGroup& inner = group_named(g, "layer2.1.conv1");
    CHECK(inner.units.size() == 32);
    CHECK(producer_names(g, inner) == std::set<std::string>{"layer2.1.conv1"});
  }

  TEST_CASE("resnet20b option B: each stage's stream is its own group, started by a 1x1 conv") {
    nn::Model m = nn::build_model("resnet20b", {1, 28, 28}, 0);
    prune::DependencyGraph g = prune::build_dependency_graph(m);
    CHECK(g.groups.size() == 13);
    CHECK(producer_names(g, group_named(g, "layer2.0.conv2")) ==
          std::set<std::string>{"layer2.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv2",
                                "layer2.2.conv2"});
    CHECK(group_named(g, "layer3.0.conv2").units.size() == 64);
  }

  TEST_CASE("an unknown layer fixes the units it touches and names itself") {
    struct Identity : nn::Module {
      Tensor forward(const Tensor& x) override { return x; }
      std::string spec() const override { return "identity"; }
      Shape output_shape(const Shape& in) const override { return in; }
    };
    nn::Model m = nn::build_model("conv(4,3) relu conv(3,3) flatten linear(2)", {1, 7, 7}, 0);
    m.net->layers.insert(m.net->layers.begin() + 2, std::make_shared<Identity>());
    prune::DependencyGraph g = prune::build_dependency_graph(m);
    for (int u : g.groups[0].units) {
      CHECK(g.units[u].fixed);
      CHECK(g.units[u].opaque_reader == "layer 2 (identity)");
    }
    for (int u : g.groups[1].units) CHECK_FALSE(g.units[u].fixed);
  }
}

TEST_SUITE("shrink across residual blocks") {
  TEST_CASE("random units zeroed in every group: the shrunk ResNet gives the same logits") {
    struct Case {
      const char* model;
      Shape input;
    };
    for (const Case& c : {Case{"resnet20", {3, 8, 8}}, Case{"resnet20b", {3, 8, 8}},
                          Case{"resnet56", {1, 6, 6}}, Case{"resnet56b", {3, 5, 5}}}) {
      for (double p : {0.3, 0.8}) {
        CAPTURE(c.model);
        CAPTURE(p);
        nn::Model m = nn::build_model(c.model, c.input, 1);
        randomize_norms(m, 2);
        const int64_t zeroed = zero_random_units(m, p, 3);
        CHECK(zeroed > 0);
        const Tensor x = batch(c.input, 3, 4);
        // A training-mode pass moves the running statistics, so it goes first.
        const auto train_before = logits(m, x, true), eval_before = logits(m, x, false);
        const nn::ModelSummary s_before = nn::summarize(m);
        prune::ShrinkReport r = prune::shrink(m);
        CHECK(r.params_after < r.params_before);
        check_close(eval_before, logits(m, x, false));
        check_close(train_before, logits(m, x, true));  // batch statistics of the kept channels
        CHECK(nn::summarize(m).flops < s_before.flops);
        // The shrunk spec rebuilds the same architecture (shortcut padding included).
        nn::Model again = nn::build_model(m.spec, c.input, 0);
        CHECK(again.num_parameters() == m.num_parameters());
        CHECK(again.spec == m.spec);
        // Nothing is left to remove.
        prune::ShrinkReport r2 = prune::shrink(m);
        CHECK(r2.params_after == r2.params_before);
      }
    }
  }

  TEST_CASE("a block's inner channels and the stream shrink by hand-counted amounts") {
    nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 5);
    randomize_norms(m, 6);
    prune::DependencyGraph g = prune::build_dependency_graph(m);
    // Zero inner channels 0..7 of layer1.0 (conv1 rows and bn1 entries).
    const int conv1 = g.find_layer("layer1.0.conv1"), bn1 = g.find_layer("layer1.0.bn1");
    REQUIRE(conv1 >= 0);
    REQUIRE(bn1 >= 0);
    auto& w = *dynamic_cast<nn::Conv2d*>(g.layers[conv1].module)->weight;
    std::fill(w.value.data(), w.value.data() + 8 * 16 * 9, 0.0f);
    auto& bn = *dynamic_cast<nn::BatchNorm*>(g.layers[bn1].module);
    for (int k = 0; k < 8; ++k) bn.weight->value.data()[k] = bn.bias->value.data()[k] = 0.0f;
    const Tensor x = batch({3, 8, 8}, 2, 7);
    const auto before = logits(m, x, false);
    prune::ShrinkReport r = prune::shrink(m);
    check_close(before, logits(m, x, false));
    // conv1 16->8 (8 * 16 * 9 weights), bn1 8 * 2, conv2's inputs 16->8 (16 * 8 * 9).
    CHECK(r.params_before - r.params_after == 8 * 16 * 9 + 2 * 8 + 16 * 8 * 9);
    CHECK(m.spec.find("res[conv1:conv(8,3,pad=1,bias=0) bn1:bn relu conv2:conv(16,3,pad=1,") !=
          std::string::npos);
  }

  TEST_CASE("an option-A shortcut keeps its zero channels off-centre after the stream shrinks") {
    nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 8);
    randomize_norms(m, 9);
    prune::DependencyGraph g = prune::build_dependency_graph(m);
    // Remove the stream's stage-1 channels 0..3 (made by the stem and every conv2) and the
    // first 4 of the zero channels stage 2's shortcut puts before them (made by stage 2's and
    // stage 3's conv2 only).
    const prune::DependencyGroup& stream = group_named(g, "conv1");
    int stage1 = 0, stage2 = 0;
    for (int u : stream.units) {
      const prune::UnitRef& first = g.units[u].producers[0];
      const std::string& maker = g.layers[first.layer].name;
      if (first.index >= 4 || (maker != "conv1" && maker != "layer2.0.conv2")) continue;
      (maker == "conv1" ? stage1 : stage2) += 1;
      zero_unit(g, u);
    }
    REQUIRE(stage1 == 4);
    REQUIRE(stage2 == 4);
    const Tensor x = batch({3, 8, 8}, 2, 10);
    const auto before = logits(m, x, false);
    prune::shrink(m);
    check_close(before, logits(m, x, false));
    // Stage 2's 24 channels: 4 zero channels, the 12 surviving stage-1 ones, 8 zero channels;
    // stage 3's 56: 16 zero channels, stage 2's 24, 16 zero channels.
    CHECK(m.spec.find("shortcut(24,stride=2,pad=4)") != std::string::npos);
    CHECK(m.spec.find("shortcut(56,stride=2,pad=16)") != std::string::npos);
  }
}
