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
#include "nn/optim.h"
#include "nn/summary.h"
#include "prune/data_criteria.h"
#include "prune/groups.h"
#include "prune/prune.h"
#include "prune/shrink.h"
#include "tests/shrink_test_util.h"

using namespace sprig;
using test::check_close;

namespace {

std::vector<float> logits(const nn::Model& m, const Tensor& x, bool training) {
  nn::ModeGuard mode(*m.net, training);
  NoGradGuard no_grad;
  return m.forward(x).to_vector();
}

// `left` batches of 4 random (3, 8, 8) images with fixed labels, for the data criteria.
prune::BatchFn two_batches(int& left, Rng& rng) {
  return [&left, &rng](Tensor& x, Tensor& y) {
    if (left-- == 0) return false;
    x = Tensor::normal({4, 3, 8, 8}, 0.0f, 1.0f, rng);
    y = Tensor::from_vector_i32({0, 3, 5, 9}, {4});
    return true;
  };
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

// Sets every weight row of a conv or linear to the same value, so its L1 norm is `l1`.
void set_row_l1(nn::Model& m, const std::string& weight, const std::vector<float>& l1) {
  for (auto& [name, p] : m.named_parameters()) {
    if (name != weight) continue;
    const int64_t rows = p->value.size(0), len = p->numel() / rows;
    REQUIRE(int64_t(l1.size()) == rows);
    for (int64_t r = 0; r < rows; ++r)
      std::fill(p->value.data() + r * len, p->value.data() + (r + 1) * len, l1[r] / float(len));
    return;
  }
  FAIL("no weight " << weight);
}

nn::Parameter& param(nn::Model& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return *p;
  FAIL("no parameter " << name);
  throw;
}

const prune::GroupReport& report_of(const prune::PruneReport& r, const std::string& name) {
  for (auto& g : r.groups)
    if (g.name == name) return g;
  FAIL("no group report " << name);
  throw;
}

// Every channel the report says was removed has zero weight rows, biases and BN entries in
// every member, and shrinking keeps the logits.
void check_pruned_then_shrink(nn::Model& m, const Shape& input) {
  const Tensor x = test::random_batch(input, 3, 21);
  const auto train_before = logits(m, x, true), eval_before = logits(m, x, false);
  const int64_t flops_before = nn::summarize(m).flops;
  prune::ShrinkReport r = prune::shrink(m);
  CHECK(r.params_after < r.params_before);
  CHECK(nn::summarize(m).flops < flops_before);
  check_close(eval_before, logits(m, x, false));
  check_close(train_before, logits(m, x, true));
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
        const Tensor x = test::random_batch(c.input, 3, 4);
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
    const Tensor x = test::random_batch({3, 8, 8}, 2, 7);
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
    const Tensor x = test::random_batch({3, 8, 8}, 2, 10);
    const auto before = logits(m, x, false);
    prune::shrink(m);
    check_close(before, logits(m, x, false));
    // Stage 2's 24 channels: 4 zero channels, the 12 surviving stage-1 ones, 8 zero channels;
    // stage 3's 56: 16 zero channels, stage 2's 24, 16 zero channels.
    CHECK(m.spec.find("shortcut(24,stride=2,pad=4)") != std::string::npos);
    CHECK(m.spec.find("shortcut(56,stride=2,pad=16)") != std::string::npos);
  }
}

TEST_SUITE("filter pruning by dependency groups") {
  // conv(2) bn, then a block whose option-A shortcut puts the stem's 2 channels at 1 and 2 of
  // its 4: channels 1 and 2 of the stream are made by the stem and the block's conv2, channels 0
  // and 3 by the conv2 alone.
  const char* kTied =
      "conv(2,3,pad=1,bias=0) bn res[conv(4,3,stride=2,pad=1,bias=0) bn relu "
      "conv(4,3,pad=1,bias=0) bn | shortcut(4,stride=2)] gap flatten linear(2)";

  TEST_CASE("a channel's score is the mean (or sum) of its producers' scores") {
    for (prune::GroupReduce reduce : {prune::GroupReduce::Mean, prune::GroupReduce::Sum}) {
      CAPTURE(prune::group_reduce_name(reduce));
      nn::Model m = nn::build_model(kTied, {1, 6, 6}, 0);
      set_row_l1(m, "0.weight", {8, 4});
      set_row_l1(m, "2.3.weight", {2, 1, 1, 4});
      prune::PruneSpec spec;
      spec.criterion = prune::Criterion::L1Norm;
      spec.granularity = prune::Granularity::Filter;
      spec.count = 1;
      spec.group_reduce = reduce;
      prune::PruneReport r = prune::prune_model(m, spec);
      const prune::GroupReport& stream = report_of(r, "0");
      CHECK(stream.layers == std::vector<std::string>{"0", "1", "2.3", "2.4"});
      CHECK(stream.units == 4);
      CHECK(stream.pruned == 1);
      // Each producer's scores over its mean: the stem's 4/3, 2/3, the conv2's 1, 1/2, 1/2, 2.
      // Mean: channels 0..3 score 1, 11/12, 7/12, 2 -> channel 2 (the stem's channel 1) goes.
      // Sum: 1, 11/6, 7/6, 2 -> channel 0, made by the conv2 alone, goes.
      const std::string want = reduce == prune::GroupReduce::Mean ? "0[1]" : "2.3[0]";
      REQUIRE(stream.removed.size() == 1);
      CHECK(stream.removed[0] == want);
      if (reduce == prune::GroupReduce::Mean) {
        // Pruned in both producers and both BatchNorms.
        CHECK(param(m, "0.weight").mask->keep.data_as<uint8_t>()[1 * 9] == 0);
        CHECK(param(m, "2.3.weight").mask->keep.data_as<uint8_t>()[2 * 4 * 9] == 0);
        CHECK(param(m, "1.weight").value.data()[1] == 0.0f);
        CHECK(param(m, "2.4.bias").value.data()[2] == 0.0f);
        CHECK(param(m, "2.4.weight").value.data()[0] != 0.0f);
      }
      CHECK(report_of(r, "5").kept == "its channels are the model's outputs");
      check_pruned_then_shrink(m, {1, 6, 6});
    }
  }

  TEST_CASE("min_keep holds for every producer of a group, not only for the group") {
    nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 0);
    prune::PruneSpec spec;
    spec.criterion = prune::Criterion::L1Norm;
    spec.granularity = prune::Granularity::Filter;
    spec.amount = 0.99;
    spec.min_keep = 3;
    prune::PruneReport r = prune::prune_model(m, spec);
    // The stream has 64 channels, but the stem makes only 16 of them: it keeps 3.
    for (const prune::LayerReport& l : r.layers) {
      CAPTURE(l.name);
      CHECK(l.units - l.pruned_units == 3);
    }
    CHECK(report_of(r, "conv1").pruned == 64 - 3);
  }

  TEST_CASE("excluding one producer keeps the whole stream and says why") {
    nn::Model m = nn::build_model(kTied, {1, 6, 6}, 0);
    prune::PruneSpec spec;
    spec.criterion = prune::Criterion::L1Norm;
    spec.granularity = prune::Granularity::Filter;
    spec.amount = 0.5;
    spec.exclude = {"2.3.weight"};
    prune::PruneReport r = prune::prune_model(m, spec);
    CHECK(report_of(r, "0").pruned == 0);
    CHECK(report_of(r, "0").kept.find("'2.3.weight', which makes its channels, is not among") !=
          std::string::npos);
    CHECK(report_of(r, "2.0").pruned == 2);  // the block's inner conv is its own group
  }

  TEST_CASE("every criterion prunes resnet20 and resnet20b by group; shrinking keeps the logits") {
    for (const char* model : {"resnet20", "resnet20b"}) {
      for (prune::Criterion c :
           {prune::Criterion::L1Norm, prune::Criterion::L2Norm, prune::Criterion::FPGM,
            prune::Criterion::Random, prune::Criterion::Taylor, prune::Criterion::Gradient,
            prune::Criterion::BnScale}) {
        for (prune::Scope scope : {prune::Scope::Layer, prune::Scope::Global}) {
          CAPTURE(model);
          CAPTURE(prune::criterion_name(c));
          CAPTURE(int(scope));
          const Shape input = {3, 8, 8};
          nn::Model m = nn::build_model(model, input, 11);
          randomize_norms(m, 12);
          prune::PruneSpec spec;
          spec.criterion = c;
          spec.granularity = prune::Granularity::Filter;
          spec.scope = scope;
          spec.amount = 0.4;
          std::map<std::string, Tensor> activations;
          if (c == prune::Criterion::Taylor || c == prune::Criterion::Gradient) {
            int left = 2;
            Rng rng(13);
            prune::BatchFn next = two_batches(left, rng);
            prune::LossFn loss = [&](const Tensor& x, const Tensor& y) {
              return cross_entropy(m.forward(x), y);
            };
            nn::ModeGuard mode(*m.net, false);
            if (c == prune::Criterion::Taylor)
              activations = prune::taylor_filter_scores(m, next, loss, -1);
            else
              prune::accumulate_gradients(m, next, loss, -1);
          }
          prune::PruneReport r = prune::prune_model(m, spec, activations);
          int64_t units = 0, pruned = 0;
          for (const prune::GroupReport& g : r.groups) {
            units += g.units;
            pruned += g.pruned;
            CHECK(int64_t(g.removed.size()) == g.pruned);
            if (scope == prune::Scope::Layer && g.kept.empty())
              CHECK(g.pruned == int64_t(std::nearbyint(0.4 * double(g.units))));
          }
          if (scope == prune::Scope::Global)
            CHECK(pruned == int64_t(std::nearbyint(0.4 * double(units))));
          check_pruned_then_shrink(m, input);
        }
      }
    }
  }

  TEST_CASE("pruned BatchNorm channels stay zero through training, and still shrink exactly") {
    nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 14);
    randomize_norms(m, 15);
    prune::PruneSpec spec;
    spec.criterion = prune::Criterion::L1Norm;
    spec.granularity = prune::Granularity::Filter;
    spec.amount = 0.5;
    prune::prune_model(m, spec);
    nn::SGDOptions o;
    o.lr = 0.1f;
    o.momentum = 0.9f;
    o.weight_decay = 5e-4f;
    nn::SGD opt(m.parameters(), o);
    Rng rng(16);
    for (int step = 0; step < 3; ++step) {
      Tensor x = Tensor::normal({4, 3, 8, 8}, 0.0f, 1.0f, rng);
      Tensor y = Tensor::from_vector_i32({1, 2, 3, 4}, {4});
      opt.zero_grad();
      cross_entropy(m.forward(x), y).backward();
      opt.step();
    }
    for (auto& [name, p] : m.named_parameters()) {
      if (!p->mask) continue;
      CAPTURE(name);
      int64_t leaked = 0;
      for (int64_t i = 0; i < p->numel(); ++i)
        leaked += !p->mask->keep.data_as<uint8_t>()[i] && p->value.data()[i] != 0.0f;
      CHECK(leaked == 0);
    }
    check_pruned_then_shrink(m, {3, 8, 8});
  }

  TEST_CASE("bn-scale prunes the channels with the smallest mean |gamma|; it needs BatchNorm") {
    nn::Model m = nn::build_model(kTied, {1, 6, 6}, 0);
    // The block's inner BN (2.1): channel 2 has the smallest scale.
    param(m, "2.1.weight").value.copy_(Tensor::from_vector({0.9f, -0.8f, 0.05f, 0.7f}, {4}));
    prune::PruneSpec spec;
    spec.criterion = prune::Criterion::BnScale;
    spec.granularity = prune::Granularity::Filter;
    spec.count = 1;
    prune::PruneReport r = prune::prune_model(m, spec);
    REQUIRE(report_of(r, "2.0").removed.size() == 1);
    CHECK(report_of(r, "2.0").removed[0] == "2.0[2]");
    nn::Model plain = nn::build_model("cnn2", {1, 28, 28}, 0);
    CHECK_THROWS_WITH_AS(prune::prune_model(plain, spec),
                         doctest::Contains("bn-scale needs a BatchNorm on its channels"), Error);
    spec.granularity = prune::Granularity::Element;
    CHECK_THROWS_WITH_AS(prune::prune_model(m, spec), doctest::Contains("use filter granularity"),
                         Error);
  }

  TEST_CASE("a FLOPs target: the smallest amount that removes the fraction, the model untouched") {
    for (const char* model : {"resnet20", "resnet20b"}) {
      for (prune::Criterion c : {prune::Criterion::L1Norm, prune::Criterion::Gradient}) {
        CAPTURE(model);
        CAPTURE(prune::criterion_name(c));
        const Shape input = {3, 8, 8};
        nn::Model m = nn::build_model(model, input, 31);
        randomize_norms(m, 32);
        if (c == prune::Criterion::Gradient) {
          // The gradients the criterion reads must reach the search's trial copies.
          int left = 2;
          Rng rng(33);
          prune::BatchFn next = two_batches(left, rng);
          prune::LossFn loss = [&](const Tensor& x, const Tensor& y) {
            return cross_entropy(m.forward(x), y);
          };
          prune::accumulate_gradients(m, next, loss, -1);
        }
        prune::PruneSpec spec;
        spec.criterion = c;
        spec.granularity = prune::Granularity::Filter;
        const std::vector<float> weights_before = param(m, "conv1.weight").value.to_vector();
        const prune::FlopsSearch f = prune::amount_for_flops(m, spec, {}, 0.4);
        // Nothing of the model changed: same spec, same weights, no masks.
        CHECK(param(m, "conv1.weight").value.to_vector() == weights_before);
        CHECK(!param(m, "conv1.weight").mask);
        CHECK(f.flops_before == nn::summarize(m).flops);
        CHECK(f.flops_after <= 0.6 * double(f.flops_before));
        CHECK(f.amount > 0.0);
        CHECK(f.amount < 1.0);
        auto flops_pruned_at = [&](double amount) {
          nn::Model trial = prune::copy_model(m);
          for (auto& [name, p] : m.named_parameters())
            if (p->grad().defined())
              param(trial, name).value.impl()->grad = p->grad().clone().impl_ptr();
          prune::PruneSpec s = spec;
          s.amount = amount;
          prune::prune_model(trial, s);
          prune::shrink(trial);
          return nn::summarize(trial).flops;
        };
        CHECK(flops_pruned_at(f.amount) == f.flops_after);
        // 1e-4 less does not reach the target: the amount is the smallest to that tolerance.
        CHECK(double(flops_pruned_at(f.amount - 1e-4)) > 0.6 * double(f.flops_before));
      }
    }
  }

  TEST_CASE("a FLOPs target out of reach, unstructured, or with a count is refused by name") {
    nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 34);
    prune::PruneSpec spec;
    spec.criterion = prune::Criterion::L1Norm;
    spec.granularity = prune::Granularity::Filter;
    CHECK(prune::amount_for_flops(m, spec, {}, 0.0).amount == 0.0);
    spec.min_keep = 1000;  // nothing can go
    CHECK_THROWS_WITH_AS(prune::amount_for_flops(m, spec, {}, 0.1),
                         doctest::Contains("is out of reach"), Error);
    spec.min_keep = 1;
    CHECK_THROWS_WITH_AS(prune::amount_for_flops(m, spec, {}, 1.0),
                         doctest::Contains("must be in [0, 1)"), Error);
    CHECK_THROWS_WITH_AS(prune::amount_for_flops(m, spec, {}, std::nan("")),
                         doctest::Contains("must be in [0, 1)"), Error);
    spec.count = 3;
    CHECK_THROWS_WITH_AS(prune::amount_for_flops(m, spec, {}, 0.4),
                         doctest::Contains("drop the count"), Error);
    spec.count = -1;
    spec.granularity = prune::Granularity::Element;
    CHECK_THROWS_WITH_AS(prune::amount_for_flops(m, spec, {}, 0.4),
                         doctest::Contains("needs filter or channel granularity"), Error);
  }
}
