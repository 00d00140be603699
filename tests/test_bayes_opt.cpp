// The Bayesian optimiser behind `sprig experiment iterative`: the GP posterior against a
// two-point example worked by hand, expected improvement against Monte Carlo, the search
// against random search on a multimodal function, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "apps/experiments/bayes_opt.h"
#include "kernels/error.h"
#include "engine/rng.h"

using namespace sprig::app::experiments;

TEST_CASE("Matern 5/2 kernel values") {
  CHECK(matern52(0.0, 0.3) == doctest::Approx(1.0));
  // (1 + sqrt 5 + 5/3) e^-sqrt 5
  CHECK(matern52(0.5, 0.5) == doctest::Approx(0.5239941088318203).epsilon(1e-12));
  CHECK(matern52(1.0, 0.5) < matern52(0.5, 0.5));
}

TEST_CASE("GP posterior of a two-point example matches the 2x2 algebra") {
  // x = {0, 0.5}, y = {1, -0.5}, l = 0.5, s = 1, noise 0.01. K + nI = [[a, b], [b, a]] with
  // a = s + n, b = s k(0.5); its inverse is [[a, -b], [-b, a]] / (a^2 - b^2).
  GaussianProcess gp;
  gp.fit({{0.0}, {0.5}}, {1.0, -0.5}, GpHyper{0.5, 1.0, 0.01});
  double a = 1.01, b = matern52(0.5, 0.5), det = a * a - b * b;
  double al0 = (a * 1.0 - b * -0.5) / det, al1 = (-b * 1.0 + a * -0.5) / det;
  for (double xs : {0.25, 1.0}) {
    double k0 = matern52(std::fabs(xs), 0.5), k1 = matern52(std::fabs(xs - 0.5), 0.5);
    double mean_hand = k0 * al0 + k1 * al1;
    double var_hand = 1.0 - (k0 * (a * k0 - b * k1) + k1 * (-b * k0 + a * k1)) / det;
    double m = 0, v = 0;
    gp.predict({xs}, m, v);
    CAPTURE(xs);
    CHECK(m == doctest::Approx(mean_hand).epsilon(1e-10));
    CHECK(v == doctest::Approx(var_hand).epsilon(1e-10));
  }
  // The same numbers computed independently (Python, double precision).
  double m = 0, v = 0;
  gp.predict({0.25}, m, v);
  CHECK(m == doctest::Approx(0.270095281868183).epsilon(1e-9));
  CHECK(v == doctest::Approx(0.1047431052349932).epsilon(1e-9));
  gp.predict({1.0}, m, v);
  CHECK(m == doctest::Approx(-0.4866489290957925).epsilon(1e-9));
  CHECK(v == doctest::Approx(0.7041157682179493).epsilon(1e-9));
  CHECK(gp.log_marginal_likelihood() == doctest::Approx(-2.8891839203751752).epsilon(1e-9));
  // At an observed point with little noise the posterior sits near the observation.
  gp.predict({0.0}, m, v);
  CHECK(m == doctest::Approx(1.0).epsilon(0.02));
  CHECK(v < 0.02);
}

TEST_CASE("Cholesky reproduces its matrix and rejects an indefinite one") {
  std::vector<double> a = {4, 2, 0.4, 2, 5, 1, 0.4, 1, 3}, l = a;
  REQUIRE(cholesky(l, 3));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += l[i * 3 + k] * l[j * 3 + k];
      CHECK(s == doctest::Approx(a[i * 3 + j]));
    }
  std::vector<double> bad = {1, 2, 2, 1};
  CHECK_FALSE(cholesky(bad, 2));
}

TEST_CASE("expected improvement: closed form against Monte Carlo") {
  sprig::Rng rng(7);
  const int n = 400000;
  std::vector<double> z(n);
  for (double& v : z) v = rng.normal();
  struct Case {
    double mean, sd, best, xi;
  };
  for (Case c : {Case{0.0, 1.0, 0.0, 0.0}, Case{0.5, 0.3, 1.0, 0.0}, Case{1.2, 0.7, 0.4, 0.1},
                 Case{-1.0, 2.0, 0.5, 0.01}}) {
    double sum = 0;
    for (double v : z) sum += std::max(c.mean + c.sd * v - c.best - c.xi, 0.0);
    double mc = sum / n;
    double ei = expected_improvement(c.mean, c.sd, c.best, c.xi);
    CAPTURE(c.mean);
    CAPTURE(c.sd);
    // float32 normals: agreement to Monte Carlo error (sd / sqrt(n) ~ 0.3% of sd).
    CHECK(ei == doctest::Approx(mc).epsilon(0.005).scale(c.sd));
    CHECK(ei > 0);
  }
  // No uncertainty: the improvement itself.
  CHECK(expected_improvement(2.0, 0.0, 1.5) == doctest::Approx(0.5));
  CHECK(expected_improvement(1.0, 0.0, 1.5) == 0.0);
}

namespace {
// -(sin x + sin(10x / 3)) on [2.7, 7.5]: several local maxima, the global one 1.899599 at
// x = 5.145735.
double multimodal(double x) {
  return -(std::sin(x) + std::sin(10.0 * x / 3.0));
}
constexpr double kMax = 1.899599;
}  // namespace

TEST_CASE("BO finds the maximum of a 1-D multimodal function far better than random search") {
  const int evals = 15, seeds = 20;
  double bo_regret = 0, random_regret = 0;
  int bo_hits = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    BayesOptOptions opt;
    opt.seed = uint64_t(seed);
    BayesOpt bo({{2.7, 7.5}}, opt);
    for (int i = 0; i < evals; ++i) {
      std::vector<double> x = bo.suggest();
      REQUIRE(x.size() == 1);
      REQUIRE(x[0] >= 2.7);
      REQUIRE(x[0] <= 7.5);
      bo.observe(x, multimodal(x[0]));
    }
    CHECK(bo.size() == size_t(evals));
    CHECK(bo.best_y() == doctest::Approx(multimodal(bo.best_x()[0])));
    bo_regret += kMax - bo.best_y();
    bo_hits += kMax - bo.best_y() < 0.01;

    sprig::Rng rng(1000 + seed);
    double best = -1e9;
    for (int i = 0; i < evals; ++i)
      best =
          std::max(best, multimodal(2.7 + 4.8 * double(rng.next_u64() >> 11) / 9007199254740992.0));
    random_regret += kMax - best;
  }
  bo_regret /= seeds;
  random_regret /= seeds;
  MESSAGE("mean regret after ", evals, " evaluations: BO ", bo_regret, ", random ", random_regret,
          "; BO within 0.01 of the max in ", bo_hits, " of ", seeds, " runs");
  CHECK(bo_regret < 0.2 * random_regret);
  CHECK(bo_hits >= seeds * 3 / 4);
}

TEST_CASE(
    "batches of suggestions: q = 1 is suggest(), larger batches spread out and still find "
    "the maximum") {
  BayesOptOptions opt;
  opt.seed = 5;
  BayesOpt one({{2.7, 7.5}}, opt), batched({{2.7, 7.5}}, opt);
  for (int i = 0; i < 8; ++i) {
    std::vector<double> a = one.suggest();
    std::vector<std::vector<double>> b = batched.suggest_batch(1);
    REQUIRE(b.size() == 1);
    CHECK(a == b[0]);  // the same draws and the same surrogate: the same bits
    one.observe(a, multimodal(a[0]));
    batched.observe(b[0], multimodal(b[0][0]));
  }
  CHECK_THROWS_AS(batched.suggest_batch(0), sprig::Error);

  // 5 rounds of 4 points: distinct points inside the bounds, and within 0.01 of the maximum
  // after 20 evaluations on most seeds (as 15 one at a time are, above).
  const int seeds = 20;
  int hits = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    BayesOptOptions o;
    o.seed = uint64_t(seed);
    BayesOpt bo({{2.7, 7.5}}, o);
    for (int round = 0; round < 5; ++round) {
      std::vector<std::vector<double>> xs = bo.suggest_batch(4);
      REQUIRE(xs.size() == 4);
      for (size_t i = 0; i < xs.size(); ++i) {
        REQUIRE(xs[i].size() == 1);
        CHECK(xs[i][0] >= 2.7);
        CHECK(xs[i][0] <= 7.5);
        for (size_t j = 0; j < i; ++j) CHECK(std::abs(xs[i][0] - xs[j][0]) > 1e-6);
      }
      for (const auto& x : xs) bo.observe(x, multimodal(x[0]));
    }
    CHECK(bo.size() == 20);
    hits += kMax - bo.best_y() < 0.01;
  }
  MESSAGE("batches of 4: within 0.01 of the max in ", hits, " of ", seeds, " runs");
  CHECK(hits >= seeds * 3 / 4);

  // The same calls give the same batches (every rank runs the optimiser itself).
  BayesOpt x1({{0.0, 1.0}}, opt), x2({{0.0, 1.0}}, opt);
  for (int round = 0; round < 3; ++round) {
    auto b1 = x1.suggest_batch(3), b2 = x2.suggest_batch(3);
    CHECK(b1 == b2);
    for (const auto& x : b1) {
      x1.observe(x, std::sin(6.0 * x[0]));
      x2.observe(x, std::sin(6.0 * x[0]));
    }
  }
}

TEST_CASE("BO in two dimensions climbs a smooth bump") {
  BayesOptOptions opt;
  opt.seed = 3;
  BayesOpt bo({{-1.0, 1.0}, {0.0, 10.0}}, opt);
  auto f = [](const std::vector<double>& x) {
    return -((x[0] - 0.3) * (x[0] - 0.3) + 0.04 * (x[1] - 7.0) * (x[1] - 7.0));
  };
  for (int i = 0; i < 20; ++i) {
    auto x = bo.suggest();
    bo.observe(x, f(x));
  }
  CHECK(bo.best_y() > -0.05);
}

TEST_CASE("bad input to the optimiser is a sprig::Error") {
  CHECK_THROWS_AS(BayesOpt({}), sprig::Error);
  CHECK_THROWS_AS(BayesOpt({{1.0, 1.0}}), sprig::Error);
  CHECK_THROWS_AS(BayesOpt({{0.0, std::numeric_limits<double>::infinity()}}), sprig::Error);
  BayesOptOptions zero;
  zero.initial_points = 0;
  CHECK_THROWS_AS(BayesOpt({{0.0, 1.0}}, zero), sprig::Error);

  BayesOpt bo({{0.1, 0.99}});
  CHECK_THROWS_AS(bo.best_x(), sprig::Error);
  CHECK_THROWS_WITH_AS(bo.observe({1.5}, 0.3), doctest::Contains("outside its bounds"),
                       sprig::Error);
  CHECK_THROWS_AS(bo.observe({0.05}, 0.3), sprig::Error);
  CHECK_THROWS_AS(bo.observe({0.5, 0.5}, 0.3), sprig::Error);
  CHECK_THROWS_WITH_AS(bo.observe({0.5}, std::nan("")), doctest::Contains("not finite"),
                       sprig::Error);
  CHECK_THROWS_AS(bo.observe({std::nan("")}, 0.3), sprig::Error);
  CHECK(bo.size() == 0);  // nothing bad was recorded
  bo.observe({0.5}, 0.3);
  CHECK(bo.best_y() == 0.3);

  GaussianProcess gp;
  double m, v;
  CHECK_THROWS_AS(gp.predict({0.1}, m, v), sprig::Error);
  CHECK_THROWS_AS(gp.fit({{0.1}, {0.2, 0.3}}, {1, 2}, GpHyper{}), sprig::Error);
  CHECK_THROWS_AS(gp.fit({{0.1}}, {1, 2}, GpHyper{}), sprig::Error);
  CHECK_THROWS_AS(gp.fit({{0.1}}, {1}, GpHyper{-1.0, 1.0, 0.0}), sprig::Error);
}
