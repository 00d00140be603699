// The CPU backend: kernels/cpu behind the Backend interface, and backend_for().
#include <sanitizer/asan_interface.h>  // no-op macros unless built with AddressSanitizer
#include <sys/mman.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "engine/backend.h"
#include "engine/tensor.h"  // AllocatorStats
#include "kernels/cpu/conv.h"
#include "kernels/cpu/criteria.h"
#include "kernels/cpu/eltwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/loss.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/optim.h"
#include "kernels/cpu/pool.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cpu/sparse.h"
#include "kernels/error.h"

namespace sprig {

#ifdef SPRIG_HAVE_CUDA
const Backend& cuda_backend(int index);  // engine/backend_cuda.cpp
#endif

// ---- caching CPU allocator ---------------------------------------------------------------
// Freed blocks are kept in a free list per exact byte size; a training step re-requests the
// same sizes every iteration, so after the first step no call reaches malloc.
namespace {
struct CpuCache {
  std::mutex mu;
  std::unordered_multimap<size_t, void*> free_blocks;
  AllocatorStats stats;
};
CpuCache& cpu_cache() {
  static CpuCache* cache = new CpuCache();  // leaked on purpose: outlives static tensors
  return *cache;
}
constexpr size_t kHugePage = size_t(2) << 20;  // x86-64's transparent huge page
size_t round_bytes(size_t bytes) {
  return (bytes + 63) / 64 * 64;
}
// What a block of `rounded` bytes takes from the system: whole huge pages from 2 MiB.
size_t reserved_bytes(size_t rounded) {
  return rounded >= kHugePage ? (rounded + kHugePage - 1) / kHugePage * kHugePage : rounded;
}
void* cpu_cached_alloc(size_t bytes) {
  const size_t rounded = round_bytes(bytes);
  {
    CpuCache& c = cpu_cache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(rounded);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      ++c.stats.reuses;
      ASAN_UNPOISON_MEMORY_REGION(p, bytes);
      return p;
    }
    ++c.stats.system_allocs;
  }
  // Blocks of 2 MiB or more are whole huge pages, and the kernel is asked to back them with
  // huge pages where it only does so on request (transparent_hugepage=madvise, Debian's
  // default): the activations of a 256-sample batch (6-13 MB for cnn2) then take a few TLB
  // entries instead of thousands, and cnn2's forward at batch 256 ran 5-10% faster. A refusal
  // (no THP) leaves ordinary pages, so madvise's result is not checked.
  const size_t reserved = reserved_bytes(rounded);
  const bool huge = reserved >= kHugePage;
  void* p = std::aligned_alloc(huge ? kHugePage : 64, reserved);
  SPRIG_CHECK(p, "out of memory allocating ", bytes, " bytes");
  if (huge) madvise(p, reserved, MADV_HUGEPAGE);
  // Under ASan only the requested bytes are addressable, not the rounding, so a kernel that
  // reads past a tensor's end is reported; cached blocks are poisoned (use after free).
  ASAN_POISON_MEMORY_REGION(p, reserved);
  ASAN_UNPOISON_MEMORY_REGION(p, bytes);
  return p;
}

void cpu_cached_free(void* p, size_t bytes) {
  CpuCache& c = cpu_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const size_t rounded = round_bytes(bytes);
  ASAN_POISON_MEMORY_REGION(p, rounded);
  c.free_blocks.emplace(rounded, p);
}

}  // namespace

AllocatorStats cpu_allocator_stats() {
  CpuCache& c = cpu_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void release_cached_memory() {
  CpuCache& c = cpu_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& kv : c.free_blocks) {
    ASAN_UNPOISON_MEMORY_REGION(kv.second, reserved_bytes(kv.first));
    std::free(kv.second);
  }
  c.free_blocks.clear();
}

namespace {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu(); }

  void* alloc(size_t bytes) const override { return cpu_cached_alloc(bytes); }
  void free(void* p, size_t bytes) const override { cpu_cached_free(p, bytes); }
  void copy(void* dst, const void* src, size_t bytes) const override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) const override {
    copy(dst, src, bytes);
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) const override {
    copy(dst, src, bytes);
  }
  void zero(void* p, size_t bytes) const override {
    if (bytes) std::memset(p, 0, bytes);
  }
  void synchronize() const override {}

  void add(int64_t n, const float* a, const float* b, float* out) const override {
    cpu::add(n, a, b, out);
  }
  void add_relu(int64_t n, const float* a, const float* b, float* out) const override {
    cpu::add_relu(n, a, b, out);
  }
  void sub(int64_t n, const float* a, const float* b, float* out) const override {
    cpu::sub(n, a, b, out);
  }
  void mul(int64_t n, const float* a, const float* b, float* out) const override {
    cpu::mul(n, a, b, out);
  }
  void scale(int64_t n, const float* a, float s, float* out) const override {
    cpu::scale(n, a, s, out);
  }
  void fill(int64_t n, float value, float* out) const override { cpu::fill(n, value, out); }
  void fill_scaled(int64_t n, const float* scalar, float factor, float* out) const override {
    cpu::fill(n, factor * scalar[0], out);
  }
  void relu_forward(int64_t n, const float* x, float* y) const override {
    cpu::relu_forward(n, x, y);
  }
  void relu_backward(int64_t n, const float* x, const float* dy, float* dx) const override {
    cpu::relu_backward(n, x, dy, dx);
  }
  void add_row_bias(int64_t rows, int64_t cols, const float* b, float* y) const override {
    cpu::add_row_bias(rows, cols, b, y);
  }
  void mask_zero(int64_t n, const uint8_t* keep, float* x) const override {
    for (int64_t i = 0; i < n; ++i)
      if (!keep[i]) x[i] = 0.0f;
  }

  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
            int64_t lda, const float* B, int64_t ldb, float beta, float* C,
            int64_t ldc) const override {
    cpu::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  void sum(int64_t n, const float* x, float factor, float* out) const override {
    out[0] = float(double(factor) * cpu::sum(n, x));
  }
  void sum_rows(int64_t rows, int64_t cols, const float* x, float* out) const override {
    cpu::sum_rows(rows, cols, x, out);
  }
  bool all_finite(int64_t n, const float* x) const override { return cpu::all_finite(n, x); }
  int64_t count_nonzero(int64_t n, const float* x) const override {
    int64_t nz = 0;
    for (int64_t i = 0; i < n; ++i) nz += x[i] != 0.0f;
    return nz;
  }

  const std::vector<std::string>& csr_kernels() const override {
    static const std::vector<std::string> names = {"csr"};
    return names;
  }
  void csr_linear(const CsrRef& w, int64_t B, const float* x, bool x_t, const float* bias,
                  bool relu, float* y, bool y_t, int) const override {
    // Below 4 samples, (N, features) both ways, csr_linear's own batch-1 path, the ReLU a pass
    // after it; from 4, csr_linear_ex's panels (as the executor's chains of CSR layers). Each
    // the other way round was slower: mlp90 at batch 1 0.0107 -> 0.0142 ms, cnn2_c90 at 64 by 5%.
    if (x_t || y_t || B >= 4) return cpu::csr_linear_ex(w, B, x, x_t, bias, relu, y, y_t);
    cpu::csr_linear(w, B, x, bias, y);
    if (relu) cpu::relu_forward(B * w.rows, y, y);
  }
  void bsr_linear(const BsrRef& w, int64_t B, const float* x, const float* bias, bool relu,
                  float* y) const override {
    cpu::bsr_linear(w, B, x, bias, y);
    if (relu) cpu::relu_forward(B * w.rows, y, y);
  }
  void nm_linear(const NmRef& w, int64_t B, const float* x, const float* bias, bool relu,
                 float* y) const override {
    cpu::nm_linear(w, B, x, bias, y);
    if (relu) cpu::relu_forward(B * w.rows, y, y);
  }
  void csr_conv2d(const CsrRef& w, const Conv2dShape& s, const float* x, const float* bias,
                  const float* residual, bool relu, float* y, int,
                  const int32_t* offsets) const override {
    cpu::csr_conv2d(w, s, x, bias, y, relu, offsets, residual);
  }

  void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,
                      float* y) const override {
    cpu::conv2d_forward(s, x, w, b, y);
  }
  void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                       float* dx, float* dw, float* db) const override {
    cpu::conv2d_backward(s, x, w, dy, dx, dw, db);
  }
  void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y,
                         int32_t* argmax) const override {
    cpu::maxpool2d_forward(s, x, y, argmax);
  }
  void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                          float* dx) const override {
    cpu::maxpool2d_backward(s, dy, argmax, dx);
  }
  void avgpool2d_forward(const Pool2dShape& s, const float* x, float* y) const override {
    cpu::avgpool2d_forward(s, x, y);
  }
  void avgpool2d_backward(const Pool2dShape& s, const float* dy, float* dx) const override {
    cpu::avgpool2d_backward(s, dy, dx);
  }
  void global_avgpool_forward(int64_t planes, int64_t hw, const float* x, float* y) const override {
    cpu::global_avgpool_forward(planes, hw, x, y);
  }
  void global_avgpool_backward(int64_t planes, int64_t hw, const float* dy,
                               float* dx) const override {
    cpu::global_avgpool_backward(planes, hw, dy, dx);
  }
  void shortcut_forward(const ShortcutShape& s, const float* x, float* y) const override {
    cpu::shortcut_forward(s, x, y);
  }
  void shortcut_backward(const ShortcutShape& s, const float* dy, float* dx) const override {
    cpu::shortcut_backward(s, dy, dx);
  }

  void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                               const float* beta, float eps, float momentum, float* running_mean,
                               float* running_var, float* y, float* save_mean,
                               float* save_invstd) const override {
    cpu::batchnorm_forward_train(s, x, gamma, beta, eps, momentum, running_mean, running_var, y,
                                 save_mean, save_invstd);
  }
  void batchnorm_forward_eval(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* beta, const float* running_mean,
                              const float* running_var, float eps, float* y, float* save_mean,
                              float* save_invstd) const override {
    cpu::batchnorm_forward_eval(s, x, gamma, beta, running_mean, running_var, eps, y, save_mean,
                                save_invstd);
  }
  void batchnorm_backward(const BatchNormShape& s, bool batch_stats, const float* x,
                          const float* gamma, const float* save_mean, const float* save_invstd,
                          const float* dy, float* dx, float* dgamma, float* dbeta) const override {
    cpu::batchnorm_backward(s, batch_stats, x, gamma, save_mean, save_invstd, dy, dx, dgamma,
                            dbeta);
  }

  bool labels_in_range(int64_t N, const int32_t* labels, int64_t C) const override {
    for (int64_t i = 0; i < N; ++i)
      if (labels[i] < 0 || labels[i] >= C) return false;
    return true;
  }
  void softmax_cross_entropy_forward(int64_t N, int64_t C, const float* logits,
                                     const int32_t* labels, float* loss) const override {
    loss[0] = cpu::softmax_cross_entropy_forward(N, C, logits, labels);
  }
  void softmax_cross_entropy_backward(int64_t N, int64_t C, const float* logits,
                                      const int32_t* labels, const float* dloss,
                                      float* dlogits) const override {
    cpu::softmax_cross_entropy_backward(N, C, logits, labels, dloss[0], dlogits);
  }
  void mse_forward(int64_t n, const float* pred, const float* target, float* loss) const override {
    loss[0] = cpu::mse_forward(n, pred, target);
  }
  void mse_backward(int64_t n, const float* pred, const float* target, const float* dloss,
                    float* dpred) const override {
    cpu::mse_backward(n, pred, target, dloss[0], dpred);
  }

  void sgd_step(int64_t n, float* w, const float* g, float* velocity, const uint8_t* mask, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov,
                bool first_step) const override {
    cpu::sgd_step(n, w, g, velocity, mask, lr, momentum, dampening, weight_decay, nesterov,
                  first_step);
  }
  void adam_step(int64_t n, float* w, const float* g, float* m, float* v, const uint8_t* mask,
                 float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                 bool decoupled) const override {
    cpu::adam_step(n, w, g, m, v, mask, lr, beta1, beta2, eps, weight_decay, step, decoupled);
  }

  void unit_scores(const UnitLayout& layout, ElementScore e, const float* w, const float* g,
                   float* out) const override {
    cpu::unit_scores(layout, e, w, g, out);
  }
  void fpgm_scores(const UnitLayout& layout, const float* w, float* out) const override {
    cpu::fpgm_scores(layout, w, out);
  }

  void fake_quantize(int64_t n, const float* x, float scale, int32_t zero,
                     float* y) const override {
    cpu::fake_quantize_activations(x, n, {scale, zero}, y);
  }
  void fake_quantize_backward(int64_t n, const float* x, const float* dy, float scale, int32_t zero,
                              float* dx) const override {
    cpu::fake_quantize_activations_backward(x, dy, n, {scale, zero}, dx);
  }
  void fake_quantize_channels(int64_t rows, int64_t cols, const float* w, float* y) const override {
    cpu::fake_quantize_weights_per_channel(w, rows, cols, y);
  }
};

}  // namespace

const Backend& backend_for(Device d) {
  static const CpuBackend cpu_backend;
  if (d.is_cpu()) return cpu_backend;
#ifdef SPRIG_HAVE_CUDA
  return cuda_backend(d.index);
#else
  throw Error("device " + d.str() +
              " is not available: this sprig was built without CUDA (SPRIG_CUDA=OFF)");
#endif
}

bool cuda_available(std::string* why) {
  return cuda_device_count(why) > 0;
}

#ifndef SPRIG_HAVE_CUDA
int cuda_device_count(std::string* why) {  // engine/backend_cuda.cpp in a CUDA build
  if (why) *why = "this sprig was built without CUDA (SPRIG_CUDA=OFF)";
  return 0;
}
#endif

}  // namespace sprig
