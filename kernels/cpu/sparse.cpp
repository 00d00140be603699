// Sparse formats: packing from dense, unpacking, sizes, and the plain-loop reference kernel.
// The fast kernels are in sparse_linear.cpp.
#include "kernels/cpu/sparse.h"

#include <algorithm>
#include <string>

#include "kernels/error.h"

namespace sprig::cpu {

// ---------------------------------------------------------------------------------------------
// Sizes: the bytes of the arrays a packed matrix keeps (what a packed file stores).

size_t CsrMatrix::bytes() const {
  return row_ptr.size() * sizeof(int32_t) + col16.size() * sizeof(uint16_t) +
         col32.size() * sizeof(int32_t) + values.size() * sizeof(float);
}

size_t BsrMatrix::bytes() const {
  return block_row_ptr.size() * sizeof(int32_t) + block_col.size() * sizeof(int32_t) +
         values.size() * sizeof(float);
}

size_t NmMatrix::bytes() const {
  return values.size() * sizeof(float) + index.size() * sizeof(uint8_t);
}

// ---------------------------------------------------------------------------------------------
// Views of the arrays, for the kernels.

CsrRef CsrMatrix::ref() const {
  CsrRef r;
  r.rows = rows;
  r.cols = cols;
  r.nnz = nnz();
  r.row_ptr = row_ptr.data();
  if (narrow())
    r.col16 = col16.data();
  else
    r.col32 = col32.data();
  r.values = values.data();
  return r;
}

BsrRef BsrMatrix::ref() const {
  BsrRef r;
  r.rows = rows;
  r.cols = cols;
  r.br = br;
  r.bc = bc;
  r.nblocks = nblocks();
  r.block_row_ptr = block_row_ptr.data();
  r.block_col = block_col.data();
  r.values = values.data();
  return r;
}

NmRef NmMatrix::ref() const {
  NmRef r;
  r.rows = rows;
  r.cols = cols;
  r.n = n;
  r.m = m;
  r.values = values.data();
  r.index = index.data();
  return r;
}

// ---------------------------------------------------------------------------------------------
// CSR

CsrMatrix csr_from_dense(int64_t rows, int64_t cols, const float* w) {
  if (rows < 0 || cols < 0)
    throw Error("csr_from_dense: negative shape " + std::to_string(rows) + "x" +
                std::to_string(cols));
  CsrMatrix a;
  a.rows = rows;
  a.cols = cols;
  a.row_ptr.assign(rows + 1, 0);
  SPRIG_CHECK(cols <= INT32_MAX, "csr_from_dense: ", cols, " columns do not fit int32");
  // Count first so that the arrays are allocated once.
  int64_t nnz = 0;
  for (int64_t i = 0; i < rows * cols; i++) nnz += w[i] != 0.0f;
  SPRIG_CHECK(nnz <= INT32_MAX, "csr_from_dense: ", nnz,
              " stored entries do not fit int32 row pointers");
  a.values.reserve(nnz);
  if (a.narrow())
    a.col16.reserve(nnz);
  else
    a.col32.reserve(nnz);
  for (int64_t i = 0; i < rows; i++) {
    const float* wr = w + i * cols;
    for (int64_t j = 0; j < cols; j++) {
      if (wr[j] == 0.0f) continue;
      a.values.push_back(wr[j]);
      if (a.narrow())
        a.col16.push_back(uint16_t(j));  // j < 65536
      else
        a.col32.push_back(int32_t(j));
    }
    a.row_ptr[i + 1] = int32_t(a.values.size());
  }
  return a;
}

void csr_to_dense(const CsrRef& a, float* w) {
  std::fill(w, w + a.rows * a.cols, 0.0f);
  for (int64_t i = 0; i < a.rows; i++)
    for (int64_t k = a.row_ptr[i]; k < a.row_ptr[i + 1]; k++) {
      int64_t j = a.narrow() ? int64_t(a.col16[k]) : int64_t(a.col32[k]);
      w[i * a.cols + j] = a.values[k];
    }
}

// The reference: y[b, i] = bias[i] + sum over the stored entries of row i, in double.
void csr_linear_ref(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < w.rows; i++) {
      double acc = bias ? bias[i] : 0.0;
      for (int64_t k = w.row_ptr[i]; k < w.row_ptr[i + 1]; k++) {
        int64_t j = w.narrow() ? int64_t(w.col16[k]) : int64_t(w.col32[k]);
        acc += double(w.values[k]) * x[b * w.cols + j];
      }
      y[b * w.rows + i] = float(acc);
    }
}

// ---------------------------------------------------------------------------------------------
// BSR

BsrMatrix bsr_from_dense(int64_t rows, int64_t cols, int64_t br, int64_t bc, const float* w) {
  if (rows < 0 || cols < 0 || br < 1 || bc < 1)
    throw Error("bsr_from_dense: bad shape " + std::to_string(rows) + "x" + std::to_string(cols) +
                " with blocks " + std::to_string(br) + "x" + std::to_string(bc));
  if ((cols + bc - 1) / bc > INT32_MAX) throw Error("bsr_from_dense: too many block columns");
  SPRIG_CHECK(cols <= INT32_MAX, "bsr_from_dense: ", cols, " columns do not fit int32");
  BsrMatrix a;
  a.rows = rows;
  a.cols = cols;
  a.br = br;
  a.bc = bc;
  const int64_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
  a.block_row_ptr.assign(nbr + 1, 0);
  for (int64_t I = 0; I < nbr; I++) {
    for (int64_t J = 0; J < nbc; J++) {
      // Keep the block when any entry inside the matrix is nonzero; the part of an edge block
      // outside the matrix is stored as zeros.
      bool any = false;
      for (int64_t r = I * br; r < std::min(rows, I * br + br) && !any; r++)
        for (int64_t c = J * bc; c < std::min(cols, J * bc + bc); c++)
          if (w[r * cols + c] != 0.0f) {
            any = true;
            break;
          }
      if (!any) continue;
      SPRIG_CHECK(a.nblocks() < INT32_MAX, "bsr_from_dense: more than ", INT32_MAX,
                  " blocks do not fit int32 row pointers");
      a.block_col.push_back(int32_t(J));
      for (int64_t r = I * br; r < I * br + br; r++)
        for (int64_t c = J * bc; c < J * bc + bc; c++)
          a.values.push_back(r < rows && c < cols ? w[r * cols + c] : 0.0f);
    }
    a.block_row_ptr[I + 1] = int32_t(a.nblocks());
  }
  return a;
}

void bsr_to_dense(const BsrRef& a, float* w) {
  std::fill(w, w + a.rows * a.cols, 0.0f);
  const int64_t nbr = (a.rows + a.br - 1) / a.br;
  for (int64_t I = 0; I < nbr; I++)
    for (int64_t k = a.block_row_ptr[I]; k < a.block_row_ptr[I + 1]; k++) {
      const float* v = a.values + k * a.br * a.bc;  // (br, bc)
      for (int64_t r = 0; r < a.br; r++)
        for (int64_t c = 0; c < a.bc; c++) {
          int64_t i = I * a.br + r, j = int64_t(a.block_col[k]) * a.bc + c;
          if (i < a.rows && j < a.cols) w[i * a.cols + j] = v[r * a.bc + c];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// N:M

NmMatrix nm_from_dense(int64_t rows, int64_t cols, int64_t n, int64_t m, const float* w) {
  if (rows < 0 || cols < 0 || n < 1 || m < n || m > 256)
    throw Error("nm_from_dense: bad shape " + std::to_string(rows) + "x" + std::to_string(cols) +
                " or pattern " + std::to_string(n) + ":" + std::to_string(m) +
                " (need 1 <= n <= m <= 256)");
  NmMatrix a;
  a.rows = rows;
  a.cols = cols;
  a.n = n;
  a.m = m;
  const int64_t G = (cols + m - 1) / m;
  a.values.assign(rows * G * n, 0.0f);
  a.index.assign(rows * G * n, 0);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t g = 0; g < G; g++) {
      const int64_t len = std::min(m, cols - g * m);  // the last group may be short
      const float* wg = w + i * cols + g * m;
      float* v = a.values.data() + (i * G + g) * n;
      uint8_t* ix = a.index.data() + (i * G + g) * n;
      int64_t k = 0;
      for (int64_t c = 0; c < len; c++) {
        if (wg[c] == 0.0f) continue;
        if (k == n)
          throw Error("nm_from_dense: row " + std::to_string(i) + " columns " +
                      std::to_string(g * m) + ".." + std::to_string(g * m + len - 1) +
                      " hold more than " + std::to_string(n) + " nonzeros (pattern " +
                      std::to_string(n) + ":" + std::to_string(m) + ")");
        v[k] = wg[c];
        ix[k++] = uint8_t(c);
      }
      // Padding entries hold 0 and point at zero positions of the group (position 0 when the
      // group is shorter than n), so every index stays inside the matrix.
      for (int64_t c = 0; c < len && k < n; c++)
        if (wg[c] == 0.0f) ix[k++] = uint8_t(c);
      for (; k < n; k++) ix[k] = 0;
    }
  return a;
}

void nm_to_dense(const NmRef& a, float* w) {
  std::fill(w, w + a.rows * a.cols, 0.0f);
  const int64_t G = (a.cols + a.m - 1) / a.m;
  for (int64_t i = 0; i < a.rows; i++)
    for (int64_t g = 0; g < G; g++)
      for (int64_t k = 0; k < a.n; k++) {
        int64_t e = (i * G + g) * a.n + k;
        // Skip padding, which may share a position with a stored value.
        if (a.values[e] != 0.0f) w[i * a.cols + g * a.m + a.index[e]] = a.values[e];
      }
}

// ---------------------------------------------------------------------------------------------
// Validation of matrices that come from outside (files).

namespace {
[[noreturn]] void bad(const char* what, const std::string& msg) {
  throw Error(std::string(what) + ": " + msg);
}

// row_ptr (n + 1) starts at 0, never decreases and ends at total.
void check_ptr(const char* what, const std::vector<int32_t>& ptr, int64_t n, int64_t total) {
  if (int64_t(ptr.size()) != n + 1)
    bad(what, "row pointer has " + std::to_string(ptr.size()) + " entries, want " +
                  std::to_string(n + 1));
  if (ptr[0] != 0) bad(what, "row pointer starts at " + std::to_string(ptr[0]) + ", want 0");
  for (int64_t i = 0; i < n; i++)
    if (ptr[i + 1] < ptr[i]) bad(what, "row pointer decreases at row " + std::to_string(i));
  if (ptr[n] != total)
    bad(what, "row pointer ends at " + std::to_string(ptr[n]) + ", want " + std::to_string(total));
}
}  // namespace

void csr_validate(const CsrMatrix& a) {
  const char* what = "CSR matrix";
  if (a.rows < 0 || a.cols < 0) bad(what, "negative shape");
  const size_t nnz = a.values.size();
  if (a.narrow() ? (a.col16.size() != nnz || !a.col32.empty())
                 : (a.col32.size() != nnz || !a.col16.empty()))
    bad(what, std::string("needs ") + (a.narrow() ? "16" : "32") + "-bit column indices for " +
                  std::to_string(a.cols) + " columns, one per value (" + std::to_string(nnz) + ")");
  check_ptr(what, a.row_ptr, a.rows, int64_t(nnz));
  for (size_t k = 0; k < nnz; k++) {
    int64_t j = a.narrow() ? int64_t(a.col16[k]) : int64_t(a.col32[k]);
    if (j < 0 || j >= a.cols)
      bad(what, "column index " + std::to_string(j) + " at entry " + std::to_string(k) +
                    " outside 0.." + std::to_string(a.cols - 1));
  }
}

void bsr_validate(const BsrMatrix& a) {
  const char* what = "BSR matrix";
  if (a.rows < 0 || a.cols < 0 || a.br < 1 || a.bc < 1) bad(what, "bad shape or block size");
  const int64_t nbr = (a.rows + a.br - 1) / a.br, nbc = (a.cols + a.bc - 1) / a.bc;
  check_ptr(what, a.block_row_ptr, nbr, a.nblocks());
  if (int64_t(a.values.size()) != a.nblocks() * a.br * a.bc)
    bad(what, "holds " + std::to_string(a.values.size()) + " values, want " +
                  std::to_string(a.nblocks() * a.br * a.bc));
  for (int64_t k = 0; k < a.nblocks(); k++)
    if (a.block_col[k] < 0 || a.block_col[k] >= nbc)
      bad(what, "block column " + std::to_string(a.block_col[k]) + " outside 0.." +
                    std::to_string(nbc - 1));
}

void nm_validate(const NmMatrix& a) {
  const char* what = "N:M matrix";
  if (a.rows < 0 || a.cols < 0 || a.n < 1 || a.m < a.n || a.m > 256)
    bad(what, "bad shape or pattern");
  const int64_t G = (a.cols + a.m - 1) / a.m, want = a.rows * G * a.n;
  if (int64_t(a.values.size()) != want || int64_t(a.index.size()) != want)
    bad(what, "holds " + std::to_string(a.values.size()) + " values and " +
                  std::to_string(a.index.size()) + " positions, want " + std::to_string(want));
  for (int64_t e = 0; e < want; e++) {
    const int64_t g = (e / a.n) % G, len = std::min(a.m, a.cols - g * a.m);
    if (a.index[e] >= len)
      bad(what, "position " + std::to_string(a.index[e]) + " outside its group of " +
                    std::to_string(len));
  }
}

}  // namespace sprig::cpu
