#include "apps/experiments/bayes_opt.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/error.h"

namespace sprig::app::experiments {

namespace {
constexpr double kPi = 3.14159265358979323846;

double distance(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s);
}

double normal_pdf(double z) {
  return std::exp(-0.5 * z * z) / std::sqrt(2.0 * kPi);
}
double normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

// Solves L v = b (forward) in place.
void forward_solve(const std::vector<double>& l, int n, std::vector<double>& b) {
  for (int i = 0; i < n; ++i) {
    double s = b[i];
    for (int k = 0; k < i; ++k) s -= l[i * n + k] * b[k];
    b[i] = s / l[i * n + i];
  }
}

// Solves L^T v = b (backward) in place.
void backward_solve(const std::vector<double>& l, int n, std::vector<double>& b) {
  for (int i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (int k = i + 1; k < n; ++k) s -= l[k * n + i] * b[k];
    b[i] = s / l[i * n + i];
  }
}
}  // namespace

double matern52(double r, double length_scale) {
  double a = std::sqrt(5.0) * r / length_scale;
  return (1.0 + a + a * a / 3.0) * std::exp(-a);
}

bool cholesky(std::vector<double>& a, int n) {
  for (int j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0.0)) return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (int i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
    for (int k = j + 1; k < n; ++k) a[j * n + k] = 0.0;
  }
  return true;
}

void GaussianProcess::fit(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                          const GpHyper& hyper) {
  SPRIG_CHECK(!x.empty() && x.size() == y.size(), "GP fit: ", x.size(), " inputs and ", y.size(),
              " targets (need the same positive number)");
  SPRIG_CHECK(hyper.length_scale > 0 && hyper.signal_var > 0 && hyper.noise_var >= 0,
              "GP fit: bad hyperparameters (length scale ", hyper.length_scale,
              ", signal variance ", hyper.signal_var, ", noise ", hyper.noise_var, ")");
  for (const auto& p : x)
    SPRIG_CHECK(p.size() == x[0].size(), "GP fit: inputs of dimension ", x[0].size(), " and ",
                p.size());
  int n = int(x.size());
  x_ = x;
  hyper_ = hyper;
  std::vector<double> k(size_t(n) * n);  // (n, n)
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      k[i * n + j] = hyper.signal_var * matern52(distance(x[i], x[j]), hyper.length_scale);
  // Repeated or nearly repeated inputs make K singular without noise; jitter restores it.
  double jitter = 0.0;
  for (int attempt = 0;; ++attempt) {
    chol_ = k;
    for (int i = 0; i < n; ++i) chol_[i * n + i] += hyper.noise_var + jitter;
    if (cholesky(chol_, n)) break;
    SPRIG_CHECK(attempt < 8, "GP fit: covariance matrix is not positive definite");
    jitter = jitter == 0.0 ? 1e-10 * hyper.signal_var : jitter * 10.0;
  }
  alpha_ = y;
  forward_solve(chol_, n, alpha_);
  double quad = 0.0;
  for (double v : alpha_) quad += v * v;  // y^T K^-1 y = |L^-1 y|^2
  backward_solve(chol_, n, alpha_);
  double logdet = 0.0;
  for (int i = 0; i < n; ++i) logdet += 2.0 * std::log(chol_[i * n + i]);
  lml_ = -0.5 * quad - 0.5 * logdet - 0.5 * n * std::log(2.0 * kPi);
}

void GaussianProcess::predict(const std::vector<double>& x, double& mean, double& var) const {
  SPRIG_CHECK(!x_.empty(), "GP predict before fit");
  SPRIG_CHECK(x.size() == x_[0].size(), "GP predict: input of dimension ", x.size(),
              ", fitted on dimension ", x_[0].size());
  int n = int(x_.size());
  std::vector<double> ks(n);
  for (int i = 0; i < n; ++i)
    ks[i] = hyper_.signal_var * matern52(distance(x, x_[i]), hyper_.length_scale);
  mean = 0.0;
  for (int i = 0; i < n; ++i) mean += ks[i] * alpha_[i];
  forward_solve(chol_, n, ks);  // v = L^-1 k*, var = k** - v^T v
  double vv = 0.0;
  for (double v : ks) vv += v * v;
  var = std::max(hyper_.signal_var - vv, 0.0);
}

double expected_improvement(double mean, double sd, double best, double xi) {
  double d = mean - best - xi;
  if (!(sd > 0.0)) return std::max(d, 0.0);
  double z = d / sd;
  return d * normal_cdf(z) + sd * normal_pdf(z);
}

BayesOpt::BayesOpt(std::vector<std::pair<double, double>> bounds, BayesOptOptions opt)
    : bounds_(std::move(bounds)), opt_(opt), rng_(opt.seed) {
  SPRIG_CHECK(!bounds_.empty(), "Bayesian optimisation needs at least one parameter");
  for (size_t i = 0; i < bounds_.size(); ++i) {
    auto [lo, hi] = bounds_[i];
    SPRIG_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi, "parameter ", i, ": bounds [",
                lo, ", ", hi, "] must be finite with lower < upper");
  }
  SPRIG_CHECK(opt_.initial_points >= 1, "initial_points must be >= 1, got ", opt_.initial_points);
  SPRIG_CHECK(opt_.candidates >= 2, "candidates must be >= 2, got ", opt_.candidates);
  SPRIG_CHECK(std::isfinite(opt_.xi) && opt_.xi >= 0, "xi must be >= 0, got ", opt_.xi);
}

std::vector<double> BayesOpt::scale(const std::vector<double>& x) const {
  std::vector<double> u(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    u[i] = (x[i] - bounds_[i].first) / (bounds_[i].second - bounds_[i].first);
  return u;
}

std::vector<double> BayesOpt::unscale(const std::vector<double>& u) const {
  std::vector<double> x(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    double lo = bounds_[i].first, hi = bounds_[i].second;
    x[i] = std::clamp(lo + u[i] * (hi - lo), lo, hi);
  }
  return x;
}

std::vector<double> BayesOpt::random_unit() {
  std::vector<double> u(bounds_.size());
  for (double& v : u) v = double(rng_.next_u64() >> 11) * (1.0 / 9007199254740992.0);
  return u;
}

std::pair<double, double> BayesOpt::fit_surrogate() {
  // Standardise the observations so one hyperparameter grid fits any objective's scale.
  double mean = 0.0, sd = 0.0;
  for (double v : y_) mean += v;
  mean /= double(y_.size());
  for (double v : y_) sd += (v - mean) * (v - mean);
  sd = std::sqrt(sd / double(y_.size()));
  if (!(sd > 1e-12)) sd = 1.0;
  std::vector<double> ys(y_.size());
  for (size_t i = 0; i < y_.size(); ++i) ys[i] = (y_[i] - mean) / sd;

  // Type-II maximum likelihood over a small grid.
  GpHyper chosen;
  double best_lml = -std::numeric_limits<double>::infinity();
  for (double l : {0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.7, 1.2})
    for (double s : {0.25, 0.5, 1.0, 2.0, 4.0})
      for (double noise : {1e-4, 1e-2, 0.1}) {
        GaussianProcess g;
        g.fit(x_, ys, GpHyper{l, s, noise});
        if (g.log_marginal_likelihood() > best_lml) {
          best_lml = g.log_marginal_likelihood();
          chosen = g.hyper();
        }
      }
  gp_.fit(x_, ys, chosen);
  return {mean, sd};
}

std::vector<double> BayesOpt::suggest() {
  if (y_.size() < size_t(opt_.initial_points) || y_.size() == lies_) return unscale(random_unit());
  const auto [mean, sd] = fit_surrogate();
  const double best = (y_[best_] - mean) / sd;

  std::vector<std::vector<double>> cands;
  size_t dims = bounds_.size();
  if (dims == 1) {
    for (int i = 0; i < opt_.candidates; ++i)
      cands.push_back({double(i) / double(opt_.candidates - 1)});
  } else {
    for (int i = 0; i < opt_.candidates; ++i) cands.push_back(random_unit());
    // Local candidates around the incumbent refine it in higher dimensions.
    for (int i = 0; i < opt_.candidates / 4; ++i) {
      std::vector<double> c = x_[best_];
      for (double& v : c) v = std::clamp(v + 0.05 * double(rng_.normal()), 0.0, 1.0);
      cands.push_back(c);
    }
  }
  double best_ei = -1.0;
  std::vector<double> pick;
  for (const auto& c : cands) {
    double m = 0.0, v = 0.0;
    gp_.predict(c, m, v);
    double ei = expected_improvement(m, std::sqrt(v), best, opt_.xi);
    if (ei > best_ei) {
      best_ei = ei;
      pick = c;
    }
  }
  // Nothing left to gain anywhere (all candidates sit on known points): explore at random.
  if (!(best_ei > 1e-12)) return unscale(random_unit());
  return unscale(pick);
}

std::vector<std::vector<double>> BayesOpt::suggest_batch(int q) {
  SPRIG_CHECK(q >= 1, "suggest_batch: batch of ", q, " points");
  std::vector<std::vector<double>> out = {suggest()};
  if (q == 1) return out;
  BayesOpt liar = *this;
  // The lowest value observed so far (0 before anything is: the next point is random then).
  const double lie = y_.empty() ? 0.0 : *std::min_element(y_.begin(), y_.end());
  for (int j = 1; j < q; ++j) {
    liar.observe(out.back(), lie);
    ++liar.lies_;
    out.push_back(liar.suggest());
  }
  // Later suggestions draw after this batch's draws, as if its points had been suggested one by
  // one.
  rng_ = liar.rng_;
  return out;
}

void BayesOpt::observe(const std::vector<double>& x, double y) {
  SPRIG_CHECK(x.size() == bounds_.size(), "observe: point of dimension ", x.size(), ", expected ",
              bounds_.size());
  for (size_t i = 0; i < x.size(); ++i)
    SPRIG_CHECK(std::isfinite(x[i]) && x[i] >= bounds_[i].first && x[i] <= bounds_[i].second,
                "observe: parameter ", i, " = ", x[i], " is outside its bounds [", bounds_[i].first,
                ", ", bounds_[i].second, "]");
  SPRIG_CHECK(std::isfinite(y), "observe: objective value ", y, " is not finite");
  x_.push_back(scale(x));
  y_.push_back(y);
  if (y_.size() == 1 || y > y_[best_]) {
    best_ = y_.size() - 1;
    best_x_ = x;
  }
}

const std::vector<double>& BayesOpt::best_x() const {
  SPRIG_CHECK(!y_.empty(), "Bayesian optimisation: no observations yet");
  return best_x_;
}

double BayesOpt::best_y() const {
  SPRIG_CHECK(!y_.empty(), "Bayesian optimisation: no observations yet");
  return y_[best_];
}

}  // namespace sprig::app::experiments
