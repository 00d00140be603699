// The CUDA backend: kernels/cuda behind the Backend interface. Compiled only in CUDA builds
// (engine/CMakeLists.txt); nothing here runs until a CUDA tensor is asked for.
#include <mutex>

#include "engine/backend.h"
#include "kernels/cuda/conv.cuh"
#include "kernels/cuda/criteria.cuh"
#include "kernels/cuda/eltwise.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/loss.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/optim.cuh"
#include "kernels/cuda/pool.cuh"
#include "kernels/cuda/quantize.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/runtime.cuh"
#include "kernels/cuda/sparse.cuh"
#include "kernels/error.h"

namespace sprig {

namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index) : index_(index) {}
  Device device() const override { return Device::cuda(index_); }

  void* alloc(size_t bytes) const override { return cuda::device_alloc(bytes); }
  void free(void* p, size_t bytes) const override { cuda::device_free(p, bytes); }
  void copy(void* dst, const void* src, size_t bytes) const override {
    cuda::copy_on_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) const override {
    cuda::copy_to_host(dst, src, bytes);
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) const override {
    cuda::copy_from_host(dst, src, bytes);
  }
  void zero(void* p, size_t bytes) const override { cuda::zero(p, bytes); }
  void synchronize() const override { cuda::synchronize(); }

  void add(int64_t n, const float* a, const float* b, float* out) const override {
    cuda::add(n, a, b, out);
  }
  void add_relu(int64_t n, const float* a, const float* b, float* out) const override {
    cuda::add_relu(n, a, b, out);
  }
  void sub(int64_t n, const float* a, const float* b, float* out) const override {
    cuda::sub(n, a, b, out);
  }
  void mul(int64_t n, const float* a, const float* b, float* out) const override {
    cuda::mul(n, a, b, out);
  }
  void scale(int64_t n, const float* a, float s, float* out) const override {
    cuda::scale(n, a, s, out);
  }
  void fill(int64_t n, float value, float* out) const override { cuda::fill(n, value, out); }
  void fill_scaled(int64_t n, const float* scalar, float factor, float* out) const override {
    cuda::fill_scaled(n, scalar, factor, out);
  }
  void relu_forward(int64_t n, const float* x, float* y) const override {
    cuda::relu_forward(n, x, y);
  }
  void relu_backward(int64_t n, const float* x, const float* dy, float* dx) const override {
    cuda::relu_backward(n, x, dy, dx);
  }
  void add_row_bias(int64_t rows, int64_t cols, const float* b, float* y) const override {
    cuda::add_row_bias(rows, cols, b, y);
  }
  void mask_zero(int64_t n, const uint8_t* keep, float* x) const override {
    cuda::mask_zero(n, keep, x);
  }

  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
            int64_t lda, const float* B, int64_t ldb, float beta, float* C,
            int64_t ldc) const override {
    cuda::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  void sum(int64_t n, const float* x, float factor, float* out) const override {
    cuda::sum(n, x, factor, out);
  }
  void sum_rows(int64_t rows, int64_t cols, const float* x, float* out) const override {
    cuda::sum_rows(rows, cols, x, out);
  }
  bool all_finite(int64_t n, const float* x) const override { return cuda::all_finite(n, x); }
  int64_t count_nonzero(int64_t n, const float* x) const override {
    return cuda::count_nonzero(n, x);
  }

  const std::vector<std::string>& csr_kernels() const override {
    static const std::vector<std::string> names = [] {
      std::vector<std::string> n;
      for (cuda::CsrAlgo a : cuda::kCsrAlgos) n.push_back(cuda::csr_algo_name(a));
      return n;
    }();
    return names;
  }
  void csr_linear(const CsrRef& w, int64_t B, const float* x, bool x_t, const float* bias,
                  bool relu, float* y, bool y_t, int kernel) const override {
    cuda::csr_linear_ex(w, B, x, x_t, bias, relu, y, y_t, algo(kernel));
  }
  void bsr_linear(const BsrRef&, int64_t, const float*, const float*, bool, float*) const override {
    throw Error("bsr_linear: block-sparse weights have no CUDA kernel (convert them to CSR)");
  }
  void nm_linear(const NmRef&, int64_t, const float*, const float*, bool, float*) const override {
    throw Error("nm_linear: N:M weights have no CUDA kernel (convert them to CSR)");
  }
  void csr_conv2d(const CsrRef& w, const Conv2dShape& s, const float* x, const float* bias,
                  const float* residual, bool relu, float* y, int kernel,
                  const int32_t*) const override {
    // The shortcut is added after the product, the ReLU with it (one pass, add_relu).
    cuda::csr_conv2d(w, s, x, bias, y, relu && !residual, algo(kernel));
    if (!residual) return;
    const int64_t n = s.N * s.K * s.P() * s.Q();
    if (relu)
      cuda::add_relu(n, y, residual, y);
    else
      cuda::add(n, y, residual, y);
  }

  void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,
                      float* y) const override {
    cuda::conv2d_forward(s, x, w, b, y);
  }
  void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                       float* dx, float* dw, float* db) const override {
    cuda::conv2d_backward(s, x, w, dy, dx, dw, db);
  }
  void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y,
                         int32_t* argmax) const override {
    cuda::maxpool2d_forward(s, x, y, argmax);
  }
  void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                          float* dx) const override {
    cuda::maxpool2d_backward(s, dy, argmax, dx);
  }
  void avgpool2d_forward(const Pool2dShape& s, const float* x, float* y) const override {
    cuda::avgpool2d_forward(s, x, y);
  }
  void avgpool2d_backward(const Pool2dShape& s, const float* dy, float* dx) const override {
    cuda::avgpool2d_backward(s, dy, dx);
  }
  void global_avgpool_forward(int64_t planes, int64_t hw, const float* x, float* y) const override {
    cuda::global_avgpool_forward(planes, hw, x, y);
  }
  void global_avgpool_backward(int64_t planes, int64_t hw, const float* dy,
                               float* dx) const override {
    cuda::global_avgpool_backward(planes, hw, dy, dx);
  }
  void shortcut_forward(const ShortcutShape& s, const float* x, float* y) const override {
    cuda::shortcut_forward(s, x, y);
  }
  void shortcut_backward(const ShortcutShape& s, const float* dy, float* dx) const override {
    cuda::shortcut_backward(s, dy, dx);
  }

  void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                               const float* beta, float eps, float momentum, float* running_mean,
                               float* running_var, float* y, float* save_mean,
                               float* save_invstd) const override {
    cuda::batchnorm_forward_train(s, x, gamma, beta, eps, momentum, running_mean, running_var, y,
                                  save_mean, save_invstd);
  }
  void batchnorm_forward_eval(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* beta, const float* running_mean,
                              const float* running_var, float eps, float* y, float* save_mean,
                              float* save_invstd) const override {
    cuda::batchnorm_forward_eval(s, x, gamma, beta, running_mean, running_var, eps, y, save_mean,
                                 save_invstd);
  }
  void batchnorm_backward(const BatchNormShape& s, bool batch_stats, const float* x,
                          const float* gamma, const float* save_mean, const float* save_invstd,
                          const float* dy, float* dx, float* dgamma, float* dbeta) const override {
    cuda::batchnorm_backward(s, batch_stats, x, gamma, save_mean, save_invstd, dy, dx, dgamma,
                             dbeta);
  }

  bool labels_in_range(int64_t N, const int32_t* labels, int64_t C) const override {
    return cuda::labels_in_range(N, labels, C);
  }
  void softmax_cross_entropy_forward(int64_t N, int64_t C, const float* logits,
                                     const int32_t* labels, float* loss) const override {
    cuda::softmax_cross_entropy_forward(N, C, logits, labels, loss);
  }
  void softmax_cross_entropy_backward(int64_t N, int64_t C, const float* logits,
                                      const int32_t* labels, const float* dloss,
                                      float* dlogits) const override {
    cuda::softmax_cross_entropy_backward(N, C, logits, labels, dloss, dlogits);
  }
  void mse_forward(int64_t n, const float* pred, const float* target, float* loss) const override {
    cuda::mse_forward(n, pred, target, loss);
  }
  void mse_backward(int64_t n, const float* pred, const float* target, const float* dloss,
                    float* dpred) const override {
    cuda::mse_backward(n, pred, target, dloss, dpred);
  }

  void sgd_step(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov,
                bool first_step) const override {
    cuda::sgd_step(n, w, g, velocity, mask, lr, momentum, dampening, weight_decay, nesterov,
                   first_step);
  }
  void adam_step(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
                 float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                 bool decoupled) const override {
    cuda::adam_step(n, w, g, m, v, mask, lr, beta1, beta2, eps, weight_decay, step, decoupled);
  }

  void unit_scores(const UnitLayout& layout, ElementScore e, const float* w, const float* g,
                   float* out) const override {
    cuda::unit_scores(layout, e, w, g, out);
  }
  void fpgm_scores(const UnitLayout& layout, const float* w, float* out) const override {
    cuda::fpgm_scores(layout, w, out);
  }

  void fake_quantize(int64_t n, const float* x, float scale, int32_t zero,
                     float* y) const override {
    cuda::fake_quantize_activations(n, x, scale, zero, y);
  }
  void fake_quantize_backward(int64_t n, const float* x, const float* dy, float scale, int32_t zero,
                              float* dx) const override {
    cuda::fake_quantize_activations_backward(n, x, dy, scale, zero, dx);
  }
  void fake_quantize_channels(int64_t rows, int64_t cols, const float* w, float* y) const override {
    cuda::fake_quantize_weights_per_channel(rows, cols, w, y);
  }

 private:
  // kernel: an index into csr_kernels(), checked by the front-ends (engine/ops_sparse.cpp).
  static cuda::CsrAlgo algo(int kernel) { return cuda::kCsrAlgos[kernel]; }
  int index_;
};

}  // namespace

// Makes the device current for this thread (initialising CUDA on first use) and returns its
// backend.
const Backend& cuda_backend(int index) {
  SPRIG_CHECK(index >= 0 && index < 64, "CUDA device index ", index, " is out of range");
  cuda::use_device(index);
  static const CudaBackend* backends[64] = {};
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (!backends[index]) backends[index] = new CudaBackend(index);  // leaked: used at exit
  return *backends[index];
}

int cuda_device_count(std::string* why) {
  return cuda::device_count(why);
}

}  // namespace sprig
