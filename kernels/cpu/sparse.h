#pragma once
// Sparse weight formats packed from masked (zeroed) dense weights, and the inference kernels
// that use them. A weight is viewed as a 2-D matrix W (rows, cols): (out, in) for a Linear,
// (K, C*R*S) for a Conv2d. Nothing here knows what a Tensor is.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/sparse_ref.h"

namespace sprig::cpu {

// Compressed sparse rows. Column indices are 16-bit when cols <= 65536 (half the index bytes),
// else 32-bit; exactly one of col16 / col32 is filled. The kernels take it as a CsrRef (ref(), or
// the conversion), which views these arrays: the matrix must outlive the view.
struct CsrMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<int32_t> row_ptr;  // (rows + 1)
  std::vector<uint16_t> col16;   // (nnz) when narrow()
  std::vector<int32_t> col32;    // (nnz) otherwise
  std::vector<float> values;     // (nnz)
  int64_t nnz() const { return int64_t(values.size()); }
  bool narrow() const { return cols <= 65536; }
  size_t bytes() const;  // storage of the arrays above
  CsrRef ref() const;
  operator CsrRef() const { return ref(); }
};

// Block sparse rows: dense br x bc blocks, stored when any entry is nonzero. Edge blocks are
// zero-padded to full size.
struct BsrMatrix {
  int64_t rows = 0, cols = 0, br = 1, bc = 4;
  std::vector<int32_t> block_row_ptr;  // (ceil(rows / br) + 1)
  std::vector<int32_t> block_col;      // (nblocks) block column index
  std::vector<float> values;           // (nblocks, br, bc)
  int64_t nblocks() const { return int64_t(block_col.size()); }
  size_t bytes() const;
  BsrRef ref() const;
  operator BsrRef() const { return ref(); }
};

// N:M: every group of M consecutive columns of a row holds at most N nonzeros; each group
// stores exactly N values and their positions in the group (padding with zeros).
// Padding entries point at zero positions of their group (position 0 when the group is shorter
// than n), so every stored position is inside the matrix. A short last group keeps its length.
struct NmMatrix {
  int64_t rows = 0, cols = 0, n = 2, m = 4;
  std::vector<float> values;   // (rows, ceil(cols / m), n)
  std::vector<uint8_t> index;  // (rows, ceil(cols / m), n) position within the group, < m
  size_t bytes() const;
  NmRef ref() const;
  operator NmRef() const { return ref(); }
};

// Packing from a dense row-major W (rows, cols); zeros are dropped. nm_from_dense throws
// sprig::Error when a group holds more than n nonzeros; csr_from_dense and bsr_from_dense when
// the stored entries (blocks) or the columns do not fit int32.
CsrMatrix csr_from_dense(int64_t rows, int64_t cols, const float* w);
BsrMatrix bsr_from_dense(int64_t rows, int64_t cols, int64_t br, int64_t bc, const float* w);
NmMatrix nm_from_dense(int64_t rows, int64_t cols, int64_t n, int64_t m, const float* w);
// Checks that the arrays are consistent (sizes, monotonic row pointers, indices in range,
// exactly one of col16 / col32 used), as a loader must before handing a matrix read from a file
// to a kernel; the kernels trust their input. Throws sprig::Error naming the problem.
void csr_validate(const CsrMatrix& a);
void bsr_validate(const BsrMatrix& a);
void nm_validate(const NmMatrix& a);
// Back to dense (rows, cols), for tests and for unpacking.
void csr_to_dense(const CsrRef& a, float* w);
void bsr_to_dense(const BsrRef& a, float* w);
void nm_to_dense(const NmRef& a, float* w);

// y (B, rows) = x (B, cols) W^T + bias (rows; may be null): a Linear layer with sparse W.
// y is overwritten. They run on sprig's threads (rows split by stored entries) when called
// outside another kernel's item and the product is big enough, else on the calling thread; scratch
// buffers are thread-local, so concurrent calls from different threads are safe. The result of
// each output does not depend on the thread count.
void csr_linear(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y);
void bsr_linear(const BsrRef& w, int64_t B, const float* x, const float* bias, float* y);
void nm_linear(const NmRef& w, int64_t B, const float* x, const float* bias, float* y);
// csr_linear with either side transposed and an optional fused ReLU: x is (B, cols), or
// (cols, B) when x_t; y is (B, rows), or (rows, B) when y_t; relu sets y = max(y, 0) after the
// bias (NaN passes through, as relu_forward). Consecutive sparse layers keep their activations
// transposed and skip csr_linear's transposes in and out. Same threading rules as csr_linear.
void csr_linear_ex(const CsrRef& w, int64_t B, const float* x, bool x_t, const float* bias,
                   bool relu, float* y, bool y_t);
// The plain loop over the CSR arrays, the reference for all three.
void csr_linear_ref(const CsrRef& w, int64_t B, const float* x, const float* bias, float* y);

// y (N, K, P, Q) = conv(x (N, C, H, W), W) + bias with W (K, C*R*S) in CSR, then ReLU when
// relu: a direct sparse convolution (each stored weight is one run of multiply-adds over a
// padded copy of the sample; no im2col). Same output as conv2d_forward, stride, pad and
// dilation included. Same threading rules as csr_linear. Throws sprig::Error when W is
// not K x C*R*S. offsets, when given, are csr_conv2d_offsets(w, s') for a shape s' equal to s
// but for N; without them they are worked out on every call.
// residual, when given, is (N, K, P, Q), apart from y, and is added before the ReLU: a residual
// block's y = relu(conv(x) + shortcut) in one pass.
// From csr_conv2d_group samples on (in an AVX-512 or AVX2 build, on shapes where it pays), samples
// are taken that many at a time, one to a vector lane, and a last partial group costs a whole one;
// that path lays its input out differently and makes its own offsets (C*R*S + nnz work, small
// next to 16 samples' products), so offsets are not read there.
void csr_conv2d(const CsrRef& w, const Conv2dShape& s, const float* x, const float* bias, float* y,
                bool relu = false, const int32_t* offsets = nullptr,
                const float* residual = nullptr);
inline constexpr int64_t csr_conv2d_group = 16;

// ---- Activations in sample lanes (sparse_conv_lanes.cpp) ----
// Convolutions that csr_conv2d runs 16 samples to a vector can hand each other their
// activations in that layout, skipping its lay-out of the input and transposed stores: each
// group of 16 samples is (C, H + 2 pad, W + 2 pad, 16), the border of pad zero, the groups one
// after another, then slack that a conv's last tiles read (floats() counts it; zeros). The
// buffers are 64-byte aligned. A last partial group's missing samples hold values that nothing
// reads back.
struct LanesShape {
  int64_t N = 0, C = 0, H = 0, W = 0, pad = 0;
  int64_t groups() const { return (N + csr_conv2d_group - 1) / csr_conv2d_group; }
  int64_t group_floats() const;  // C * (H + 2 pad) * (W + 2 pad) * 16
  int64_t floats() const;        // the whole buffer
};
// Whether this build has the lanes kernels (AVX-512, or AVX2 with FMA); without them the
// functions below throw sprig::Error and csr_conv2d takes every sample on its own.
bool lanes_built();
// Whether csr_conv2d_lanes takes w on s (a build with lanes_built(), s.N >= 16, a stride up to 4,
// sizes its int32 offsets reach). With both sides in lanes it pays at any density: nothing is laid
// out and nothing transposed.
bool csr_conv2d_lanes_fit(const CsrRef& w, const Conv2dShape& s);
// Whether csr_conv2d, with x and y (N, ...), runs w on s 16 samples to a vector: where it fits
// and pays for the lay-out and the transposed stores.
bool csr_conv2d_in_lanes(const CsrRef& w, const Conv2dShape& s);
// csr_conv2d with x, y or both in sample lanes: x is (N, C, H, W) when x_pad < 0, else lanes
// LanesShape{N, C, H, W, x_pad} with x_pad >= s.pad; y is (N, K, P, Q) when y_pad < 0, else
// lanes of border y_pad (border and slack written here); residual, when given, is laid out as y.
// Throws sprig::Error where !csr_conv2d_lanes_fit(w, s) or x_pad is under s.pad.
void csr_conv2d_lanes(const CsrRef& w, const Conv2dShape& s, const float* x, int64_t x_pad,
                      const float* bias, float* y, int64_t y_pad, bool relu,
                      const float* residual = nullptr);
// x (N, C, H, W) into lanes xl (a.floats()) and back.
void to_lanes(const LanesShape& a, const float* x, float* xl);
void from_lanes(const LanesShape& a, const float* xl, float* x);
// The option-A shortcut (shortcut_forward) from lanes of border x_pad to lanes of border y_pad.
void shortcut_lanes(const ShortcutShape& s, const float* xl, int64_t x_pad, float* yl,
                    int64_t y_pad);
// (nnz) where the run of each stored weight of w starts in csr_conv2d's padded copy of one
// sample of shape s (s.N is not used): work proportional to C*R*S + nnz, which at batch 1 is a
// tenth of a 90%-sparse layer's time, so an inference plan makes them once per layer.
std::vector<int32_t> csr_conv2d_offsets(const CsrRef& w, const Conv2dShape& s);

}  // namespace sprig::cpu
