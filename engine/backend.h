#pragma once
// Backend: every kernel the engine, nn/ and prune/ call, on raw pointers that live on one
// device. The op front-ends (engine/ops_*.cpp) are written once against this interface;
// backend_for(device) picks the CPU kernels (kernels/cpu) or the CUDA ones (kernels/cuda, via
// engine/backend_cuda.cpp). Pointers passed to a backend's kernels must be on its device;
// scalars that the GPU computes (a loss, a sum) stay on the device as 1-value buffers, so a
// training step does not wait for the GPU until someone reads a value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "kernels/shapes.h"
#include "kernels/sparse_ref.h"

namespace sprig {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // ---- memory ------------------------------------------------------------------------------
  // Storage's memory, from a caching allocator per backend; throws sprig::Error when out of
  // memory.
  virtual void* alloc(size_t bytes) const = 0;
  virtual void free(void* p, size_t bytes) const = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) const = 0;  // both on this device
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) const = 0;
  virtual void copy_from_host(void* dst, const void* host_src, size_t bytes) const = 0;
  virtual void zero(void* p, size_t bytes) const = 0;
  virtual void synchronize() const = 0;  // waits for queued work (no-op on the CPU)

  // ---- element-wise (kernels/*/eltwise) ------------------------------------------------------
  virtual void add(int64_t n, const float* a, const float* b, float* out) const = 0;
  // out = max(a + b, 0) in one pass: the join of a residual block.
  virtual void add_relu(int64_t n, const float* a, const float* b, float* out) const = 0;
  virtual void sub(int64_t n, const float* a, const float* b, float* out) const = 0;
  virtual void mul(int64_t n, const float* a, const float* b, float* out) const = 0;
  virtual void scale(int64_t n, const float* a, float s, float* out) const = 0;
  virtual void fill(int64_t n, float value, float* out) const = 0;
  // out[i] = factor * scalar[0] for n values; scalar is a 1-value buffer on this device.
  virtual void fill_scaled(int64_t n, const float* scalar, float factor, float* out) const = 0;
  virtual void relu_forward(int64_t n, const float* x, float* y) const = 0;
  virtual void relu_backward(int64_t n, const float* x, const float* dy, float* dx) const = 0;
  virtual void add_row_bias(int64_t rows, int64_t cols, const float* b, float* y) const = 0;
  // x[i] = 0 where keep[i] == 0 (the mask invariant).
  virtual void mask_zero(int64_t n, const uint8_t* keep, float* x) const = 0;

  // ---- products (kernels/*/gemm): row-major, as kernels/cpu/gemm.h -----------------------------
  virtual void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc) const = 0;

  // ---- reductions (kernels/*/reduce) -----------------------------------------------------------
  // out[0] = factor * sum(x), accumulated in double.
  virtual void sum(int64_t n, const float* x, float factor, float* out) const = 0;
  virtual void sum_rows(int64_t rows, int64_t cols, const float* x, float* out) const = 0;
  virtual bool all_finite(int64_t n, const float* x) const = 0;
  virtual int64_t count_nonzero(int64_t n, const float* x) const = 0;

  // ---- convolution and pooling (kernels/*/conv, kernels/*/pool) --------------------------------
  virtual void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,
                              float* y) const = 0;
  virtual void conv2d_backward(const Conv2dShape& s, const float* x, const float* w,
                               const float* dy, float* dx, float* dw, float* db) const = 0;
  virtual void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y,
                                 int32_t* argmax) const = 0;
  virtual void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                                  float* dx) const = 0;

  // As kernels/cpu/pool.h: average, global average, and the option-A residual shortcut.
  virtual void avgpool2d_forward(const Pool2dShape& s, const float* x, float* y) const = 0;
  virtual void avgpool2d_backward(const Pool2dShape& s, const float* dy, float* dx) const = 0;
  virtual void global_avgpool_forward(int64_t planes, int64_t hw, const float* x,
                                      float* y) const = 0;
  virtual void global_avgpool_backward(int64_t planes, int64_t hw, const float* dy,
                                       float* dx) const = 0;
  virtual void shortcut_forward(const ShortcutShape& s, const float* x, float* y) const = 0;
  virtual void shortcut_backward(const ShortcutShape& s, const float* dy, float* dx) const = 0;

  // ---- sparse weights (kernels/*/sparse), inference only: the views' arrays on this device ----
  // The kernels this backend has for a CSR weight, the candidates an inference plan times:
  // {"csr"} on the CPU, {"cusparse", "rowsplit", "coltile"} on a GPU. `kernel` below is an
  // index into them, which the front-ends check.
  virtual const std::vector<std::string>& csr_kernels() const = 0;
  // y (B, rows) = x (B, cols) W^T + bias (rows; may be null), then max(y, 0) when relu; x is
  // (cols, B) when x_t and y is wanted as (rows, B) when y_t (as kernels/cpu/sparse.h).
  virtual void csr_linear(const CsrRef& w, int64_t B, const float* x, bool x_t, const float* bias,
                          bool relu, float* y, bool y_t, int kernel) const = 0;
  // The same with x (B, cols) and y (B, rows), for block-sparse and N:M weights (CPU only: a
  // GPU backend throws sprig::Error; SparseWeight converts to CSR for it).
  virtual void bsr_linear(const BsrRef& w, int64_t B, const float* x, const float* bias, bool relu,
                          float* y) const = 0;
  virtual void nm_linear(const NmRef& w, int64_t B, const float* x, const float* bias, bool relu,
                         float* y) const = 0;
  // y (N, K, P, Q) = conv(x (N, C, H, W), W (K, C*R*S)) + bias (K; may be null) + residual
  // ((N, K, P, Q); may be null), then max(y, 0) when relu. offsets: cpu::csr_conv2d_offsets of
  // w at s (may be null; the CPU's only, a GPU ignores them).
  virtual void csr_conv2d(const CsrRef& w, const Conv2dShape& s, const float* x, const float* bias,
                          const float* residual, bool relu, float* y, int kernel,
                          const int32_t* offsets) const = 0;

  // ---- batch normalisation (kernels/*/norm), as kernels/cpu/norm.h ----------------------------
  virtual void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                                       const float* beta, float eps, float momentum,
                                       float* running_mean, float* running_var, float* y,
                                       float* save_mean, float* save_invstd) const = 0;
  virtual void batchnorm_forward_eval(const BatchNormShape& s, const float* x, const float* gamma,
                                      const float* beta, const float* running_mean,
                                      const float* running_var, float eps, float* y,
                                      float* save_mean, float* save_invstd) const = 0;
  virtual void batchnorm_backward(const BatchNormShape& s, bool batch_stats, const float* x,
                                  const float* gamma, const float* save_mean,
                                  const float* save_invstd, const float* dy, float* dx,
                                  float* dgamma, float* dbeta) const = 0;

  // ---- losses (kernels/*/loss); loss and dloss are 1-value buffers on this device --------------
  // True when every label is in [0, C).
  virtual bool labels_in_range(int64_t N, const int32_t* labels, int64_t C) const = 0;
  virtual void softmax_cross_entropy_forward(int64_t N, int64_t C, const float* logits,
                                             const int32_t* labels, float* loss) const = 0;
  virtual void softmax_cross_entropy_backward(int64_t N, int64_t C, const float* logits,
                                              const int32_t* labels, const float* dloss,
                                              float* dlogits) const = 0;
  virtual void mse_forward(int64_t n, const float* pred, const float* target,
                           float* loss) const = 0;
  virtual void mse_backward(int64_t n, const float* pred, const float* target, const float* dloss,
                            float* dpred) const = 0;

  // ---- optimizers (kernels/*/optim): the update with its mask fused, as kernels/cpu/optim.h ----
  virtual void sgd_step(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask,
                        float lr, float momentum, float dampening, float weight_decay,
                        bool nesterov, bool first_step) const = 0;
  virtual void adam_step(int64_t n, float* w, const float* g, float* m, float* v,
                         const uint8_t* mask, float lr, float beta1, float beta2, float eps,
                         float weight_decay, int64_t step, bool decoupled) const = 0;

  // ---- quantisation-aware training (kernels/*/quantize), as kernels/cpu/quantize.h --------------
  virtual void fake_quantize(int64_t n, const float* x, float scale, int32_t zero,
                             float* y) const = 0;
  virtual void fake_quantize_backward(int64_t n, const float* x, const float* dy, float scale,
                                      int32_t zero, float* dx) const = 0;
  virtual void fake_quantize_channels(int64_t rows, int64_t cols, const float* w,
                                      float* y) const = 0;

  // ---- pruning criteria (kernels/*/criteria) ---------------------------------------------------
  // As kernels/cpu/criteria.h; out is on this device.
  virtual void unit_scores(const UnitLayout& layout, ElementScore e, const float* w, const float* g,
                           float* out) const = 0;
  virtual void fpgm_scores(const UnitLayout& layout, const float* w, float* out) const = 0;
};

// The backend of device d. For CUDA this initialises the driver on first use and throws
// sprig::Error naming the reason when this build has no CUDA or the machine no GPU.
const Backend& backend_for(Device d);

// True when CUDA tensors can be made here (a CUDA build and a usable GPU); *why says why not.
bool cuda_available(std::string* why = nullptr);
// How many usable GPUs there are (0 in a build without CUDA; *why then says why).
int cuda_device_count(std::string* why = nullptr);

}  // namespace sprig
