// Criteria: the score of every prunable unit of one weight (higher = more important).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "prune/masking_internal.h"

namespace sprig::prune {

namespace detail {

WeightView weight_view(const nn::Parameter& w, const PruneSpec& spec) {
  const Tensor& t = w.value;
  SPRIG_CHECK(t.dtype() == DType::F32 && t.device().is_cpu(), "cannot prune '", w.name,
              "': pruning needs a float32 CPU weight, got ", t.str());
  SPRIG_CHECK(t.dim() == 2 || t.dim() == 4, "cannot prune '", w.name,
              "': expected a linear (out, in) or conv (out, in, kh, kw) weight, got shape ",
              to_string(t.shape()));
  SPRIG_CHECK(spec.block_rows > 0 && spec.block_cols > 0, "block size must be positive, got ",
              spec.block_rows, "x", spec.block_cols);
  WeightView v;
  v.rows = t.size(0);
  v.in = t.size(1);
  v.kk = t.dim() == 4 ? t.size(2) * t.size(3) : 1;
  v.cols = v.in * v.kk;
  v.br = spec.block_rows;
  v.bc = spec.block_cols;
  return v;
}

int64_t num_units(const WeightView& v, Granularity g) {
  switch (g) {
    case Granularity::Filter:
      return v.rows;
    case Granularity::Channel:
      return v.in;
    case Granularity::Block:
      return ((v.rows + v.br - 1) / v.br) * v.block_cols();
    default:
      return v.rows * v.cols;
  }
}

Shape unit_shape(const nn::Parameter& w, const WeightView& v, Granularity g) {
  switch (g) {
    case Granularity::Filter:
      return {v.rows};
    case Granularity::Channel:
      return {v.in};
    case Granularity::Block:
      return {(v.rows + v.br - 1) / v.br, v.block_cols()};
    default:
      return w.value.shape();
  }
}

}  // namespace detail

using detail::unit_of;
using detail::WeightView;

// FNV-1a: a portable string hash (std::hash differs between standard libraries), so random
// scores are the same on every platform and differ between layers with the same seed.
static uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

static const float* gradient_of(const nn::Parameter& w, Criterion c) {
  Tensor g = w.grad();
  SPRIG_CHECK(g.defined(), "criterion '", criterion_name(c), "' needs the gradient of '", w.name,
              "', but '", w.name,
              "' has no gradient: run a backward pass (or use prune/data_criteria) first");
  SPRIG_CHECK(g.shape() == w.value.shape() && g.device().is_cpu(), "gradient of '", w.name, "' is ",
              g.str(), ", expected a CPU tensor of shape ", to_string(w.value.shape()));
  return g.data();
}

// FPGM (He et al. 2019, "Filter Pruning via Geometric Median for Deep Convolutional Neural
// Network Acceleration", CVPR). Like the authors' reference code we approximate "distance to the
// geometric median" by each unit's total Euclidean distance to all other units of the layer:
// score_i = sum_j ||u_i - u_j||_2. Units with the smallest sum lie nearest the median, so the
// others can best stand in for them: they score lowest and are pruned first.
// units: (U, D) row-major.
static std::vector<double> fpgm_scores(const std::vector<float>& units, int64_t U, int64_t D) {
  std::vector<double> s(U, 0.0);
  for (int64_t i = 0; i < U; ++i) {
    for (int64_t j = i + 1; j < U; ++j) {
      const float* a = &units[i * D];
      const float* b = &units[j * D];
      double d2 = 0.0;
      for (int64_t k = 0; k < D; ++k) {
        double d = double(a[k]) - double(b[k]);
        d2 += d * d;
      }
      double d = std::sqrt(d2);
      s[i] += d;
      s[j] += d;
    }
  }
  return s;
}

void detail::check_applies(Criterion c, Granularity g) {
  // Norm criteria measure a whole unit; on single weights they all reduce to |w|, which is
  // what magnitude means, so asking for them there is most likely a mistake.
  bool per_element = g == Granularity::Element || g == Granularity::NM;
  bool structured_only = c == Criterion::L1Norm || c == Criterion::L2Norm || c == Criterion::FPGM;
  SPRIG_CHECK(!(structured_only && per_element), "criterion '", criterion_name(c),
              "' scores whole units and does not apply to ", granularity_name(g),
              " granularity: use filter or channel granularity (l1/l2 also block), or "
              "'magnitude' for single weights");
  SPRIG_CHECK(!(c == Criterion::FPGM && g == Granularity::Block),
              "criterion 'fpgm' does not apply to block granularity (filter or channel only)");
}

Tensor unit_scores(const nn::Parameter& weight, Criterion c, Granularity g, const PruneSpec& spec,
                   const Tensor* activation_scores) {
  const WeightView v = detail::weight_view(weight, spec);
  const int64_t U = detail::num_units(v, g);
  const int64_t n = v.rows * v.cols;
  const float* w = weight.value.data();  // (rows, cols)

  detail::check_applies(c, g);

  std::vector<double> s(U, 0.0);  // (U) unit scores
  if (c == Criterion::Random) {
    Rng rng(spec.seed ^ fnv1a(weight.name));
    for (int64_t u = 0; u < U; ++u) s[u] = rng.uniform();
  } else if (c == Criterion::Taylor && g == Granularity::Filter) {
    SPRIG_CHECK(activation_scores && activation_scores->defined(),
                "taylor filter pruning needs activation scores for '", weight.name,
                "' (see prune/data_criteria.h), none were given");
    const Tensor& a = *activation_scores;
    SPRIG_CHECK(a.dtype() == DType::F32 && a.device().is_cpu() && a.numel() == v.rows,
                "activation scores for '", weight.name, "' must be a float32 CPU tensor of ",
                v.rows, " values (one per output), got ", a.str());
    for (int64_t u = 0; u < U; ++u) s[u] = a.data()[u];
  } else if (c == Criterion::FPGM) {
    // Gather the units as equal-length vectors: filters are rows, channels are the kk columns
    // of one input channel across all rows.
    const int64_t D = U ? n / U : 0;
    std::vector<float> units(n);  // (U, D)
    std::vector<int64_t> fill(U, 0);
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t col = 0; col < v.cols; ++col) {
        int64_t u = unit_of(v, g, r, col);
        units[u * D + fill[u]++] = w[r * v.cols + col];
      }
    s = fpgm_scores(units, U, D);
  } else {
    const float* gr = nullptr;
    if (c == Criterion::Gradient || c == Criterion::Taylor) gr = gradient_of(weight, c);
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t col = 0; col < v.cols; ++col) {
        int64_t i = r * v.cols + col;
        double e;
        switch (c) {
          case Criterion::Gradient:
            e = std::fabs(gr[i]);
            break;
          case Criterion::Taylor:
            e = std::fabs(double(w[i]) * double(gr[i]));
            break;
          case Criterion::L2Norm:
            e = double(w[i]) * double(w[i]);
            break;
          default:
            e = std::fabs(w[i]);
            break;  // Magnitude, L1Norm
        }
        s[unit_of(v, g, r, col)] += e;
      }
    // Edge tiles hold fewer weights; averaging (as TF-MOT's block pooling does) keeps them
    // from looking unimportant just for being small.
    if (g == Granularity::Block)
      for (int64_t u = 0; u < U; ++u) {
        int64_t tr = u / v.block_cols(), tc = u % v.block_cols();
        int64_t h = std::min(v.br, v.rows - tr * v.br), wd = std::min(v.bc, v.cols - tc * v.bc);
        s[u] /= double(h * wd);
      }
    if (c == Criterion::L2Norm)
      for (double& x : s) x = std::sqrt(x);
  }

  Tensor out = Tensor::empty(detail::unit_shape(weight, v, g));
  float* o = out.data();
  for (int64_t u = 0; u < U; ++u) {
    SPRIG_CHECK(!std::isnan(s[u]), "criterion '", criterion_name(c), "' gave a NaN score for '",
                weight.name, "' (unit ", u, "): check the weights",
                (c == Criterion::Gradient || c == Criterion::Taylor) ? ", gradients" : "",
                (activation_scores ? " and activation scores" : ""));
    o[u] = float(s[u]);
  }
  return out;
}

}  // namespace sprig::prune
