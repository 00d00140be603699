// Pruning criteria on the GPU (kernels/cpu/criteria.cpp's numbers). One thread per unit adds
// the unit's elements in row-major order in double, so every score is bit-identical to the
// CPU's (the products are exact in double). FPGM gathers the units into a (D, U) matrix so a
// block's threads read neighbouring units, and each distance is summed in the CPU's order.
#include <algorithm>

#include "kernels/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/criteria.cuh"
#include "kernels/cuda/runtime.cuh"

namespace sprig::cuda {

using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

template <ElementScore E>
__device__ inline double element_score(const float* w, const float* g, int64_t i) {
  if constexpr (E == ElementScore::AbsWeight) return fabs(double(w[i]));
  if constexpr (E == ElementScore::AbsGrad) return fabs(double(g[i]));
  if constexpr (E == ElementScore::AbsWeightGrad) return fabs(double(w[i]) * double(g[i]));
  if constexpr (E == ElementScore::SquareWeight) return double(w[i]) * double(w[i]);
  return 0.0;
}

// out (units) from w, g (rows, cols); g is read only by the gradient scores.
template <ElementScore E>
__global__ void unit_scores_kernel(UnitLayout L, int64_t units, const float* w, const float* g,
                                   float* out) {
  const int64_t rows = L.rows, cols = L.cols;
  for (int64_t u = first_index(); u < units; u += grid_stride()) {
    double s = 0.0;
    switch (L.kind) {
      case UnitLayout::Row:
        for (int64_t c = 0; c < cols; ++c) s += element_score<E>(w, g, u * cols + c);
        break;
      case UnitLayout::Channel:
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < L.kk; ++j) s += element_score<E>(w, g, r * cols + u * L.kk + j);
        break;
      case UnitLayout::Block: {
        const int64_t bcols = (cols + L.bc - 1) / L.bc;
        const int64_t r0 = (u / bcols) * L.br, c0 = (u % bcols) * L.bc;
        const int64_t r1 = min(rows, r0 + L.br), c1 = min(cols, c0 + L.bc);
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) s += element_score<E>(w, g, r * cols + c);
        // Edge tiles are averaged over their true size.
        s /= double((r1 - r0) * (c1 - c0));
        break;
      }
      default:  // Element
        s += element_score<E>(w, g, u);
        break;
    }
    if constexpr (E == ElementScore::SquareWeight) s = sqrt(s);
    out[u] = float(s);
  }
}

template <ElementScore E>
void launch_unit_scores(const UnitLayout& L, int64_t units, const float* w, const float* g,
                        float* out) {
  unit_scores_kernel<E><<<blocks_for(units), kThreads, 0, stream()>>>(L, units, w, g, out);
  SPRIG_CUDA_LAUNCHED("unit_scores_kernel");
}

// units_t (D, U): units_t[k * U + u] is element k of unit u; a row's elements in column order,
// a channel's kk columns of every row in row order. w (rows, cols)
__global__ void fpgm_gather_kernel(UnitLayout L, int64_t U, const float* w, float* units_t) {
  const int64_t n = L.rows * L.cols;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t r = i / L.cols, c = i % L.cols;
    int64_t u, k;
    if (L.kind == UnitLayout::Row) {
      u = r;
      k = c;
    } else {
      u = c / L.kk;
      k = r * L.kk + c % L.kk;
    }
    units_t[k * U + u] = w[i];
  }
}

// One block per unit u (grid-stride over units). Threads measure ||u - v|| for kThreads units
// v at a time, each summing over k in order as the CPU does; thread 0 then adds the distances
// in order of v, so out[u] matches the CPU's sum exactly. units_t (D, U), out (U)
__global__ void fpgm_distance_kernel(int64_t U, int64_t D, const float* units_t, float* out) {
  __shared__ double dist[kThreads];
  for (int64_t u = blockIdx.x; u < U; u += gridDim.x) {
    double s = 0.0;  // meaningful in thread 0 only
    for (int64_t v0 = 0; v0 < U; v0 += blockDim.x) {
      const int64_t v = v0 + threadIdx.x;
      if (v < U) {
        double d2 = 0.0;
        for (int64_t k = 0; k < D; ++k) {
          double d = double(units_t[k * U + u]) - double(units_t[k * U + v]);
          d2 += d * d;
        }
        dist[threadIdx.x] = sqrt(d2);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        const int64_t count = min(int64_t(blockDim.x), U - v0);
        for (int64_t t = 0; t < count; ++t)
          if (v0 + t != u) s += dist[t];
      }
      __syncthreads();  // dist is rewritten by the next chunk
    }
    if (threadIdx.x == 0) out[u] = float(s);
  }
}

}  // namespace

void unit_scores(const UnitLayout& layout, ElementScore e, const float* w, const float* g,
                 float* out) {
  const int64_t units = layout.units();
  if (units <= 0) return;
  switch (e) {
    case ElementScore::AbsWeight:
      launch_unit_scores<ElementScore::AbsWeight>(layout, units, w, g, out);
      break;
    case ElementScore::AbsGrad:
      launch_unit_scores<ElementScore::AbsGrad>(layout, units, w, g, out);
      break;
    case ElementScore::AbsWeightGrad:
      launch_unit_scores<ElementScore::AbsWeightGrad>(layout, units, w, g, out);
      break;
    case ElementScore::SquareWeight:
      launch_unit_scores<ElementScore::SquareWeight>(layout, units, w, g, out);
      break;
  }
}

void fpgm_scores(const UnitLayout& layout, const float* w, float* out) {
  SPRIG_CHECK(layout.kind == UnitLayout::Row || layout.kind == UnitLayout::Channel,
              "fpgm_scores needs a Row or Channel layout (units of equal size)");
  const int64_t U = layout.units(), n = layout.rows * layout.cols;
  if (U <= 0) return;
  const int64_t D = n / U;
  if (D == 0) {
    zero(out, U * sizeof(float));
    return;
  }
  const size_t bytes = n * sizeof(float);
  float* units_t = static_cast<float*>(device_alloc(bytes));  // (D, U)
  fpgm_gather_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(layout, U, w, units_t);
  SPRIG_CUDA_LAUNCHED("fpgm_gather_kernel");
  const unsigned blocks = unsigned(std::min<int64_t>(U, 65535));
  fpgm_distance_kernel<<<blocks, kThreads, 0, stream()>>>(U, D, units_t, out);
  SPRIG_CUDA_LAUNCHED("fpgm_distance_kernel");
  device_free(units_t, bytes);
}

}  // namespace sprig::cuda
