#pragma once
// Tensor: a handle to a contiguous, row-major block of one dtype on one device.
// Copies of a Tensor share the same TensorImpl; reshape/flatten make views that share storage.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/shape.h"
#include "kernels/error.h"

namespace sprig {

enum class DType { F32, I32, U8, U16 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

// A raw buffer on a device. CPU buffers are 64-byte aligned and come from a caching
// allocator, so a training step that frees and re-requests the same sizes does not hit malloc.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

// Frees the CPU allocator's cached blocks (e.g. between experiments).
void release_cached_memory();

// Counts of the CPU allocator: blocks obtained from the system and blocks reused from the
// cache. A training step after the first should only reuse.
struct AllocatorStats {
  int64_t system_allocs = 0, reuses = 0;
};
AllocatorStats cpu_allocator_stats();

struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements, for views
  Shape shape;
  DType dtype = DType::F32;
  bool requires_grad = false;
  bool retain_grad = false;          // keep grad on a non-leaf too (for activation criteria)
  std::shared_ptr<TensorImpl> grad;  // accumulated d(loss)/d(this): leaves, and retain_grad
  std::shared_ptr<Node> grad_fn;     // the op that produced this tensor, if recorded
};

class Rng;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Factories. Values are uninitialised for empty().
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  static Tensor ones(const Shape& shape) { return full(shape, 1.0f); }
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector_i32(const std::vector<int32_t>& values, const Shape& shape);
  static Tensor uniform(const Shape& shape, float lo, float hi, Rng& rng);
  static Tensor normal(const Shape& shape, float mean, float stddev, Rng& rng);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  const Shape& shape() const { return checked()->shape; }
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t i) const;  // negative i counts from the end
  int64_t numel() const { return sprig::numel(shape()); }
  DType dtype() const { return checked()->dtype; }
  Device device() const { return checked()->storage->device(); }
  size_t nbytes() const { return numel() * dtype_size(dtype()); }

  // Typed pointers for host code; throw if the dtype differs or the tensor is not on the CPU
  // (host code cannot read device memory: copy with to(Device::cpu()) first).
  float* data() const { return data_as<float>(); }
  template <typename T>
  T* data_as() const;
  // Typed pointers on the tensor's own device, to hand to its backend's kernels
  // (engine/backend.h); throw if the dtype differs.
  float* ptr() const { return ptr_as<float>(); }
  template <typename T>
  T* ptr_as() const;
  float item() const;                    // the single value of a 1-element f32 tensor (any device)
  std::vector<float> to_vector() const;  // copy out (f32, any device)
  std::vector<int32_t> to_vector_i32() const;

  // Same storage, no autograd history.
  Tensor detach() const;
  // A new buffer holding the same values, no autograd history.
  Tensor clone() const;
  // Copies values from src (same shape and dtype, any device) into this tensor's buffer.
  void copy_(const Tensor& src);
  void fill_(float value);
  void zero_();
  // This tensor on device: itself when already there, else a copy without autograd history.
  Tensor to(Device device) const;

  // Views (autograd-aware; see engine/ops.h).
  Tensor reshape(const Shape& shape) const;
  Tensor flatten(int64_t start_dim = 1) const;

  // Autograd.
  bool requires_grad() const { return checked()->requires_grad; }
  Tensor& set_requires_grad(bool on);
  bool is_leaf() const { return checked()->grad_fn == nullptr; }
  Tensor grad() const;  // undefined until a backward pass reaches this leaf
  // Asks backward to store this non-leaf tensor's gradient in grad() as well (PyTorch's
  // retain_grad); a no-op on leaves, which always keep theirs.
  void retain_grad();
  void zero_grad();   // zeroes the grad buffer in place (keeps it allocated)
  void clear_grad();  // drops the grad buffer
  const std::shared_ptr<Node>& grad_fn() const { return checked()->grad_fn; }
  // Back-propagates from this tensor. Without an argument the tensor must hold one value
  // and the seed gradient is 1.
  void backward(const Tensor& seed = Tensor()) const;

  std::string str() const;  // "Tensor(shape, dtype, device)" for messages

 private:
  TensorImpl* checked() const {
    SPRIG_CHECK(impl_, "use of an undefined Tensor");
    return impl_.get();
  }
  std::shared_ptr<TensorImpl> impl_;
};

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::I32;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::U8;
};
template <>
struct DTypeOf<uint16_t> {
  static constexpr DType value = DType::U16;
};

template <typename T>
T* Tensor::ptr_as() const {
  TensorImpl* t = checked();
  SPRIG_CHECK(t->dtype == DTypeOf<T>::value, "tensor has dtype ", dtype_name(t->dtype),
              ", asked for ", dtype_name(DTypeOf<T>::value));
  return static_cast<T*>(t->storage->data()) + t->offset;
}

template <typename T>
T* Tensor::data_as() const {
  SPRIG_CHECK(checked()->storage->device().is_cpu(), str(),
              " is on the GPU: host code needs a CPU copy (to(Device::cpu()))");
  return ptr_as<T>();
}

}  // namespace sprig
