// Pruning criteria (prune/criteria.cpp) on tiny hand-written weights, with expected scores
// worked out by hand in the comments.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/ops.h"
#include "prune/prune.h"

using namespace sprig;
using prune::Criterion;
using prune::Granularity;

static nn::ParameterPtr param(const std::string& name, const std::vector<float>& v,
                              const Shape& shape) {
  return std::make_shared<nn::Parameter>(name, Tensor::from_vector(v, shape));
}

// Gives p the gradient g through a real backward pass: d/dw sum(w * g) = g.
static void set_grad(nn::Parameter& p, const std::vector<float>& g) {
  sum(mul(p.value, Tensor::from_vector(g, p.value.shape()))).backward();
}

static std::vector<float> scores(const nn::Parameter& p, Criterion c, Granularity g,
                                 const prune::PruneSpec& spec = {}, const Tensor* act = nullptr) {
  return prune::unit_scores(p, c, g, spec, act).to_vector();
}

static void check_close(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
  }
}

TEST_SUITE("prune criteria") {
  TEST_CASE("magnitude scores single weights by |w| and units by their L1 norm") {
    auto p = param("0.weight", {1, -2, 3, -0.5f, 0, 4}, {2, 3});
    Tensor s = prune::unit_scores(*p, Criterion::Magnitude, Granularity::Element, {});
    CHECK(s.shape() == Shape{2, 3});
    check_close(s.to_vector(), {1, 2, 3, 0.5, 0, 4});
    // rows: 1+2+3, 0.5+0+4; columns: 1+0.5, 2+0, 3+4
    check_close(scores(*p, Criterion::Magnitude, Granularity::Filter), {6, 4.5});
    check_close(scores(*p, Criterion::Magnitude, Granularity::Channel), {1.5, 2, 7});
  }

  TEST_CASE("gradient and taylor read the accumulated gradient") {
    auto p = param("3.weight", {1, 2, 3, 4, 5, 6}, {2, 3});
    set_grad(*p, {1, -1, 0.5f, 0, 2, -2});
    check_close(scores(*p, Criterion::Gradient, Granularity::Element), {1, 1, 0.5, 0, 2, 2});
    check_close(scores(*p, Criterion::Gradient, Granularity::Filter), {2.5, 4});
    // |w * g| = 1, 2, 1.5 / 0, 10, 12
    check_close(scores(*p, Criterion::Taylor, Granularity::Element), {1, 2, 1.5, 0, 10, 12});
    check_close(scores(*p, Criterion::Taylor, Granularity::Channel), {1, 12, 13.5});
    // N:M uses the element scores.
    check_close(scores(*p, Criterion::Taylor, Granularity::NM), {1, 2, 1.5, 0, 10, 12});
  }

  TEST_CASE("taylor filter scores are the caller's activation scores") {
    auto p = param("0.weight", {1, 2, 3, 4, 5, 6}, {3, 2});
    Tensor act = Tensor::from_vector({0.3f, 0.1f, 0.2f}, {3});
    check_close(scores(*p, Criterion::Taylor, Granularity::Filter, {}, &act), {0.3, 0.1, 0.2});
    CHECK_THROWS_WITH_AS(scores(*p, Criterion::Taylor, Granularity::Filter),
                         doctest::Contains("activation scores for '0.weight'"), Error);
    Tensor wrong = Tensor::from_vector({1, 2}, {2});
    CHECK_THROWS_AS(scores(*p, Criterion::Taylor, Granularity::Filter, {}, &wrong), Error);
  }

  TEST_CASE("missing gradient is an error naming the weight") {
    auto p = param("2.weight", {1, 2, 3, 4}, {2, 2});
    for (Criterion c : {Criterion::Gradient, Criterion::Taylor}) {
      CHECK_THROWS_WITH_AS(scores(*p, c, Granularity::Element),
                           doctest::Contains("'2.weight' has no gradient"), Error);
    }
  }

  TEST_CASE("L1 and L2 norms of filters and channels") {
    // Linear (3, 4): L1 = 5, 7, 1; L2 = 3, 5, 1.
    auto lin = param("0.weight", {1, -2, 2, 0, 3, 4, 0, 0, 0, 0, 0, 1}, {3, 4});
    check_close(scores(*lin, Criterion::L1Norm, Granularity::Filter), {5, 7, 1});
    check_close(scores(*lin, Criterion::L2Norm, Granularity::Filter), {3, 5, 1});
    // Conv (K=2, C=3, R=1, S=2); channel c is columns 2c, 2c+1 of both rows.
    //   row 0: [1,-1 | 2,0 | 0,3]   row 1: [0,1 | -2,2 | 1,1]
    auto conv = param("0.weight", {1, -1, 2, 0, 0, 3, 0, 1, -2, 2, 1, 1}, {2, 3, 1, 2});
    Tensor ch = prune::unit_scores(*conv, Criterion::L1Norm, Granularity::Channel, {});
    CHECK(ch.shape() == Shape{3});
    check_close(ch.to_vector(), {3, 6, 5});
    check_close(scores(*conv, Criterion::L2Norm, Granularity::Channel),
                {std::sqrt(3.0), std::sqrt(12.0), std::sqrt(11.0)});
    check_close(scores(*conv, Criterion::L1Norm, Granularity::Filter), {7, 7});
    check_close(scores(*conv, Criterion::L2Norm, Granularity::Filter),
                {std::sqrt(15.0), std::sqrt(11.0)});
  }

  TEST_CASE("FPGM: the filter nearest the geometric median scores lowest") {
    // Four filters as points in 2-D: (0,0) is the centre of (1,0), (0,1), (-1,0).
    //   f0 (0,0):  1 + 1 + 1            = 3
    //   f1 (1,0):  1 + sqrt2 + 2        = 3 + sqrt2
    //   f2 (0,1):  1 + sqrt2 + sqrt2    = 1 + 2 sqrt2
    //   f3 (-1,0): 1 + sqrt2 + 2        = 3 + sqrt2
    auto p = param("0.weight", {0, 0, 1, 0, 0, 1, -1, 0}, {4, 1, 1, 2});
    const double r2 = std::sqrt(2.0);
    std::vector<float> s = scores(*p, Criterion::FPGM, Granularity::Filter);
    check_close(s, {3, 3 + r2, 1 + 2 * r2, 3 + r2});
    CHECK(std::min_element(s.begin(), s.end()) - s.begin() == 0);
    // Channels are columns of a linear weight: (0,0), (3,0), (0,4) -> 3+4, 3+5, 4+5.
    auto lin = param("1.weight", {0, 3, 0, 0, 0, 4}, {2, 3});
    check_close(scores(*lin, Criterion::FPGM, Granularity::Channel), {7, 8, 9});
  }

  TEST_CASE("block scores average over each tile, so smaller edge tiles are not favoured") {
    // (4, 6) with |w| = 1..24 row-major, 2x4 blocks -> a (2, 2) grid; the right tiles are 2x2.
    std::vector<float> v(24);
    for (int i = 0; i < 24; ++i) v[i] = (i % 2 ? -1.0f : 1.0f) * float(i + 1);
    auto p = param("0.weight", v, {4, 6});
    prune::PruneSpec spec;
    spec.block_rows = 2;
    spec.block_cols = 4;
    Tensor s = prune::unit_scores(*p, Criterion::Magnitude, Granularity::Block, spec);
    CHECK(s.shape() == Shape{2, 2});
    // (1+2+3+4+7+8+9+10)/8, (5+6+11+12)/4, (13+..+16+19+..+22)/8, (17+18+23+24)/4
    check_close(s.to_vector(), {44 / 8.0, 34 / 4.0, 140 / 8.0, 82 / 4.0});
    // Root mean square over the tile.
    check_close(scores(*p, Criterion::L2Norm, Granularity::Block, spec),
                {std::sqrt((1 + 4 + 9 + 16 + 49 + 64 + 81 + 100.0) / 8),
                 std::sqrt((25 + 36 + 121 + 144.0) / 4),
                 std::sqrt((169 + 196 + 225 + 256 + 361 + 400 + 441 + 484.0) / 8),
                 std::sqrt((289 + 324 + 529 + 576.0) / 4)});
    // Gradient and taylor blocks: g = 1 everywhere -> the mean gradient is 1 in every tile.
    set_grad(*p, std::vector<float>(24, 1.0f));
    check_close(scores(*p, Criterion::Gradient, Granularity::Block, spec), {1, 1, 1, 1});
    check_close(scores(*p, Criterion::Taylor, Granularity::Block, spec),
                {44 / 8.0, 34 / 4.0, 140 / 8.0, 82 / 4.0});
  }

  TEST_CASE("random scores are deterministic per seed and differ between layers") {
    auto a = param("0.weight", std::vector<float>(12, 1.0f), {3, 4});
    auto b = param("2.weight", std::vector<float>(12, 1.0f), {3, 4});
    prune::PruneSpec s1, s2;
    s1.seed = 1;
    s2.seed = 2;
    auto r1 = scores(*a, Criterion::Random, Granularity::Element, s1);
    CHECK(r1 == scores(*a, Criterion::Random, Granularity::Element, s1));
    CHECK(r1 != scores(*a, Criterion::Random, Granularity::Element, s2));
    CHECK(r1 != scores(*b, Criterion::Random, Granularity::Element, s1));
    for (float x : r1) CHECK((x >= 0.0f && x < 1.0f));
    CHECK(scores(*a, Criterion::Random, Granularity::Filter, s1).size() == 3);
  }

  TEST_CASE("norm criteria on single weights, fpgm on blocks and NaN are errors") {
    auto p = param("0.weight", {1, 2, 3, 4}, {2, 2});
    for (Criterion c : {Criterion::L1Norm, Criterion::L2Norm, Criterion::FPGM}) {
      CAPTURE(prune::criterion_name(c));
      CHECK_THROWS_WITH_AS(scores(*p, c, Granularity::Element),
                           doctest::Contains("does not apply to element"), Error);
      CHECK_THROWS_AS(scores(*p, c, Granularity::NM), Error);
    }
    CHECK_THROWS_WITH_AS(scores(*p, Criterion::FPGM, Granularity::Block), doctest::Contains("fpgm"),
                         Error);
    auto bad = param("4.weight", {1, NAN, 3, 4}, {2, 2});
    CHECK_THROWS_WITH_AS(scores(*bad, Criterion::Magnitude, Granularity::Element),
                         doctest::Contains("NaN score for '4.weight'"), Error);
    auto vec = param("0.bias", {1, 2}, {2});
    CHECK_THROWS_AS(scores(*vec, Criterion::Magnitude, Granularity::Element), Error);
  }

  TEST_CASE("parse_nm reads N:M and rejects the rest") {
    CHECK(prune::parse_nm("2:4") == std::pair<int64_t, int64_t>{2, 4});
    CHECK(prune::parse_nm("1:3") == std::pair<int64_t, int64_t>{1, 3});
    CHECK(prune::parse_nm("4:4") == std::pair<int64_t, int64_t>{4, 4});
    for (const char* s : {"0:4", "4:0", "5:4", "a:4", "2:", ":4", "-1:4", "2", "2:4:8", " 2:4"}) {
      CAPTURE(s);
      CHECK_THROWS_WITH_AS(prune::parse_nm(s), doctest::Contains(s), Error);
    }
  }
}
