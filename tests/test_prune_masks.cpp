// Choosing units and installing masks (prune/masking.cpp): scopes, targets, N:M, blocks,
// filters and channels, the mask invariant through training and checkpoints, and the
// torch.nn.utils.prune-like wrappers.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "engine/ops.h"
#include "engine/rng.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "prune/prune.h"

using namespace sprig;
using prune::Criterion;
using prune::Granularity;

static nn::ParameterPtr param(const std::string& name, const std::vector<float>& v,
                              const Shape& shape) {
  return std::make_shared<nn::Parameter>(name, Tensor::from_vector(v, shape));
}

static int64_t zeros(const nn::Parameter& p) {
  return p.numel() - p.count_nonzero();
}

// 1 where the value is nonzero, as a vector for comparisons with hand-written patterns.
static std::vector<int> nonzero_pattern(const nn::Parameter& p) {
  std::vector<int> out;
  for (float x : p.value.to_vector()) out.push_back(x != 0.0f);
  return out;
}

static nn::ParameterPtr find(const nn::Model& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return p;
  FAIL("no parameter " << name);
  return nullptr;
}

static void set_values(nn::Parameter& p, float (*f)(int64_t)) {
  float* d = p.value.data();
  for (int64_t i = 0; i < p.numel(); ++i) d[i] = f(i);
}

// Every masked entry of value and of every optimizer state buffer is exactly 0.
static void check_invariant(const nn::Model& m) {
  for (auto& [name, p] : m.named_parameters()) {
    if (!p->mask) continue;
    CAPTURE(name);
    const uint8_t* keep = p->mask->keep.data_as<uint8_t>();
    const float* v = p->value.data();
    for (int64_t i = 0; i < p->numel(); ++i)
      if (!keep[i]) REQUIRE(v[i] == 0.0f);
    for (auto& [key, st] : p->state) {
      CAPTURE(key);
      for (int64_t i = 0; i < p->numel(); ++i)
        if (!keep[i]) REQUIRE(st.data()[i] == 0.0f);
    }
  }
}

static float train(nn::Model& m, nn::Optimizer& opt, int steps, uint64_t seed) {
  Rng rng(seed);
  Tensor x = Tensor::normal({8, 1, 6, 6}, 0.0f, 1.0f, rng);
  std::vector<int32_t> y(8);
  for (auto& l : y) l = int32_t(rng.below(5));
  Tensor labels = Tensor::from_vector_i32(y, {8});
  float loss = 0.0f;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor l = cross_entropy(m.forward(x), labels);
    l.backward();
    opt.step();
    loss = l.item();
  }
  return loss;
}

static const char* kSmallCnn = "conv(4,3,pad=1) relu flatten linear(5)";

TEST_SUITE("prune masks") {
  TEST_CASE("amount, count, threshold and min_keep on a hand-written layer") {
    // |w| order: 0.05 < 0.1 < 0.2 < 0.3 < 0.5 < 0.7
    std::vector<float> w = {0.5f, -0.1f, 0.3f, -0.7f, 0.2f, 0.05f};
    nn::Model m = nn::build_model("linear(6,bias=0)", {1}, 0);
    auto p = find(m, "0.weight");
    REQUIRE(p->numel() == 6);
    auto run = [&](prune::PruneSpec spec) {
      p->value.copy_(Tensor::from_vector(w, {6, 1}));
      p->mask = nullptr;
      prune::prune_model(m, spec);
      return nonzero_pattern(*p);
    };
    prune::PruneSpec s;
    s.amount = 0.5;
    CHECK(run(s) == std::vector<int>{1, 0, 1, 1, 0, 0});
    s.count = 2;
    CHECK(run(s) == std::vector<int>{1, 0, 1, 1, 1, 0});
    s.count = -1;
    s.threshold = 0.25;
    CHECK(run(s) == std::vector<int>{1, 0, 1, 1, 0, 0});
    s.threshold = -1;
    s.amount = 1.0;
    s.min_keep = 2;
    CHECK(run(s) == std::vector<int>{1, 0, 0, 1, 0, 0});
    CHECK(p->mask->granularity == nn::Granularity::Element);
  }

  TEST_CASE("layer and global scope differ when one layer has much larger weights") {
    nn::Model m = nn::build_model("linear(8) relu linear(4)", {8}, 3);
    auto w0 = find(m, "0.weight"), w2 = find(m, "2.weight");  // (8, 8), (4, 8)
    auto reset = [&] {
      for (auto& p : m.parameters()) p->mask = nullptr;
      set_values(*w0, [](int64_t i) { return 10.0f + 0.01f * float(i); });
      set_values(*w2, [](int64_t i) { return (i % 2 ? -0.01f : 0.01f) * float(i + 1); });
    };
    reset();
    prune::PruneSpec spec;
    spec.amount = 0.5;
    prune::PruneReport r = prune::prune_model(m, spec);
    CHECK(zeros(*w0) == 32);
    CHECK(zeros(*w2) == 16);
    REQUIRE(r.layers.size() == 2);
    CHECK(r.layers[0].name == "0.weight");
    CHECK(r.layers[0].pruned_units == 32);
    CHECK(r.layers[1].units == 32);
    CHECK(r.layers[1].params == 36);  // weight and bias
    CHECK(r.layers[1].nonzero == 16 + 4);

    // Global: 48 of 96 weights; the small layer goes first but keeps min_keep = 1, and the
    // rest come from the smallest weights of the large layer (the first 17).
    reset();
    spec.scope = prune::Scope::Global;
    r = prune::prune_model(m, spec);
    CHECK(zeros(*w2) == 31);
    CHECK(zeros(*w0) == 17);
    CHECK(w2->value.data()[31] != 0.0f);  // the largest |w| survives
    for (int i = 0; i < 17; ++i) CHECK(w0->value.data()[i] == 0.0f);
    CHECK(r.params == m.num_parameters());
    CHECK(r.nonzero == m.num_parameters() - 48);
    CHECK(r.sparsity() == doctest::Approx(48.0 / m.num_parameters()));
    CHECK(prune::sparsity(m) == doctest::Approx(48.0 / m.num_parameters()));
  }

  TEST_CASE("global structured scores are normalised per layer") {
    // Layer 0 rows have L1 100, 200, 300, 400; layer 2 rows 1, 2, 3. Raw scores would prune
    // only layer 2; normalised by each layer's score norm they interleave:
    // 100/548 = .18, 200/548 = .36, 1/3.74 = .27, 2/3.74 = .53 -> the lowest three are
    // layer 0 rows 0, 1 and layer 2 row 0.
    nn::Model m = nn::build_model("linear(4,bias=0) linear(3,bias=0) linear(2)", {1}, 0);
    auto w0 = find(m, "0.weight"), w1 = find(m, "1.weight");  // (4, 1), (3, 4)
    w0->value.copy_(Tensor::from_vector({100, 200, 300, 400}, {4, 1}));
    w1->value.copy_(Tensor::from_vector({1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}, {3, 4}));
    prune::PruneSpec spec;
    spec.granularity = Granularity::Filter;
    spec.scope = prune::Scope::Global;
    spec.count = 3;
    prune::prune_model(m, spec);
    CHECK(nonzero_pattern(*w0) == std::vector<int>{0, 0, 1, 1});
    CHECK(nonzero_pattern(*w1) == std::vector<int>{0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0});
    CHECK(!find(m, "2.weight")->mask);  // the classes are never pruned
  }

  TEST_CASE("include and exclude choose the weights") {
    nn::Model m = nn::build_model("linear(8) relu linear(4)", {8}, 1);
    prune::PruneSpec spec;
    spec.amount = 0.5;
    spec.include = {"2.weight"};
    auto chosen = prune::prunable_weights(m, spec);
    REQUIRE(chosen.size() == 1);
    CHECK(chosen[0].first == "2.weight");
    prune::prune_model(m, spec);
    CHECK(!find(m, "0.weight")->mask);
    CHECK(zeros(*find(m, "2.weight")) == 16);

    nn::Model m2 = nn::build_model("linear(8) relu linear(4)", {8}, 1);
    spec.include = {};
    spec.exclude = {"2.weight"};
    prune::prune_model(m2, spec);
    CHECK(zeros(*find(m2, "0.weight")) == 32);
    CHECK(!find(m2, "2.weight")->mask);

    spec.include = {"1.weight"};
    spec.exclude = {};
    CHECK_THROWS_WITH_AS(prune::prune_model(m2, spec),
                         doctest::Contains("'1.weight' in the include list; prunable weights are "
                                           "0.weight, 2.weight"),
                         Error);
    spec.include = {};
    spec.exclude = {"0.bias"};
    CHECK_THROWS_WITH_AS(prune::prune_model(m2, spec), doctest::Contains("'0.bias'"), Error);
  }

  TEST_CASE("iterative cumulative targets keep earlier pruned weights pruned") {
    nn::Model m = nn::build_model(kSmallCnn, {1, 6, 6}, 2);
    prune::PruneSpec spec;
    spec.criterion = Criterion::Random;  // different scores each round
    spec.amount = 0.5;
    spec.seed = 1;
    prune::prune_model(m, spec);
    std::map<std::string, std::vector<int>> first;
    for (auto& [name, p] : prune::prunable_weights(m, spec)) first[name] = nonzero_pattern(*p);
    spec.amount = 0.75;
    spec.seed = 2;
    prune::prune_model(m, spec);
    for (auto& [name, p] : prune::prunable_weights(m, spec)) {
      CAPTURE(name);
      CHECK(zeros(*p) == int64_t(std::nearbyint(0.75 * p->numel())));
      std::vector<int> now = nonzero_pattern(*p);
      for (size_t i = 0; i < now.size(); ++i)
        if (!first[name][i]) REQUIRE(now[i] == 0);
    }
  }

  TEST_CASE("N:M keeps exactly N of every M, the largest") {
    nn::Model m = nn::build_model("linear(8,bias=0)", {8}, 0);
    auto w = find(m, "0.weight");  // (8, 8); row 0 is hand-written
    float row0[8] = {0.1f, -0.9f, 0.3f, 0.2f, 5, 4, -3, 0.01f};
    for (int i = 0; i < 8; ++i) w->value.data()[i] = row0[i];
    prune::PruneSpec spec;
    spec.granularity = nn::parse_granularity("2:4");
    spec.amount = 0.9;  // ignored for N:M
    prune::PruneReport r = prune::prune_model(m, spec);
    std::vector<int> nz = nonzero_pattern(*w);
    CHECK(std::vector<int>(nz.begin(), nz.begin() + 8) == std::vector<int>{0, 1, 1, 0, 1, 1, 0, 0});
    for (int g = 0; g < 16; ++g) {
      int c = 0;
      for (int j = 0; j < 4; ++j) c += nz[g * 4 + j];
      CHECK(c == 2);
    }
    CHECK(w->mask->granularity == nn::Granularity::NM);
    CHECK(r.layers[0].pruned_units == 32);

    // N:M after an element mask: weights pruned before stay pruned, even when the new
    // (random) scores would rather keep them.
    nn::Model e = nn::build_model("linear(8,bias=0)", {8}, 2);
    auto ew = find(e, "0.weight");
    prune::PruneSpec es;
    es.amount = 0.5;
    prune::prune_model(e, es);
    std::vector<int> before = nonzero_pattern(*ew);
    es.granularity = Granularity::NM;
    es.criterion = Criterion::Random;
    prune::prune_model(e, es);
    const uint8_t* ek = ew->mask->keep.data_as<uint8_t>();
    for (int i = 0; i < 64; ++i) {
      if (!before[i]) REQUIRE(ek[i] == 0);
      REQUIRE(int(ek[i]) == int(ew->value.data()[i] != 0.0f));
    }

    // 1:3 on a conv weight whose rows (2*2*2 = 8 columns) are not a multiple of 3: groups of
    // 3, 3, 2 each keep exactly one.
    nn::Model c = nn::build_model("conv(3,2) relu flatten linear(2)", {2, 4, 4}, 5);
    auto cw = find(c, "0.weight");  // (3, 2, 2, 2)
    spec.n = 1;
    spec.m = 3;
    spec.include = {"0.weight"};
    prune::prune_model(c, spec);
    nz = nonzero_pattern(*cw);
    for (int r = 0; r < 3; ++r) {
      CAPTURE(r);
      CHECK(nz[r * 8 + 0] + nz[r * 8 + 1] + nz[r * 8 + 2] == 1);
      CHECK(nz[r * 8 + 3] + nz[r * 8 + 4] + nz[r * 8 + 5] == 1);
      CHECK(nz[r * 8 + 6] + nz[r * 8 + 7] == 1);
    }
    spec.n = 4;
    CHECK_THROWS_WITH_AS(prune::prune_model(c, spec), doctest::Contains("bad N:M sparsity 4:3"),
                         Error);
  }

  TEST_CASE("block pruning zeros whole tiles") {
    // (4, 6) with |w| = 1..24, 2x4 tiles score 44, 34, 140, 82: half prunes tiles 1 and 0.
    nn::Model m = nn::build_model("linear(4,bias=0)", {6}, 0);
    auto w = find(m, "0.weight");
    set_values(*w, [](int64_t i) { return float(i + 1); });
    prune::PruneSpec spec;
    spec.granularity = Granularity::Block;
    spec.block_rows = 2;
    spec.block_cols = 4;
    spec.amount = 0.5;
    prune::PruneReport r = prune::prune_model(m, spec);
    CHECK(r.layers[0].units == 4);
    std::vector<int> nz = nonzero_pattern(*w);
    for (int i = 0; i < 24; ++i) CHECK(nz[i] == (i >= 12));  // the top two rows are gone
    CHECK(w->mask->granularity == nn::Granularity::Block);
  }

  TEST_CASE("filter pruning zeros rows and bias entries, so those outputs are exactly 0") {
    nn::Model m = nn::build_model("conv(4,3,pad=1) relu conv(6,3,pad=1) relu flatten linear(5)",
                                  {2, 6, 6}, 4);
    prune::PruneSpec spec;
    spec.granularity = Granularity::Filter;
    spec.criterion = Criterion::L2Norm;
    spec.amount = 0.5;
    prune::PruneReport r = prune::prune_model(m, spec);
    REQUIRE(r.layers.size() == 2);  // the linear layer's outputs are the classes
    CHECK(!find(m, "5.weight")->mask);
    CHECK(!find(m, "5.bias")->mask);
    Rng rng(9);
    Tensor x = Tensor::normal({2, 2, 6, 6}, 0.0f, 1.0f, rng);
    Tensor y0 = (*m.net->layers[0])(x);
    Tensor y2 = (*m.net->layers[2])(relu(y0));
    for (auto [name, y] : {std::pair<std::string, Tensor>{"0", y0}, {"2", y2}}) {
      CAPTURE(name);
      auto w = find(m, name + ".weight");
      auto b = find(m, name + ".bias");
      REQUIRE((w->mask && b->mask));
      CHECK(w->mask->granularity == nn::Granularity::Filter);
      CHECK(b->mask->granularity == nn::Granularity::Filter);
      const int64_t K = w->value.size(0), rowlen = w->numel() / K;
      const int64_t hw = y.numel() / (2 * K);
      int pruned = 0;
      for (int64_t k = 0; k < K; ++k) {
        bool row_zero = true;
        for (int64_t j = 0; j < rowlen; ++j) row_zero &= w->value.data()[k * rowlen + j] == 0.0f;
        if (!row_zero) continue;
        ++pruned;
        CHECK(b->value.data()[k] == 0.0f);
        for (int64_t n = 0; n < 2; ++n)
          for (int64_t i = 0; i < hw; ++i) REQUIRE(y.data()[(n * K + k) * hw + i] == 0.0f);
      }
      CHECK(pruned == K / 2);
    }
  }

  TEST_CASE("channel pruning masks input channels and skips the first layer") {
    nn::Model m = nn::build_model("linear(6) relu linear(4) relu linear(3)", {5}, 6);
    prune::PruneSpec spec;
    spec.granularity = Granularity::Channel;
    spec.amount = 0.5;
    prune::prune_model(m, spec);
    CHECK(!find(m, "0.weight")->mask);
    for (auto [name, in, pruned] :
         {std::tuple<const char*, int, int>{"2.weight", 6, 3}, {"4.weight", 4, 2}}) {
      CAPTURE(name);
      auto w = find(m, name);
      CHECK(w->mask->granularity == nn::Granularity::Channel);
      std::vector<int> nz = nonzero_pattern(*w);
      const int rows = int(w->numel()) / in;
      int zero_cols = 0;
      for (int c = 0; c < in; ++c) {
        int col = 0;
        for (int r = 0; r < rows; ++r) col += nz[r * in + c];
        CHECK((col == 0 || col == rows));
        zero_cols += col == 0;
      }
      CHECK(zero_cols == pruned);
      CHECK(!find(m, std::string(name).replace(2, 6, "bias"))->mask);
    }
  }

  TEST_CASE("taylor filter pruning takes activation scores by weight name") {
    nn::Model m = nn::build_model("conv(4,3,pad=1) relu flatten linear(5)", {1, 6, 6}, 1);
    prune::PruneSpec spec;
    spec.criterion = Criterion::Taylor;
    spec.granularity = Granularity::Filter;
    spec.count = 1;
    CHECK_THROWS_WITH_AS(prune::prune_model(m, spec),
                         doctest::Contains("activation scores for '0.weight'"), Error);
    CHECK(!find(m, "0.weight")->mask);
    std::map<std::string, Tensor> act{{"0.weight", Tensor::from_vector({3, 1, 0.5f, 2}, {4})}};
    prune::prune_model(m, spec, act);
    CHECK(find(m, "0.bias")->value.data()[2] == 0.0f);
    CHECK(zeros(*find(m, "0.weight")) == 9);
  }

  TEST_CASE("masks hold through 100 Adam steps and SGD with momentum") {
    for (bool adam : {true, false}) {
      CAPTURE(adam);
      nn::Model m = nn::build_model(kSmallCnn, {1, 6, 6}, 7);
      prune::PruneSpec spec;
      spec.amount = 0.5;
      prune::prune_model(m, spec);
      auto w0 = find(m, "0.weight");
      std::vector<uint8_t> first(w0->numel());
      std::copy_n(w0->mask->keep.data_as<uint8_t>(), w0->numel(), first.begin());
      spec.granularity = Granularity::Filter;
      spec.amount = 0.25;
      prune::prune_model(m, spec);  // one of the 4 conv filters on top
      REQUIRE(find(m, "0.bias")->mask);
      CHECK(w0->mask->granularity == nn::Granularity::Element);
      const uint8_t* keep = w0->mask->keep.data_as<uint8_t>();
      int64_t masked = 0;
      for (int64_t i = 0; i < w0->numel(); ++i) {
        if (!first[i]) REQUIRE(keep[i] == 0);  // the element mask's zeros stay masked
        masked += keep[i] == 0;
      }
      CHECK(masked > 18);
      std::vector<float> before = find(m, "3.weight")->value.to_vector();
      std::unique_ptr<nn::Optimizer> opt;
      if (adam)
        opt = std::make_unique<nn::Adam>(m.parameters(), nn::AdamOptions{1e-2f});
      else
        opt = std::make_unique<nn::SGD>(m.parameters(), nn::SGDOptions{0.05f, 0.9f});
      train(m, *opt, 100, 11);
      check_invariant(m);
      auto w2 = find(m, "3.weight");
      CHECK(w2->state.count(adam ? "exp_avg_sq" : "momentum_buffer") == 1);
      CHECK(zeros(*w2) == w2->numel() / 2);
      CHECK(w2->value.to_vector() != before);  // it did train
      CHECK(zeros(*w0) == masked);
    }
  }

  TEST_CASE("masks survive save and load, and training after loading keeps the zeros") {
    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / ("sprig_test_prune_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::string path = (dir / "pruned.safetensors").string();
    nn::Model m = nn::build_model(kSmallCnn, {1, 6, 6}, 8);
    prune::PruneSpec spec;
    spec.granularity = Granularity::Filter;
    spec.amount = 0.5;
    prune::prune_model(m, spec);
    nn::save_checkpoint(path, m);
    nn::Checkpoint ck = nn::load_checkpoint(path);
    for (auto& [name, p] : m.named_parameters()) {
      CAPTURE(name);
      auto q = find(ck.model, name);
      REQUIRE(bool(p->mask) == bool(q->mask));
      if (!p->mask) continue;
      CHECK(q->mask->granularity == p->mask->granularity);
      std::vector<uint8_t> a(p->numel()), b(p->numel());
      std::copy_n(p->mask->keep.data_as<uint8_t>(), p->numel(), a.begin());
      std::copy_n(q->mask->keep.data_as<uint8_t>(), p->numel(), b.begin());
      CHECK(a == b);
    }
    nn::Adam opt(ck.model.parameters(), nn::AdamOptions{1e-2f});
    train(ck.model, opt, 20, 3);
    check_invariant(ck.model);
    CHECK(zeros(*find(ck.model, "0.weight")) == 2 * 9);
    fs::remove_all(dir);
  }

  TEST_CASE("torch-like wrappers") {
    // l1_unstructured prunes round(amount * n) (half to even, as Python's round).
    auto p = param("w", {0.5f, -0.1f, 0.3f, -0.7f, 0.2f, 0.05f}, {2, 3});
    prune::l1_unstructured(*p, 0.5);
    CHECK(nonzero_pattern(*p) == std::vector<int>{1, 0, 1, 1, 0, 0});
    prune::l1_unstructured(*p, 1.0);  // no min_keep here, as in torch
    CHECK(zeros(*p) == 6);
    auto odd = param("w", {1, 2, 3, 4, 5}, {1, 5});
    prune::l1_unstructured(*odd, 0.5);  // 2.5 -> 2
    CHECK(zeros(*odd) == 2);

    auto r1 = param("w", std::vector<float>(20, 1.0f), {4, 5});
    auto r2 = param("w", std::vector<float>(20, 1.0f), {4, 5});
    prune::random_unstructured(*r1, 0.3, 1);
    prune::random_unstructured(*r2, 0.3, 1);
    CHECK(zeros(*r1) == 6);
    CHECK(nonzero_pattern(*r1) == nonzero_pattern(*r2));

    // Rows: L1 3, 4, 4.5; L2 3, 2, 3.2 -> dim 0 prunes row 0 with n=1, row 1 with n=2.
    std::vector<float> v = {3, 0, 0, 0, 1, 1, 1, 1, 2.5f, 2, 0, 0};
    auto a = param("w", v, {3, 4});
    prune::ln_structured(*a, 1.0 / 3, 1, 0);
    CHECK(nonzero_pattern(*a) == std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0});
    CHECK(a->mask->granularity == nn::Granularity::Filter);
    auto b = param("w", v, {3, 4});
    prune::ln_structured(*b, 1.0 / 3, 2, 0);
    CHECK(nonzero_pattern(*b) == std::vector<int>{1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0});
    // Columns: L2 4.03, 2.24, 1, 1 -> half prunes columns 2 and 3.
    auto c = param("w", v, {3, 4});
    prune::ln_structured(*c, 0.5, 2, 1);
    CHECK(nonzero_pattern(*c) == std::vector<int>{1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0});
    CHECK(c->mask->granularity == nn::Granularity::Channel);
    CHECK_THROWS_AS(prune::ln_structured(*c, 0.5, 3, 0), Error);
    CHECK_THROWS_AS(prune::ln_structured(*c, 0.5, 1, 2), Error);

    // global_unstructured: 3 of the 6 weights over both tensors.
    auto g1 = param("a", {1, 10, 2}, {1, 3});
    auto g2 = param("b", {0.5f, 20, 3}, {3, 1});
    prune::global_unstructured({g1.get(), g2.get()}, 0.5);
    CHECK(nonzero_pattern(*g1) == std::vector<int>{0, 1, 0});
    CHECK(nonzero_pattern(*g2) == std::vector<int>{0, 1, 1});

    // remove keeps the zeros and drops the mask.
    prune::remove(*g1);
    CHECK(!g1->mask);
    CHECK(nonzero_pattern(*g1) == std::vector<int>{0, 1, 0});
    nn::Model m = nn::build_model(kSmallCnn, {1, 6, 6}, 0);
    prune::PruneSpec spec;
    spec.amount = 0.5;
    prune::prune_model(m, spec);
    double s = prune::sparsity(m);
    prune::remove(m);
    for (auto& p2 : m.parameters()) CHECK(!p2->mask);
    CHECK(prune::sparsity(m) == s);
    // 4*9 -> 18 and 5*144 -> 360 zeros of 36 + 4 + 720 + 5 parameters.
    CHECK(s == doctest::Approx(378.0 / 765.0));
  }

  TEST_CASE("bad specs are errors") {
    nn::Model m = nn::build_model(kSmallCnn, {1, 6, 6}, 0);
    auto err = [&](prune::PruneSpec s, const char* what) {
      CAPTURE(what);
      CHECK_THROWS_WITH_AS(prune::prune_model(m, s), doctest::Contains(what), Error);
    };
    prune::PruneSpec s;
    s.amount = 1.5;
    err(s, "amount must be in [0, 1]");
    s.amount = -0.1;
    err(s, "amount must be in [0, 1]");
    s.amount = NAN;
    err(s, "amount must be in [0, 1]");
    s.amount = 0.5;
    s.count = -2;
    err(s, "count must be >= 0");
    s.count = 1000;
    err(s, "cannot prune 1000 units of '0.weight'");
    s.count = -1;
    s.min_keep = -1;
    err(s, "min_keep");
    s.min_keep = 1;
    s.criterion = Criterion::FPGM;
    err(s, "'fpgm' scores whole units and does not apply to element");
    s.criterion = Criterion::Gradient;
    err(s, "'0.weight' has no gradient");
    s.criterion = Criterion::Magnitude;
    s.include = {"conv1"};
    err(s, "unknown weight 'conv1'");
    s.include = {"3.weight"};
    s.granularity = Granularity::Filter;
    err(s, "nothing to prune");
    for (auto& p : m.parameters()) CHECK(!p->mask);  // failures change nothing
  }
}
