// Criteria: the score of every prunable unit of one weight (higher = more important).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/rng.h"
#include "prune/masking_internal.h"

namespace sprig::prune {

namespace detail {

WeightView weight_view(const nn::Parameter& w, const PruneSpec& spec) {
  const Tensor& t = w.value;
  SPRIG_CHECK(t.dtype() == DType::F32, "cannot prune '", w.name,
              "': pruning needs a float32 weight, got ", t.str());
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
  SPRIG_CHECK(g.shape() == w.value.shape() && g.device() == w.device(), "gradient of '", w.name,
              "' is ", g.str(), ", expected shape ", to_string(w.value.shape()), " on ",
              w.device().str());
  return g.ptr();
}

void detail::check_applies(Criterion c, Granularity g) {
  // Norm criteria measure a whole unit; on single weights they all reduce to |w|, which is
  // what magnitude means, so asking for them there is most likely a mistake.
  bool per_element = g == Granularity::Element || g == Granularity::NM;
  bool structured_only = c == Criterion::L1Norm || c == Criterion::L2Norm || c == Criterion::FPGM;
  SPRIG_CHECK(!(structured_only && per_element), "criterion '", criterion_name(c),
              "' scores whole units and does not apply to ", nn::granularity_name(g),
              " granularity: use filter or channel granularity (l1/l2 also block), or "
              "'magnitude' for single weights");
  SPRIG_CHECK(!(c == Criterion::FPGM && g == Granularity::Block),
              "criterion 'fpgm' does not apply to block granularity (filter or channel only)");
  SPRIG_CHECK(c != Criterion::BnScale || g == Granularity::Filter,
              "criterion 'bn-scale' scores the channels a BatchNorm scales: use filter "
              "granularity, not ",
              nn::granularity_name(g));
}

Tensor unit_scores(const nn::Parameter& weight, Criterion c, Granularity g, const PruneSpec& spec,
                   const Tensor* activation_scores) {
  const WeightView v = detail::weight_view(weight, spec);
  const int64_t U = detail::num_units(v, g);
  const float* w = weight.value.ptr();  // (rows, cols) on the weight's device

  detail::check_applies(c, g);
  SPRIG_CHECK(c != Criterion::BnScale, "criterion 'bn-scale' scores BatchNorm channels, not the ",
              "units of one weight ('", weight.name, "'): prune the model (prune_model)");

  // Random and activation scores are made on the host; the others are computed where the
  // weight lives (kernels/*/criteria) and copied back for the selection, which is on the host.
  std::vector<float> s(U, 0.0f);  // (U) unit scores
  if (c == Criterion::Random) {
    Rng rng(spec.seed ^ fnv1a(weight.name));
    for (int64_t u = 0; u < U; ++u) s[u] = float(rng.uniform());
  } else if (c == Criterion::Taylor && g == Granularity::Filter) {
    SPRIG_CHECK(activation_scores && activation_scores->defined(),
                "taylor filter pruning needs activation scores for '", weight.name,
                "' (see prune/data_criteria.h), none were given");
    const Tensor& a = *activation_scores;
    SPRIG_CHECK(a.dtype() == DType::F32 && a.numel() == v.rows, "activation scores for '",
                weight.name, "' must be a float32 tensor of ", v.rows,
                " values (one per output), got ", a.str());
    s = a.to_vector();
  } else {
    const Backend& be = backend_for(weight.device());
    const UnitLayout layout = detail::unit_layout(v, g);
    Tensor scores = Tensor::empty({U}, DType::F32, weight.device());  // (U)
    if (c == Criterion::FPGM) {
      be.fpgm_scores(layout, w, scores.ptr());
    } else {
      ElementScore e = ElementScore::AbsWeight;  // Magnitude, L1Norm
      if (c == Criterion::Gradient) e = ElementScore::AbsGrad;
      if (c == Criterion::Taylor) e = ElementScore::AbsWeightGrad;
      if (c == Criterion::L2Norm) e = ElementScore::SquareWeight;
      const bool reads_grad = c == Criterion::Gradient || c == Criterion::Taylor;
      be.unit_scores(layout, e, w, reads_grad ? gradient_of(weight, c) : nullptr, scores.ptr());
    }
    s = scores.to_vector();
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
