// Pruning criteria kernels (kernels/cpu/criteria.h) against hand-worked values and a naive scan
// that adds every element into layout.unit_of(r, c), for all layouts and element scores.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "kernels/cpu/criteria.h"
#include "kernels/error.h"

using namespace sprig;

namespace {

std::vector<float> random_vec(int64_t n, Rng& rng) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(-2.0f, 2.0f);
  return v;
}

UnitLayout make_layout(UnitLayout::Kind kind, int64_t rows, int64_t cols, int64_t kk = 1,
                       int64_t br = 1, int64_t bc = 1) {
  UnitLayout L;
  L.kind = kind;
  L.rows = rows;
  L.cols = cols;
  L.kk = kk;
  L.br = br;
  L.bc = bc;
  return L;
}

std::vector<float> run_unit_scores(const UnitLayout& L, ElementScore e, const std::vector<float>& w,
                                   const float* g) {
  std::vector<float> out(L.units(), -1.0f);
  cpu::unit_scores(L, e, w.data(), g, out.data());
  return out;
}

// One pass in row-major order; the unit's size is counted, not computed from the tile grid.
std::vector<float> naive_unit_scores(const UnitLayout& L, ElementScore e, const float* w,
                                     const float* g) {
  const int64_t U = L.units();
  std::vector<double> s(U, 0.0);
  std::vector<int64_t> size(U, 0);
  for (int64_t r = 0; r < L.rows; ++r)
    for (int64_t c = 0; c < L.cols; ++c) {
      const int64_t i = r * L.cols + c, u = L.unit_of(r, c);
      double x = 0.0;
      switch (e) {
        case ElementScore::AbsWeight:
          x = std::abs(double(w[i]));
          break;
        case ElementScore::AbsGrad:
          x = std::abs(double(g[i]));
          break;
        case ElementScore::AbsWeightGrad:
          x = std::abs(double(w[i]) * double(g[i]));
          break;
        case ElementScore::SquareWeight:
          x = double(w[i]) * double(w[i]);
          break;
      }
      s[u] += x;
      size[u] += 1;
    }
  std::vector<float> out(U);
  for (int64_t u = 0; u < U; ++u) {
    double v = s[u];
    if (L.kind == UnitLayout::Block) v /= double(size[u]);
    if (e == ElementScore::SquareWeight) v = std::sqrt(v);
    out[u] = float(v);
  }
  return out;
}

// Units gathered by unit_of in row-major order, then all-pairs distances.
std::vector<float> naive_fpgm(const UnitLayout& L, const float* w) {
  const int64_t U = L.units();
  std::vector<std::vector<double>> units(U);
  for (int64_t r = 0; r < L.rows; ++r)
    for (int64_t c = 0; c < L.cols; ++c) units[L.unit_of(r, c)].push_back(w[r * L.cols + c]);
  std::vector<float> out(U);
  for (int64_t u = 0; u < U; ++u) {
    double s = 0.0;
    for (int64_t v = 0; v < U; ++v) {
      double d2 = 0.0;
      for (size_t k = 0; k < units[u].size(); ++k) {
        double d = units[u][k] - units[v][k];
        d2 += d * d;
      }
      s += std::sqrt(d2);
    }
    out[u] = float(s);
  }
  return out;
}

const ElementScore kScores[] = {ElementScore::AbsWeight, ElementScore::AbsGrad,
                                ElementScore::AbsWeightGrad, ElementScore::SquareWeight};

const char* score_name(ElementScore e) {
  switch (e) {
    case ElementScore::AbsWeight:
      return "abs weight";
    case ElementScore::AbsGrad:
      return "abs grad";
    case ElementScore::AbsWeightGrad:
      return "abs weight*grad";
    default:
      return "square weight";
  }
}

}  // namespace

TEST_CASE("unit scores: hand-worked values") {
  // w (2, 4)
  const std::vector<float> w = {1,  -2, 3,  -4,  //
                                -5, 6,  -7, 8};
  const std::vector<float> g = {0.5f, 0.5f, -1, 2,  //
                                1,    -1,   0,  0.25f};

  // Rows: L1 norms.
  CHECK(run_unit_scores(make_layout(UnitLayout::Row, 2, 4), ElementScore::AbsWeight, w, nullptr) ==
        std::vector<float>{10, 26});
  // Channels of kk = 2 columns: {1, -2, -5, 6} and {3, -4, -7, 8}; L2 norms.
  auto ch = run_unit_scores(make_layout(UnitLayout::Channel, 2, 4, 2), ElementScore::SquareWeight,
                            w, nullptr);
  REQUIRE(ch.size() == 2);
  CHECK(ch[0] == float(std::sqrt(66.0)));
  CHECK(ch[1] == float(std::sqrt(138.0)));
  // 2 x 3 tiles: a full tile of 6 and an edge tile of 2, each averaged over its own size.
  auto bl = run_unit_scores(make_layout(UnitLayout::Block, 2, 4, 1, 2, 3), ElementScore::AbsWeight,
                            w, nullptr);
  CHECK(bl == std::vector<float>{24.0f / 6.0f, 12.0f / 2.0f});
  // |w * g| per element.
  CHECK(run_unit_scores(make_layout(UnitLayout::Element, 2, 4), ElementScore::AbsWeightGrad, w,
                        g.data()) == std::vector<float>{0.5f, 1, 3, 8, 5, 6, 0, 2});
  // |g| per row.
  CHECK(run_unit_scores(make_layout(UnitLayout::Row, 2, 4), ElementScore::AbsGrad, w, g.data()) ==
        std::vector<float>{4, 2.25f});
}

TEST_CASE("unit scores match a naive scan for every layout and element score") {
  Rng rng(7);
  struct Case {
    std::string name;
    UnitLayout layout;
  };
  const Case cases[] = {
      {"element 5x7", make_layout(UnitLayout::Element, 5, 7)},
      {"row 6x11", make_layout(UnitLayout::Row, 6, 11)},
      {"row 1x1", make_layout(UnitLayout::Row, 1, 1)},
      {"channel kk=9, 5x(4*9)", make_layout(UnitLayout::Channel, 5, 36, 9)},
      {"channel kk=1, 3x8", make_layout(UnitLayout::Channel, 3, 8, 1)},
      // 7 = 3 + 3 + 1 rows and 10 = 4 + 4 + 2 cols: edge tiles on both sides and the corner.
      {"block 7x10 of 3x4", make_layout(UnitLayout::Block, 7, 10, 1, 3, 4)},
      {"block 9x12 of 3x4 (exact tiling)", make_layout(UnitLayout::Block, 9, 12, 1, 3, 4)},
      {"block 5x6 of 8x16 (one tile larger than w)",
       make_layout(UnitLayout::Block, 5, 6, 1, 8, 16)},
      {"block 4x9 of 1x2", make_layout(UnitLayout::Block, 4, 9, 1, 1, 2)},
  };
  for (const Case& tc : cases) {
    const UnitLayout& L = tc.layout;
    const int64_t n = L.rows * L.cols;
    auto w = random_vec(n, rng), g = random_vec(n, rng);
    w[0] = 0.0f;
    for (ElementScore e : kScores) {
      CAPTURE(tc.name);
      CAPTURE(score_name(e));
      const bool reads_grad = e == ElementScore::AbsGrad || e == ElementScore::AbsWeightGrad;
      // Weight-only scores must not read g: pass none.
      auto got = run_unit_scores(L, e, w, reads_grad ? g.data() : nullptr);
      auto want = naive_unit_scores(L, e, w.data(), g.data());
      REQUIRE(got.size() == want.size());
      // Same elements, same order, double products that are exact: bit-identical.
      for (size_t u = 0; u < got.size(); ++u) {
        CAPTURE(u);
        CHECK(got[u] == want[u]);
      }
    }
  }
}

TEST_CASE("fpgm scores: hand-worked values") {
  // Rows (0, 0), (3, 4), (0, 0): distances 5, 0, 5.
  const std::vector<float> rows = {0, 0, 3, 4, 0, 0};
  std::vector<float> out(3);
  cpu::fpgm_scores(make_layout(UnitLayout::Row, 3, 2), rows.data(), out.data());
  CHECK(out == std::vector<float>{5, 10, 5});
  // Channels of kk = 1 in w (2, 3) are its columns: the same three vectors.
  const std::vector<float> cols = {0, 3, 0,  //
                                   0, 4, 0};
  cpu::fpgm_scores(make_layout(UnitLayout::Channel, 2, 3, 1), cols.data(), out.data());
  CHECK(out == std::vector<float>{5, 10, 5});
  // kk = 2, one row: channels (1, 1) and (4, 5), 5 apart.
  const std::vector<float> pairs = {1, 1, 4, 5};
  std::vector<float> out2(2);
  cpu::fpgm_scores(make_layout(UnitLayout::Channel, 1, 4, 2), pairs.data(), out2.data());
  CHECK(out2 == std::vector<float>{5, 5});
}

TEST_CASE("fpgm scores match a naive all-pairs sum") {
  Rng rng(11);
  const UnitLayout layouts[] = {
      make_layout(UnitLayout::Row, 9, 13),
      make_layout(UnitLayout::Row, 1, 5),  // one unit: no other to measure against
      make_layout(UnitLayout::Channel, 6, 7 * 9, 9),
      make_layout(UnitLayout::Channel, 4, 5, 1),
  };
  for (const UnitLayout& L : layouts) {
    CAPTURE(L.kind);
    CAPTURE(L.rows);
    CAPTURE(L.cols);
    auto w = random_vec(L.rows * L.cols, rng);
    std::vector<float> got(L.units(), -1.0f);
    cpu::fpgm_scores(L, w.data(), got.data());
    auto want = naive_fpgm(L, w.data());
    REQUIRE(got.size() == want.size());
    for (size_t u = 0; u < got.size(); ++u) {
      CAPTURE(u);
      CHECK(got[u] == doctest::Approx(want[u]).epsilon(1e-6));
    }
  }
  std::vector<float> w(12, 1.0f), out(12);
  CHECK_THROWS_AS(
      cpu::fpgm_scores(make_layout(UnitLayout::Block, 3, 4, 1, 2, 2), w.data(), out.data()), Error);
}
