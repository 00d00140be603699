// Batch normalisation kernels against their two-pass references on odd shapes, against
// hand-computed statistics, against finite differences of the forward pass, and across
// thread counts (bit-identical).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/norm.h"
#include "kernels/cpu/threads.h"
#include "tests/kernel_test_util.h"

using namespace sprig;
using namespace sprig::cpu;

namespace {

using sprig::testing::random_vec;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

size_t numel(const BatchNormShape& s) {
  return size_t(s.N * s.C * s.HW);
}

// Index of value j (< N * HW) of channel c.
size_t at(const BatchNormShape& s, int64_t c, int64_t j) {
  return size_t(((j / s.HW) * s.C + c) * s.HW + j % s.HW);
}

// |got - want| <= tol[i] for every element; NaN fails.
void expect_within(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                   const std::vector<double>& tol) {
  CAPTURE(what);
  REQUIRE(got.size() == want.size());
  REQUIRE(tol.size() == want.size());
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); i++)
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tol[i]))
      if (bad++ < 5)
        FAIL_CHECK(what << "[" << i << "] = " << got[i] << ", want " << want[i] << " (tol "
                        << tol[i] << ")");
  CHECK(bad == 0);
}

// Everything one forward + backward produces, so runs can be compared as a whole.
struct Run {
  std::vector<float> y, mean, invstd, rmean, rvar, dx, dgamma, dbeta;
  bool operator==(const Run& o) const {
    return y == o.y && mean == o.mean && invstd == o.invstd && rmean == o.rmean && rvar == o.rvar &&
           dx == o.dx && dgamma == o.dgamma && dbeta == o.dbeta;
  }
};

struct Inputs {
  std::vector<float> x, gamma, beta, rmean, rvar, dy;
};

Inputs make_inputs(const BatchNormShape& s, float offset, uint32_t seed) {
  Inputs in;
  in.x = random_vec(numel(s), seed);
  for (auto& v : in.x) v += offset;
  in.gamma = random_vec(s.C, seed + 1);
  in.beta = random_vec(s.C, seed + 2);
  in.rmean = random_vec(s.C, seed + 3);
  in.rvar = random_vec(s.C, seed + 4);
  for (auto& v : in.rvar) v = 0.25f + std::fabs(v);  // a variance is positive
  in.dy = random_vec(numel(s), seed + 5);
  return in;
}

using TrainFn = void (*)(const BatchNormShape&, const float*, const float*, const float*, float,
                         float, float*, float*, float*, float*, float*);
using EvalFn = void (*)(const BatchNormShape&, const float*, const float*, const float*,
                        const float*, const float*, float, float*, float*, float*);
using BackFn = void (*)(const BatchNormShape&, bool, const float*, const float*, const float*,
                        const float*, const float*, float*, float*, float*);

// Outputs start as NaN, so anything not written shows.
Run run(const BatchNormShape& s, const Inputs& in, bool train, bool affine, TrainFn ftrain,
        EvalFn feval, BackFn fback) {
  const float eps = 1e-5f, momentum = 0.1f;
  const float* g = affine ? in.gamma.data() : nullptr;
  const float* b = affine ? in.beta.data() : nullptr;
  Run r;
  r.y.assign(numel(s), kNaN);
  r.mean.assign(s.C, kNaN);
  r.invstd.assign(s.C, kNaN);
  r.rmean = in.rmean;
  r.rvar = in.rvar;
  if (train)
    ftrain(s, in.x.data(), g, b, eps, momentum, r.rmean.data(), r.rvar.data(), r.y.data(),
           r.mean.data(), r.invstd.data());
  else
    feval(s, in.x.data(), g, b, in.rmean.data(), in.rvar.data(), eps, r.y.data(), r.mean.data(),
          r.invstd.data());
  r.dx.assign(numel(s), kNaN);
  r.dgamma.assign(s.C, kNaN);
  r.dbeta.assign(s.C, kNaN);
  fback(s, train, in.x.data(), g, r.mean.data(), r.invstd.data(), in.dy.data(), r.dx.data(),
        r.dgamma.data(), r.dbeta.data());
  return r;
}

Run run_fast(const BatchNormShape& s, const Inputs& in, bool train, bool affine) {
  return run(s, in, train, affine, batchnorm_forward_train, batchnorm_forward_eval,
             batchnorm_backward);
}
Run run_ref(const BatchNormShape& s, const Inputs& in, bool train, bool affine) {
  return run(s, in, train, affine, batchnorm_forward_train_ref, batchnorm_forward_eval_ref,
             batchnorm_backward_ref);
}

// The fast kernels compute y and dx in float from float per-channel coefficients, the
// references in double, so they differ by a few roundings of the terms involved; the bounds
// below are 1e-5 (~80 ulps) of the sum of those terms' magnitudes. Statistics and parameter
// gradients are double sums rounded once: 1e-6 of their terms' magnitudes.
void compare(const BatchNormShape& s, const Inputs& in, bool train, bool affine) {
  CAPTURE(train);
  CAPTURE(affine);
  const Run f = run_fast(s, in, train, affine), r = run_ref(s, in, train, affine);
  const int64_t n = s.N * s.HW;
  std::vector<double> tol_y(numel(s)), tol_dx(numel(s)), tol_c(s.C), tol_is(s.C), tol_rm(s.C),
      tol_rv(s.C), tol_dg(s.C), tol_db(s.C);
  for (int64_t c = 0; c < s.C; c++) {
    const double g = affine ? std::fabs(in.gamma[c]) : 1.0, b = affine ? std::fabs(in.beta[c]) : 0;
    const double mean = r.mean[c], is = r.invstd[c];
    double abs_x = 0, abs_dy = 0, abs_dyxhat = 0;
    for (int64_t j = 0; j < n; j++) {
      const size_t i = at(s, c, j);
      abs_x += std::fabs(in.x[i]);
      abs_dy += std::fabs(in.dy[i]);
      abs_dyxhat += std::fabs(in.dy[i] * (in.x[i] - mean) * is);
    }
    for (int64_t j = 0; j < n; j++) {
      const size_t i = at(s, c, j);
      const double span = std::fabs(in.x[i]) + std::fabs(mean);
      tol_y[i] = 1e-5 * (span * is * g + b);
      double terms = std::fabs(in.dy[i]);
      if (train) terms += (span * is * abs_dyxhat + abs_dy) / double(n);
      tol_dx[i] = 1e-5 * g * is * terms;
    }
    tol_c[c] = 1e-6 * (n > 0 ? abs_x / double(n) : 0.0);
    tol_is[c] = 1e-6 * is;
    tol_rm[c] = 1e-6 * (std::fabs(in.rmean[c]) + abs_x / double(n));
    tol_rv[c] = 1e-6 * (std::fabs(in.rvar[c]) + std::fabs(r.rvar[c]));
    tol_dg[c] = 1e-6 * abs_dyxhat;
    tol_db[c] = 1e-6 * abs_dy;
  }
  expect_within("y", f.y, r.y, tol_y);
  if (train) {
    expect_within("save_mean", f.mean, r.mean, tol_c);
    expect_within("running_mean", f.rmean, r.rmean, tol_rm);
    expect_within("running_var", f.rvar, r.rvar, tol_rv);
  } else {
    CHECK(f.mean == in.rmean);  // eval copies the running statistics
    CHECK(r.mean == in.rmean);
    CHECK(f.rmean == in.rmean);  // and leaves them alone
    CHECK(f.rvar == in.rvar);
  }
  expect_within("save_invstd", f.invstd, r.invstd, tol_is);
  expect_within("dx", f.dx, r.dx, tol_dx);
  expect_within("dgamma", f.dgamma, r.dgamma, tol_dg);
  expect_within("dbeta", f.dbeta, r.dbeta, tol_db);
}

const BatchNormShape kShapes[] = {
    {1, 1, 1},  {1, 3, 1},   {5, 1, 1},   {1, 1, 7},    {2, 3, 1},   {4, 5, 9},
    {3, 7, 25}, {1, 4, 33},  {7, 3, 17},  {64, 32, 1},  {2, 6, 289}, {8, 16, 300},
    {3, 1, 64}, {9, 2, 255}, {1, 65, 15}, {32, 16, 64},
};

}  // namespace

TEST_CASE("batchnorm forward and backward match the references") {
  for (const auto& s : kShapes) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.HW);
    for (float offset : {0.0f, 50.0f}) {  // a mean far from 0: the variance must not cancel
      CAPTURE(offset);
      const Inputs in = make_inputs(s, offset, uint32_t(s.N * 131 + s.C * 7 + s.HW));
      for (bool train : {true, false})
        for (bool affine : {true, false}) compare(s, in, train, affine);
    }
  }
}

TEST_CASE("batchnorm_backward: any subset of dx, dgamma, dbeta; the rest untouched") {
  for (const auto& s : {BatchNormShape{4, 5, 9}, BatchNormShape{8, 16, 300}}) {
    CAPTURE(s.C);
    const Inputs in = make_inputs(s, 0.0f, 3);
    for (bool train : {true, false}) {
      CAPTURE(train);
      const Run full = run_fast(s, in, train, true);
      const float* g = in.gamma.data();
      for (int mask = 0; mask < 8; mask++) {
        CAPTURE(mask);
        std::vector<float> dx(numel(s), 7.0f), dg(s.C, 7.0f), db(s.C, 7.0f);
        batchnorm_backward(s, train, in.x.data(), g, full.mean.data(), full.invstd.data(),
                           in.dy.data(), mask & 1 ? dx.data() : nullptr,
                           mask & 2 ? dg.data() : nullptr, mask & 4 ? db.data() : nullptr);
        // Same channel loop, same order: bit-identical to the full call.
        if (mask & 1)
          CHECK(dx == full.dx);
        else
          CHECK(dx == std::vector<float>(numel(s), 7.0f));
        if (mask & 2)
          CHECK(dg == full.dgamma);
        else
          CHECK(dg == std::vector<float>(s.C, 7.0f));
        if (mask & 4)
          CHECK(db == full.dbeta);
        else
          CHECK(db == std::vector<float>(s.C, 7.0f));
      }
    }
  }
}

TEST_CASE("batchnorm: null running statistics are skipped, the outputs stay the same") {
  const BatchNormShape s{4, 5, 9};
  const Inputs in = make_inputs(s, 0.0f, 5);
  const Run with = run_fast(s, in, true, true);
  std::vector<float> y(numel(s)), mean(s.C), invstd(s.C);
  batchnorm_forward_train(s, in.x.data(), in.gamma.data(), in.beta.data(), 1e-5f, 0.1f, nullptr,
                          nullptr, y.data(), mean.data(), invstd.data());
  CHECK(y == with.y);
  CHECK(mean == with.mean);
  CHECK(invstd == with.invstd);
  batchnorm_forward_train_ref(s, in.x.data(), in.gamma.data(), in.beta.data(), 1e-5f, 0.1f, nullptr,
                              nullptr, y.data(), mean.data(), invstd.data());
  CHECK(mean == run_ref(s, in, true, true).mean);
}

TEST_CASE("batchnorm: bit-identical for 1 and 2 threads and inside a parallel region") {
  // Large enough for the channel loop to use the team.
  for (const auto& s :
       {BatchNormShape{8, 16, 300}, BatchNormShape{512, 64, 1}, BatchNormShape{2, 3, 20000}}) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.HW);
    const Inputs in = make_inputs(s, 0.0f, 9);
    const int saved = num_threads();
    for (bool train : {true, false}) {
      CAPTURE(train);
      set_num_threads(1);
      const Run one = run_fast(s, in, train, true);
      set_num_threads(2);
      const Run two = run_fast(s, in, train, true);
      CHECK(one == two);
      // Called from inside a parallel region (op-level parallelism), each thread on its own
      // copy: the kernel runs single-threaded there and gives the same bits.
      Run inside[2];
#pragma omp parallel for num_threads(2) schedule(static)
      for (int t = 0; t < 2; t++) inside[t] = run_fast(s, in, train, true);
      CHECK(inside[0] == one);
      CHECK(inside[1] == one);
    }
    set_num_threads(saved);
  }
}

TEST_CASE("batchnorm training statistics and running update on hand-computed values") {
  // Channel 0 holds {1, 2, 3, 6}: mean 3, squared deviations 4 + 1 + 0 + 9 = 14, biased
  // variance 14 / 4 = 3.5, unbiased 14 / 3. Channel 1 is constant 2: variance 0.
  const BatchNormShape s{2, 2, 2};
  const std::vector<float> x = {1, 2, 2, 2, 3, 6, 2, 2};  // (N, C, HW)
  const std::vector<float> gamma = {2.0f, 0.5f}, beta = {1.0f, -1.0f};
  const float eps = 1e-5f, momentum = 0.1f;
  for (TrainFn f : {TrainFn(batchnorm_forward_train), TrainFn(batchnorm_forward_train_ref)}) {
    std::vector<float> rm = {1.0f, -4.0f}, rv = {2.0f, 3.0f};
    std::vector<float> y(8), mean(2), invstd(2);
    f(s, x.data(), gamma.data(), beta.data(), eps, momentum, rm.data(), rv.data(), y.data(),
      mean.data(), invstd.data());
    CHECK(mean[0] == 3.0f);
    CHECK(mean[1] == 2.0f);
    const double is0 = 1.0 / std::sqrt(3.5 + double(eps)), is1 = 1.0 / std::sqrt(double(eps));
    CHECK(invstd[0] == doctest::Approx(is0).epsilon(1e-6));
    CHECK(invstd[1] == doctest::Approx(is1).epsilon(1e-6));
    // running = 0.9 * running + 0.1 * stat, the variance unbiased.
    CHECK(rm[0] == doctest::Approx(0.9 * 1.0 + 0.1 * 3.0).epsilon(1e-6));
    CHECK(rm[1] == doctest::Approx(0.9 * -4.0 + 0.1 * 2.0).epsilon(1e-6));
    CHECK(rv[0] == doctest::Approx(0.9 * 2.0 + 0.1 * 14.0 / 3.0).epsilon(1e-6));
    CHECK(rv[1] == doctest::Approx(0.9 * 3.0).epsilon(1e-6));
    const double want[8] = {(1 - 3) * is0 * 2 + 1, (2 - 3) * is0 * 2 + 1, -1, -1,
                            (3 - 3) * is0 * 2 + 1, (6 - 3) * is0 * 2 + 1, -1, -1};
    for (int i = 0; i < 8; i++) CHECK(y[i] == doctest::Approx(want[i]).epsilon(1e-6));
  }
}

TEST_CASE("batchnorm with one value per channel: the unbiased variance is the biased one") {
  // n = N * HW = 1: mean = x, variance 0 (not 0 / 0), y = beta.
  const BatchNormShape s{1, 2, 1};
  const std::vector<float> x = {5.0f, -3.0f}, beta = {0.25f, -0.5f};
  for (TrainFn f : {TrainFn(batchnorm_forward_train), TrainFn(batchnorm_forward_train_ref)}) {
    std::vector<float> rm = {1.0f, 1.0f}, rv = {2.0f, 4.0f}, y(2), mean(2), invstd(2);
    f(s, x.data(), nullptr, beta.data(), 1e-5f, 0.1f, rm.data(), rv.data(), y.data(), mean.data(),
      invstd.data());
    CHECK(mean == x);
    CHECK(y == beta);
    CHECK(rm[0] == doctest::Approx(0.9 + 0.5).epsilon(1e-6));
    CHECK(rm[1] == doctest::Approx(0.9 - 0.3).epsilon(1e-6));
    CHECK(rv[0] == doctest::Approx(1.8).epsilon(1e-6));
    CHECK(rv[1] == doctest::Approx(3.6).epsilon(1e-6));
    CHECK(std::isfinite(invstd[0]));
  }
}

TEST_CASE("batchnorm evaluation mode is the affine map of the running statistics") {
  const BatchNormShape s{3, 2, 5};
  const Inputs in = make_inputs(s, 0.0f, 21);
  const float eps = 1e-3f;
  for (EvalFn f : {EvalFn(batchnorm_forward_eval), EvalFn(batchnorm_forward_eval_ref)})
    for (bool affine : {true, false}) {
      CAPTURE(affine);
      std::vector<float> y(numel(s)), mean(s.C), invstd(s.C);
      f(s, in.x.data(), affine ? in.gamma.data() : nullptr, affine ? in.beta.data() : nullptr,
        in.rmean.data(), in.rvar.data(), eps, y.data(), mean.data(), invstd.data());
      CHECK(mean == in.rmean);
      for (int64_t c = 0; c < s.C; c++) {
        const double is = 1.0 / std::sqrt(double(in.rvar[c]) + double(eps));
        CHECK(invstd[c] == doctest::Approx(is).epsilon(1e-6));
        const double g = affine ? in.gamma[c] : 1.0, b = affine ? in.beta[c] : 0.0;
        for (int64_t j = 0; j < s.N * s.HW; j++) {
          const size_t i = at(s, c, j);
          const double want = (in.x[i] - in.rmean[c]) * is * g + b;
          CHECK(std::fabs(y[i] - want) <= 1e-6 * (std::fabs(want) + 1.0));
        }
      }
    }
}

TEST_CASE("batchnorm_backward is the gradient of the forward (finite differences)") {
  // L = sum(dy * y) with fixed random dy; central differences in double of float outputs have
  // an error of ~h^2 + 1e-7 / h, so h = 1e-2 and gradcheck.h's tolerances.
  const float h = 1e-2f;
  const double rtol = 2e-2, atol = 2e-3;
  for (const auto& s : {BatchNormShape{3, 2, 5}, BatchNormShape{4, 3, 1}, BatchNormShape{1, 2, 9}})
    for (bool train : {true, false}) {
      CAPTURE(s.N);
      CAPTURE(s.HW);
      CAPTURE(train);
      Inputs in = make_inputs(s, 0.0f, 31);
      auto loss = [&](const Inputs& v) {
        std::vector<float> y(numel(s)), mean(s.C), invstd(s.C), rm = v.rmean, rv = v.rvar;
        if (train)
          batchnorm_forward_train(s, v.x.data(), v.gamma.data(), v.beta.data(), 1e-5f, 0.1f,
                                  rm.data(), rv.data(), y.data(), mean.data(), invstd.data());
        else
          batchnorm_forward_eval(s, v.x.data(), v.gamma.data(), v.beta.data(), v.rmean.data(),
                                 v.rvar.data(), 1e-5f, y.data(), mean.data(), invstd.data());
        double L = 0.0;
        for (size_t i = 0; i < y.size(); i++) L += double(v.dy[i]) * double(y[i]);
        return L;
      };
      const Run a = run_fast(s, in, train, true);
      auto check = [&](const char* what, std::vector<float>& param,
                       const std::vector<float>& analytic) {
        for (size_t i = 0; i < param.size(); i++) {
          const float saved = param[i];
          param[i] = saved + h;
          const double plus = loss(in);
          param[i] = saved - h;
          const double minus = loss(in);
          param[i] = saved;
          const double numeric = (plus - minus) / (2.0 * double(h));
          CHECK_MESSAGE(std::fabs(analytic[i] - numeric) <= atol + rtol * std::fabs(numeric), what,
                        "[", i, "]: analytic ", analytic[i], " vs numeric ", numeric);
        }
      };
      check("dx", in.x, a.dx);
      check("dgamma", in.gamma, a.dgamma);
      check("dbeta", in.beta, a.dbeta);
    }
}

TEST_CASE("batchnorm on an empty batch leaves the running statistics alone") {
  const BatchNormShape s{0, 3, 4};
  const float eps = 1e-5f;
  for (TrainFn f : {TrainFn(batchnorm_forward_train), TrainFn(batchnorm_forward_train_ref)}) {
    std::vector<float> rm = {1, 2, 3}, rv = {4, 5, 6}, mean(3, kNaN), invstd(3, kNaN);
    f(s, nullptr, nullptr, nullptr, eps, 0.1f, rm.data(), rv.data(), nullptr, mean.data(),
      invstd.data());
    CHECK(rm == std::vector<float>{1, 2, 3});
    CHECK(rv == std::vector<float>{4, 5, 6});
    CHECK(mean == std::vector<float>(3, 0.0f));
    CHECK(invstd == std::vector<float>(3, float(1.0 / std::sqrt(double(eps)))));
  }
  for (BackFn f : {BackFn(batchnorm_backward), BackFn(batchnorm_backward_ref)}) {
    std::vector<float> mean(3, 0.0f), invstd(3, 1.0f), dg(3, kNaN), db(3, kNaN);
    f(s, true, nullptr, nullptr, mean.data(), invstd.data(), nullptr, nullptr, dg.data(),
      db.data());
    CHECK(dg == std::vector<float>(3, 0.0f));
    CHECK(db == std::vector<float>(3, 0.0f));
  }
}

TEST_CASE("synchronised batchnorm: shards with summed statistics compute the whole batch's") {
  // A batch of N samples split into shards of 3, 2 and N - 5 samples, as three processes hold
  // it: sums added across the shards, then each shard's forward and backward from the sums,
  // against batchnorm_forward_train / batchnorm_backward on the whole batch.
  for (BatchNormShape whole : {BatchNormShape{8, 3, 5}, BatchNormShape{7, 4, 1}}) {
    CAPTURE(whole.N);
    CAPTURE(whole.HW);
    const int64_t C = whole.C, plane = C * whole.HW;  // values per sample
    const size_t nc = static_cast<size_t>(C);
    std::vector<float> x = random_vec(numel(whole), 5), dy = random_vec(numel(whole), 6);
    for (float& v : x) v = 3.0f * v + 1.5f;  // a mean far from 0, as activations have
    std::vector<float> gamma = random_vec(nc, 7), beta = random_vec(nc, 8);
    std::vector<float> rmean(nc, 0.2f), rvar(nc, 1.3f);
    // The whole batch, in one call.
    std::vector<float> y(x.size()), mean(nc), invstd(nc), dx(x.size());
    std::vector<float> dgamma(nc), dbeta(nc), rmean_want = rmean, rvar_want = rvar;
    batchnorm_forward_train(whole, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1f,
                            rmean_want.data(), rvar_want.data(), y.data(), mean.data(),
                            invstd.data());
    batchnorm_backward(whole, true, x.data(), gamma.data(), mean.data(), invstd.data(), dy.data(),
                       dx.data(), dgamma.data(), dbeta.data());
    const std::vector<int64_t> first = {0, 3, 5,
                                        whole.N};  // shard k: samples [first[k], first[k+1])
    std::vector<double> sums(2 * nc, 0.0);
    for (size_t k = 0; k + 1 < first.size(); ++k) {
      BatchNormShape s{first[k + 1] - first[k], C, whole.HW};
      std::vector<double> part(2 * nc);
      batchnorm_sums(s, x.data() + first[k] * plane, part.data());
      for (size_t i = 0; i < part.size(); ++i) sums[i] += part[i];
    }
    std::vector<float> y_got(x.size()), dx_got(x.size());
    std::vector<double> dsums(2 * nc, 0.0);
    std::vector<float> rmean_got, rvar_got, mean_got(nc), invstd_got(nc);
    for (size_t k = 0; k + 1 < first.size(); ++k) {
      BatchNormShape s{first[k + 1] - first[k], C, whole.HW};
      rmean_got = rmean, rvar_got = rvar;  // every shard updates its own copy the same way
      batchnorm_forward_from_sums(s, sums.data(), whole.count(), x.data() + first[k] * plane,
                                  gamma.data(), beta.data(), 1e-5f, 0.1f, rmean_got.data(),
                                  rvar_got.data(), y_got.data() + first[k] * plane, mean_got.data(),
                                  invstd_got.data());
      std::vector<float> dg(nc), db(nc);
      batchnorm_backward(s, false, x.data() + first[k] * plane, gamma.data(), mean_got.data(),
                         invstd_got.data(), dy.data() + first[k] * plane, nullptr, dg.data(),
                         db.data());
      for (int64_t c = 0; c < C; ++c) {
        dsums[size_t(c)] += db[size_t(c)];
        dsums[size_t(C + c)] += dg[size_t(c)];
      }
    }
    for (size_t k = 0; k + 1 < first.size(); ++k) {
      BatchNormShape s{first[k + 1] - first[k], C, whole.HW};
      batchnorm_backward_from_sums(s, dsums.data(), whole.count(), x.data() + first[k] * plane,
                                   gamma.data(), mean_got.data(), invstd_got.data(),
                                   dy.data() + first[k] * plane, dx_got.data() + first[k] * plane);
    }
    expect_within("y", y_got, y, std::vector<double>(y.size(), 1e-5));
    expect_within("mean", mean_got, mean, std::vector<double>(nc, 1e-6));
    expect_within("invstd", invstd_got, invstd, std::vector<double>(nc, 1e-5));
    expect_within("running_mean", rmean_got, rmean_want, std::vector<double>(nc, 1e-6));
    expect_within("running_var", rvar_got, rvar_want, std::vector<double>(nc, 1e-5));
    expect_within("dx", dx_got, dx, std::vector<double>(dx.size(), 1e-5));
    std::vector<float> dsum_dy(nc), dsum_dy_xhat(nc);
    for (int64_t c = 0; c < C; ++c) {
      dsum_dy[size_t(c)] = float(dsums[size_t(c)]);
      dsum_dy_xhat[size_t(c)] = float(dsums[size_t(C + c)]);
    }
    expect_within("sum dy (dbeta)", dsum_dy, dbeta, std::vector<double>(nc, 1e-5));
    expect_within("sum dy xhat (dgamma)", dsum_dy_xhat, dgamma, std::vector<double>(nc, 1e-5));
  }
}
