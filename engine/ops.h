#pragma once
#include <functional>
// Differentiable op front-ends. Each checks its inputs (shapes, dtypes, devices) and names
// what disagrees, runs the kernel, and records a backward node when grad is needed.
// Forward and backward of a family live side by side in engine/ops_<family>.cpp.
#include "engine/sparse_weight.h"
#include "engine/tensor.h"

namespace sprig {

// Element-wise (ops_eltwise.cpp): a and b have the same shape.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, float s);
Tensor relu(const Tensor& x);

// Products (ops_linear.cpp).
// a (M, K) x b (K, N) -> (M, N)
Tensor matmul(const Tensor& a, const Tensor& b);
// x (N, in), weight (out, in), bias (out) or undefined -> y (N, out) = x weight^T + bias
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// Convolution (ops_conv.cpp).
struct Conv2dOptions {
  int64_t stride = 1, padding = 0, dilation = 1;
};
// x (N, C, H, W), weight (K, C, R, S), bias (K) or undefined -> (N, K, P, Q)
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
              const Conv2dOptions& opt = {});

// Sparse weights (ops_sparse.cpp): inference only, nothing recorded for autograd. The weight
// (engine/sparse_weight.h), x, bias and residual are on one device; bias is (rows) or undefined.
struct SparseOptions {
  bool relu = false;  // y = max(y, 0) after the bias and residual
  // Linear, CSR: x given as (cols, N) and y wanted as (rows, N), so that consecutive sparse
  // layers skip the transposes in between.
  bool x_t = false, y_t = false;
  int kernel = 0;   // CSR: which of the device's kernels runs it (Backend::csr_kernels)
  Tensor residual;  // conv: (N, K, P, Q) added before the ReLU (a residual block's join)
  // Conv on the CPU: I32 cpu::csr_conv2d_offsets of the weight at x's (C, H, W), made once by
  // the caller (they cost a tenth of a 90%-sparse conv at batch 1); undefined: made per call.
  Tensor conv_offsets;
};
// x (N, cols) -> y (N, rows) = x W^T + bias, any format (BSR and N:M on the CPU only).
Tensor sparse_linear(const Tensor& x, const SparseWeight& w, const Tensor& bias,
                     const SparseOptions& opt = {});
// x (N, C, H, W), w of shape (K, C, R, S) in CSR -> (N, K, P, Q), as conv2d.
Tensor sparse_conv2d(const Tensor& x, const SparseWeight& w, const Tensor& bias,
                     const Conv2dOptions& conv = {}, const SparseOptions& opt = {});

// Pooling (ops_pool.cpp). stride 0 means stride = kernel.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
// Average pooling with PyTorch's defaults (padding counts as zeros in the average).
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
// x (N, C, H, W) -> (N, C, 1, 1), the mean of each plane (AdaptiveAvgPool2d(1)).
Tensor global_avg_pool2d(const Tensor& x);
// The option-A residual shortcut: x (N, C, H, W) -> (N, out_channels, ceil(H / stride),
// ceil(W / stride)) holding x[:, :, ::stride, ::stride] at channels [pad_lo, pad_lo + C) and
// zeros elsewhere; pad_lo = -1 centres the input's channels ((out_channels - C) / 2 zeros
// before them, as pytorch_resnet_cifar10).
Tensor shortcut(const Tensor& x, int64_t out_channels, int64_t stride, int64_t pad_lo = -1);
// shortcut's zero channels before an input of C channels: pad_lo, or the centring for -1.
inline int64_t shortcut_pad_lo(int64_t out_channels, int64_t C, int64_t pad_lo) {
  return pad_lo == -1 ? (out_channels - C) / 2 : pad_lo;
}

// Normalisation (ops_norm.cpp).
// x (N, C) or (N, C, H, W); weight and bias (C) or undefined; running_mean and running_var (C)
// on x's device. training: normalise with the batch's statistics and update the running ones
// in place (momentum as PyTorch: running = (1 - momentum) running + momentum batch, unbiased
// variance); otherwise normalise with the running statistics.
// sum_across (training only): x is one process's shard of a batch split over several
// (data-parallel training with synchronised BatchNorm); it adds values over every process in
// place, and the statistics, and the gradient through them, are those of the whole batch.
// CPU tensors only.
using SumAcrossProcesses = std::function<void(double* values, int64_t n)>;
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  float momentum = 0.1f, float eps = 1e-5f,
                  const SumAcrossProcesses& sum_across = nullptr);

// Fake quantisation for quantisation-aware training (ops_quantize.cpp): the float value of the
// int8 code each element gets, with straight-through gradients (kernels/cpu/quantize.h).
// x any shape -> scale x (clamp(round(x / scale) + zero, 0, 255) - zero): a uint8 activation.
Tensor fake_quantize(const Tensor& x, float scale, int32_t zero);
// w (out, ...) -> each output channel's symmetric int8 rendering (scale = max |w| / 127).
Tensor fake_quantize_per_channel(const Tensor& w);

// Shapes (ops_shape.cpp): views of the same storage. One dimension may be -1.
Tensor reshape(const Tensor& x, const Shape& shape);
// Keeps dims [0, start_dim) and folds the rest into one.
Tensor flatten(const Tensor& x, int64_t start_dim = 1);

// Reductions (ops_reduce.cpp) to a one-value tensor of shape ().
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);

// Losses (ops_loss.cpp), averaged over the batch, shape ().
// logits (N, C) float32, labels (N) int32 in [0, C), on the logits' device or on the CPU
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);
// pred and target of the same shape
Tensor mse_loss(const Tensor& pred, const Tensor& target);

}  // namespace sprig
