#pragma once
// Bayesian optimisation of a few bounded continuous parameters (what Ax does for seed 000's
// search over the pruning amount): a Gaussian-process surrogate with a Matern 5/2 kernel on
// inputs scaled to [0, 1], observations standardised, hyperparameters (length scale, signal
// variance, noise) picked by the largest log marginal likelihood over a small grid, and the
// next point where the expected improvement is largest. It maximises.
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/rng.h"

namespace sprig::app::experiments {

// Matern 5/2 correlation at distance r for length scale l: (1 + a + a^2/3) exp(-a), a = sqrt(5) r /
// l.
double matern52(double r, double length_scale);

struct GpHyper {
  double length_scale = 0.2;  // in the scaled [0, 1] input space
  double signal_var = 1.0;
  double noise_var = 1e-4;
};

// A zero-mean GP on given inputs and targets (the caller scales and standardises).
class GaussianProcess {
 public:
  // Factorises K + noise I (Cholesky; a little jitter is added if rounding makes it indefinite).
  // x: n points of equal dimension; y: n values. Throws sprig::Error on empty or ragged input.
  void fit(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
           const GpHyper& hyper);
  // Posterior mean and variance of the latent function at x (noise excluded).
  void predict(const std::vector<double>& x, double& mean, double& var) const;
  // log p(y | x, hyper) of the fitted data.
  double log_marginal_likelihood() const { return lml_; }
  const GpHyper& hyper() const { return hyper_; }

 private:
  std::vector<std::vector<double>> x_;
  std::vector<double> alpha_;  // (K + noise I)^-1 y
  std::vector<double> chol_;   // (n, n) lower triangle, row-major
  GpHyper hyper_;
  double lml_ = 0.0;
};

// Lower Cholesky factor of the symmetric positive-definite (n, n) matrix a (row-major), in place.
// Returns false when a pivot is not positive.
bool cholesky(std::vector<double>& a, int n);

// E[max(f - best - xi, 0)] for f ~ N(mean, sd^2); the closed form (Jones et al. 1998).
double expected_improvement(double mean, double sd, double best, double xi = 0.0);

struct BayesOptOptions {
  int initial_points = 3;  // uniform random suggestions before the GP takes over
  int candidates = 2000;   // random candidates for the acquisition (1-D: a grid of this many)
  double xi = 0.01;        // exploration margin of EI, in standardised units
  uint64_t seed = 0;
};

class BayesOpt {
 public:
  // bounds: one (lo, hi) per parameter, finite with lo < hi.
  explicit BayesOpt(std::vector<std::pair<double, double>> bounds, BayesOptOptions opt = {});
  // The next point to evaluate, inside the bounds.
  std::vector<double> suggest();
  // q points to evaluate at once (trials spread over processes). The first is suggest()'s; each
  // later one is chosen as if the ones before it had already returned the lowest value observed
  // so far (the "constant liar" of Ginsbourger, Le Riche & Carraro 2010), which makes their
  // neighbourhood unattractive and spreads the batch out. Points stay random while fewer than
  // initial_points have been suggested, or while nothing real has been observed. q = 1 is
  // exactly suggest().
  std::vector<std::vector<double>> suggest_batch(int q);
  // Records f(x) = y. x must lie within the bounds and y be finite.
  void observe(const std::vector<double>& x, double y);

  size_t size() const { return y_.size(); }
  const std::vector<double>& best_x() const;  // throws when nothing was observed
  double best_y() const;
  // The GP of the last suggest() (hyperparameters chosen by marginal likelihood).
  const GpHyper& last_hyper() const { return gp_.hyper(); }

 private:
  std::vector<double> scale(const std::vector<double>& x) const;
  std::vector<double> unscale(const std::vector<double>& u) const;
  std::vector<double> random_unit();
  // Fits gp_ to the standardised observations (hyperparameters by marginal likelihood) and
  // returns the (mean, sd) the observations were standardised with.
  std::pair<double, double> fit_surrogate();

  std::vector<std::pair<double, double>> bounds_;
  BayesOptOptions opt_;
  Rng rng_;
  std::vector<std::vector<double>> x_;  // observed, scaled to [0, 1]
  std::vector<double> y_;
  size_t best_ = 0;
  size_t lies_ = 0;  // of the observations, how many are suggest_batch's constant lies
  std::vector<double> best_x_;
  GaussianProcess gp_;
};

}  // namespace sprig::app::experiments
