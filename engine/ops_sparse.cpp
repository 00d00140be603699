// Sparse-weight front-ends (inference only): the kernels are kernels/cpu/sparse*.cpp and
// kernels/cuda/sparse.cu, reached through Backend.
#include "engine/ops.h"
#include "engine/ops_common.h"

namespace sprig {
using namespace detail;

namespace {

// w on x's device, bias (rows) or undefined there too.
void check_weight(const Tensor& x, const SparseWeight& w, const Tensor& bias, const char* op) {
  check_float(x, op, "input");
  SPRIG_CHECK(w.defined(), op, ": the sparse weight is empty");
  SPRIG_CHECK(w.device() == x.device(), op, ": the weight is on ", w.device().str(),
              ", the input on ", x.device().str());
  if (!bias.defined()) return;
  check_float(bias, op, "bias");
  check_same_device(x, bias, op);
  SPRIG_CHECK(bias.dim() == 1 && bias.size(0) == w.rows(), op, ": bias ", to_string(bias.shape()),
              " does not match ", w.rows(), " outputs");
}

void check_kernel(const Backend& be, const SparseOptions& opt, const char* op) {
  const int64_t n = int64_t(be.csr_kernels().size());
  SPRIG_CHECK(opt.kernel >= 0 && opt.kernel < n, op, ": kernel ", opt.kernel, " outside 0..", n - 1,
              " (Backend::csr_kernels)");
}

}  // namespace

Tensor sparse_linear(const Tensor& x, const SparseWeight& w, const Tensor& bias,
                     const SparseOptions& opt) {
  const char* op = "sparse_linear";
  check_weight(x, w, bias, op);
  SPRIG_CHECK(x.dim() == 2 && x.size(opt.x_t ? 0 : 1) == w.cols(), op, ": input ",
              to_string(x.shape()), " does not fit a ", w.rows(), "x", w.cols(), " weight",
              opt.x_t ? " (given as (in, N))" : "");
  SPRIG_CHECK(w.format == SparseFormat::Csr || (!opt.x_t && !opt.y_t), op, ": ",
              sparse_format_name(w.format), " takes and gives (N, features) only");
  SPRIG_CHECK(!opt.residual.defined() && !opt.conv_offsets.defined(), op,
              ": residual and conv_offsets are for sparse_conv2d");
  const int64_t N = x.size(opt.x_t ? 1 : 0);
  Tensor y =
      Tensor::empty(opt.y_t ? Shape{w.rows(), N} : Shape{N, w.rows()}, DType::F32, x.device());
  const Backend& be = backend_for(x.device());
  const float* b = bias.defined() ? bias.ptr() : nullptr;
  switch (w.format) {
    case SparseFormat::Csr:
      check_kernel(be, opt, op);
      be.csr_linear(w.csr(), N, x.ptr(), opt.x_t, b, opt.relu, y.ptr(), opt.y_t, opt.kernel);
      break;
    case SparseFormat::Bsr:
      be.bsr_linear(w.bsr(), N, x.ptr(), b, opt.relu, y.ptr());
      break;
    case SparseFormat::Nm:
      be.nm_linear(w.nm(), N, x.ptr(), b, opt.relu, y.ptr());
      break;
  }
  return y;
}

Tensor sparse_conv2d(const Tensor& x, const SparseWeight& w, const Tensor& bias,
                     const Conv2dOptions& conv, const SparseOptions& opt) {
  const char* op = "sparse_conv2d";
  check_weight(x, w, bias, op);
  SPRIG_CHECK(w.format == SparseFormat::Csr && w.shape.size() == 4, op,
              ": the weight must be a (K, C, R, S) conv weight in CSR, got ",
              sparse_format_name(w.format), " ", to_string(w.shape));
  SPRIG_CHECK(x.dim() == 4 && x.size(1) == w.shape[1], op, ": input ", to_string(x.shape()),
              " does not fit weight ", to_string(w.shape), " (N, ", w.shape[1], ", H, W)");
  SPRIG_CHECK(conv.stride >= 1 && conv.padding >= 0 && conv.dilation >= 1, op,
              ": need stride >= 1, padding >= 0, dilation >= 1 (got ", conv.stride, ", ",
              conv.padding, ", ", conv.dilation, ")");
  SPRIG_CHECK(!opt.x_t && !opt.y_t, op, ": x_t and y_t are for sparse_linear");
  const Conv2dShape s{x.size(0),  x.size(1),  x.size(2),   x.size(3),    w.shape[0],
                      w.shape[2], w.shape[3], conv.stride, conv.padding, conv.dilation};
  SPRIG_CHECK(s.P() >= 1 && s.Q() >= 1, op, ": input ", to_string(x.shape()),
              " is smaller than the (dilated) kernel ", to_string(w.shape), " with padding ",
              conv.padding);
  const Shape out{s.N, s.K, s.P(), s.Q()};
  if (opt.residual.defined()) {
    check_float(opt.residual, op, "residual");
    check_same_device(x, opt.residual, op);
    SPRIG_CHECK(opt.residual.shape() == out, op, ": residual ", to_string(opt.residual.shape()),
                " differs from the output ", to_string(out));
  }
  const int32_t* offsets = nullptr;
  if (opt.conv_offsets.defined()) {
    SPRIG_CHECK(x.device().is_cpu() && opt.conv_offsets.dtype() == DType::I32 &&
                    opt.conv_offsets.numel() == w.stored(),
                op, ": conv_offsets must be the CPU weight's I32 (nnz) tap offsets");
    offsets = opt.conv_offsets.data_as<int32_t>();
  }
  const Backend& be = backend_for(x.device());
  check_kernel(be, opt, op);
  Tensor y = Tensor::empty(out, DType::F32, x.device());
  be.csr_conv2d(w.csr(), s, x.ptr(), bias.defined() ? bias.ptr() : nullptr,
                opt.residual.defined() ? opt.residual.ptr() : nullptr, opt.relu, y.ptr(),
                opt.kernel, offsets);
  return y;
}

}  // namespace sprig
