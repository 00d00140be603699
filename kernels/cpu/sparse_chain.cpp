// csr_linear_ex: the CSR SpMM with either side kept transposed and the ReLU fused, so that a chain
// of sparse Linear + ReLU layers keeps its activations (features, batch) from one layer to the
// next. csr_linear transposes x (B, cols) into panels xT (cols, 64) and every tile of output rows
// back into y (B, rows); between two sparse layers those two transposes cancel, and the separate
// ReLU pass goes away too.
// Threads split the panels (64 samples each) when there are at least as many panels as threads:
// then a thread transposes only its own samples, where csr_linear's row split has every thread
// transpose all of x. With fewer panels they split the rows by stored entries, as csr_linear.
// Each output is summed by csr_tile in the same order as csr_linear's SpMM path.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/sparse.h"
#include "kernels/cpu/sparse_impl.h"

namespace sprig::cpu {
namespace {
using namespace sparse_detail;

thread_local std::vector<float> tls_xt;  // (cols, ldx) the calling thread's transposed panel

template <typename Idx>
void csr_linear_ex_impl(const CsrRef& w, const Idx* col, int64_t B, const float* x, bool x_t,
                        const float* bias, bool relu, float* y, bool y_t) {
  const int64_t rows = w.rows, cols = w.cols, npanels = (B + kPanel - 1) / kPanel;
  const int T = threads_for(double(w.nnz) * B + double(rows) * B);
  const bool by_panels = npanels >= T;
  const std::vector<int64_t> bounds =
      by_panels ? split_rows(npanels, T, [](int64_t p) { return p; })
                : split_rows(rows, T, [&](int64_t i) { return w.row_ptr[i] + i; });
  const float* val = w.values;
  const int32_t* rp = w.row_ptr;
  const int64_t ldx = std::min(kPanel, (B + 15) / 16 * 16);
  run_items(T, T, [&](int64_t t) {
    const int64_t p0 = by_panels ? bounds[t] : 0, p1 = by_panels ? bounds[t + 1] : npanels;
    const int64_t r0 = by_panels ? 0 : bounds[t], r1 = by_panels ? rows : bounds[t + 1];
    float* xp = x_t || r0 == r1 ? nullptr : aligned_scratch(tls_xt, size_t(cols * ldx));
    alignas(64) float tile[kCsrTileRows * kPanel];  // (kCsrTileRows, kPanel) when !y_t
    for (int64_t p = p0; p < p1 && r0 < r1; p++) {
      const int64_t b0 = p * kPanel, wd = std::min(kPanel, B - b0);
      const float* rhs = x + b0;  // (cols, B) when x_t
      int64_t ldr = B;
      if (!x_t) {
        // 64 columns of x at a time, so reads and writes stay in L1.
        for (int64_t j0 = 0; j0 < cols; j0 += 64)
          transpose(x + b0 * cols + j0, cols, wd, std::min<int64_t>(64, cols - j0), xp + j0 * ldx,
                    ldx);
        rhs = xp;
        ldr = ldx;
      }
      for (int64_t i0 = r0; i0 < r1; i0 += kCsrTileRows) {
        const int64_t nr = std::min(kCsrTileRows, r1 - i0);
        float* out = y_t ? y + i0 * B + b0 : tile;
        with_nv(wd, [&](auto nv) {
          csr_tile<decltype(nv)::value>(col, val, rp, i0, nr, cols, rhs, ldr, wd, bias, out,
                                        y_t ? B : kPanel, relu);
        });
        if (!y_t) transpose(tile, kPanel, nr, wd, y + b0 * rows + i0, rows);
      }
    }
  });
}

}  // namespace

void csr_linear_ex(const CsrRef& w, int64_t B, const float* x, bool x_t, const float* bias,
                   bool relu, float* y, bool y_t) {
  if (B <= 0 || w.rows <= 0) return;
  if (w.narrow())
    csr_linear_ex_impl(w, w.col16, B, x, x_t, bias, relu, y, y_t);
  else
    csr_linear_ex_impl(w, w.col32, B, x, x_t, bias, relu, y, y_t);
}

}  // namespace sprig::cpu
