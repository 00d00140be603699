// Pruning criteria. Each unit's score is summed in double in row-major element order, so the
// result is the same as scanning the weight once and adding every element into its unit.
#include "kernels/cpu/criteria.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/error.h"

namespace sprig::cpu {
namespace {

// Products are formed in double: the product of two floats is exact there, so the only
// rounding is in the per-unit sum.
template <ElementScore E>
inline double element_score(const float* w, const float* g, int64_t i) {
  if constexpr (E == ElementScore::AbsWeight) return std::fabs(double(w[i]));
  if constexpr (E == ElementScore::AbsGrad) return std::fabs(double(g[i]));
  if constexpr (E == ElementScore::AbsWeightGrad) return std::fabs(double(w[i]) * double(g[i]));
  if constexpr (E == ElementScore::SquareWeight) return double(w[i]) * double(w[i]);
  return 0.0;
}

// s (units) += the element scores of w (rows, cols); every unit sees its elements in
// row-major order.
template <ElementScore E>
void accumulate(const UnitLayout& L, const float* w, const float* g, double* s) {
  const int64_t rows = L.rows, cols = L.cols;
  switch (L.kind) {
    case UnitLayout::Row:
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) s[r] += element_score<E>(w, g, r * cols + c);
      break;
    case UnitLayout::Channel: {
      const int64_t kk = L.kk, channels = cols / kk;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t ch = 0; ch < channels; ++ch)
          for (int64_t j = 0; j < kk; ++j) s[ch] += element_score<E>(w, g, r * cols + ch * kk + j);
      break;
    }
    case UnitLayout::Block: {
      const int64_t bcols = L.block_cols();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t tc = 0; tc < bcols; ++tc) {
          double* su = s + (r / L.br) * bcols + tc;
          const int64_t c1 = std::min(cols, (tc + 1) * L.bc);
          for (int64_t c = tc * L.bc; c < c1; ++c) *su += element_score<E>(w, g, r * cols + c);
        }
      break;
    }
    default:  // Element
      for (int64_t i = 0; i < rows * cols; ++i) s[i] += element_score<E>(w, g, i);
      break;
  }
}

}  // namespace

void unit_scores(const UnitLayout& layout, ElementScore e, const float* w, const float* g,
                 float* out) {
  const int64_t U = layout.units();
  std::vector<double> s(U, 0.0);  // (U)
  switch (e) {
    case ElementScore::AbsWeight:
      accumulate<ElementScore::AbsWeight>(layout, w, g, s.data());
      break;
    case ElementScore::AbsGrad:
      accumulate<ElementScore::AbsGrad>(layout, w, g, s.data());
      break;
    case ElementScore::AbsWeightGrad:
      accumulate<ElementScore::AbsWeightGrad>(layout, w, g, s.data());
      break;
    case ElementScore::SquareWeight:
      accumulate<ElementScore::SquareWeight>(layout, w, g, s.data());
      break;
  }
  // Edge tiles hold fewer weights; averaging keeps them from looking unimportant for being small.
  if (layout.kind == UnitLayout::Block) {
    const int64_t bcols = layout.block_cols();
    for (int64_t u = 0; u < U; ++u) {
      const int64_t tr = u / bcols, tc = u % bcols;
      const int64_t h = std::min(layout.br, layout.rows - tr * layout.br);
      const int64_t wd = std::min(layout.bc, layout.cols - tc * layout.bc);
      s[u] /= double(h * wd);
    }
  }
  if (e == ElementScore::SquareWeight)
    for (double& x : s) x = std::sqrt(x);
  for (int64_t u = 0; u < U; ++u) out[u] = float(s[u]);
}

void fpgm_scores(const UnitLayout& layout, const float* w, float* out) {
  SPRIG_CHECK(layout.kind == UnitLayout::Row || layout.kind == UnitLayout::Channel,
              "fpgm_scores needs a Row or Channel layout (units of equal size)");
  const int64_t U = layout.units(), n = layout.rows * layout.cols;
  if (U == 0) return;
  const int64_t D = n / U;
  // Gather each unit into one contiguous vector: a channel is its kk columns of every row.
  std::vector<float> units(n);  // (U, D)
  if (layout.kind == UnitLayout::Row) {
    std::copy(w, w + n, units.begin());
  } else {
    const int64_t kk = layout.kk;
    for (int64_t r = 0; r < layout.rows; ++r)
      for (int64_t u = 0; u < U; ++u)
        for (int64_t j = 0; j < kk; ++j)
          units[u * D + r * kk + j] = w[r * layout.cols + u * kk + j];
  }
  // Each pair once; unit i receives its distances in order of the other unit's index.
  std::vector<double> s(U, 0.0);  // (U)
  for (int64_t i = 0; i < U; ++i) {
    const float* a = &units[i * D];  // (D)
    for (int64_t j = i + 1; j < U; ++j) {
      const float* b = &units[j * D];  // (D)
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
  for (int64_t u = 0; u < U; ++u) out[u] = float(s[u]);
}

}  // namespace sprig::cpu
