#include "engine/tensor.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"

namespace sprig {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::I32:
      return 4;
    case DType::U8:
      return 1;
    case DType::U16:
      return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "float32";
    case DType::I32:
      return "int32";
    case DType::U8:
      return "uint8";
    case DType::U16:
      return "uint16";
  }
  return "?";
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    char* end = nullptr;
    const char* digits = s.c_str() + 5;
    errno = 0;
    long idx = std::strtol(digits, &end, 10);
    // Digits only (no sign, space or "0x"), and no wrap: "cuda:4294967296" is not cuda:0.
    const bool plain = *digits >= '0' && *digits <= '9' && end && *end == '\0';
    if (plain && errno == 0 && idx <= 1023) return Device::cuda(int(idx));
    if (plain) throw Error("device '" + s + "': the CUDA device index is out of range");
  }
  throw Error("unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  data_ = backend_for(device).alloc(bytes == 0 ? 1 : bytes);
}

Storage::~Storage() {
  try {
    backend_for(device_).free(data_, bytes_ == 0 ? 1 : bytes_);
  } catch (const Error&) {
    // A GPU tensor outliving the CUDA runtime (a static at exit): its block is left to the
    // driver, which frees everything at process end.
  }
}

// ---- factories ---------------------------------------------------------------------------
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  int64_t bytes = int64_t(dtype_size(dtype));
  for (int64_t d : shape) {
    SPRIG_CHECK(d >= 0, "negative dimension in shape ", to_string(shape));
    // A shape from a file or a spec can be absurd; its size must not wrap around.
    SPRIG_CHECK(!__builtin_mul_overflow(bytes, d, &bytes), "shape ", to_string(shape),
                " is too large (its size overflows 64 bits)");
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(bytes), device);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::F32, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  SPRIG_CHECK(int64_t(values.size()) == sprig::numel(shape), "from_vector: ", values.size(),
              " values do not fill shape ", to_string(shape));
  Tensor t = empty(shape);
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_vector_i32(const std::vector<int32_t>& values, const Shape& shape) {
  SPRIG_CHECK(int64_t(values.size()) == sprig::numel(shape), "from_vector_i32: ", values.size(),
              " values do not fill shape ", to_string(shape));
  Tensor t = empty(shape, DType::I32);
  std::memcpy(t.data_as<int32_t>(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

Tensor Tensor::uniform(const Shape& shape, float lo, float hi, Rng& rng) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform(lo, hi);
  return t;
}

Tensor Tensor::normal(const Shape& shape, float mean, float stddev, Rng& rng) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = mean + stddev * rng.normal();
  return t;
}

// ---- accessors ---------------------------------------------------------------------------
int64_t Tensor::size(int64_t i) const {
  int64_t d = dim();
  int64_t j = i < 0 ? i + d : i;
  SPRIG_CHECK(j >= 0 && j < d, "dimension ", i, " out of range for shape ", to_string(shape()));
  return shape()[j];
}

float Tensor::item() const {
  SPRIG_CHECK(numel() == 1, "item() needs a tensor with one value, got shape ", to_string(shape()));
  float v = 0.0f;
  backend_for(device()).copy_to_host(&v, ptr(), sizeof(float));
  return v;
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out(numel());
  backend_for(device()).copy_to_host(out.data(), ptr(), nbytes());
  return out;
}

std::vector<int32_t> Tensor::to_vector_i32() const {
  std::vector<int32_t> out(numel());
  backend_for(device()).copy_to_host(out.data(), ptr_as<int32_t>(), nbytes());
  return out;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(*checked());
  impl->requires_grad = false;
  impl->grad = nullptr;
  impl->grad_fn = nullptr;
  return Tensor(std::move(impl));
}

// The first byte of t's values on its device.
static char* bytes_of(const Tensor& t) {
  return static_cast<char*>(t.impl()->storage->data()) + t.impl()->offset * dtype_size(t.dtype());
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  t.copy_(*this);
  return t;
}

void Tensor::copy_(const Tensor& src) {
  SPRIG_CHECK(src.shape() == shape() && src.dtype() == dtype(), "copy_: source ", src.str(),
              " does not match destination ", str());
  const Device from = src.device(), to = device();
  if (from == to) {
    backend_for(to).copy(bytes_of(*this), bytes_of(src), nbytes());
  } else if (from.is_cpu()) {
    backend_for(to).copy_from_host(bytes_of(*this), bytes_of(src), nbytes());
  } else if (to.is_cpu()) {
    backend_for(from).copy_to_host(bytes_of(*this), bytes_of(src), nbytes());
  } else {  // between two GPUs: through the host
    copy_(src.to(Device::cpu()));
  }
}

void Tensor::fill_(float value) {
  backend_for(device()).fill(numel(), value, ptr());
}

void Tensor::zero_() {
  backend_for(device()).zero(bytes_of(*this), nbytes());
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape(), dtype(), device);
  t.copy_(*this);
  return t;
}

Tensor Tensor::reshape(const Shape& s) const {
  return sprig::reshape(*this, s);
}
Tensor Tensor::flatten(int64_t start_dim) const {
  return sprig::flatten(*this, start_dim);
}

Tensor& Tensor::set_requires_grad(bool on) {
  SPRIG_CHECK(!on || dtype() == DType::F32, "only float32 tensors can require grad, got ",
              dtype_name(dtype()));
  SPRIG_CHECK(is_leaf(), "set_requires_grad on a non-leaf tensor");
  checked()->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& g = checked()->grad;
  return g ? Tensor(g) : Tensor();
}

void Tensor::retain_grad() {
  SPRIG_CHECK(requires_grad(), "retain_grad on a tensor that does not require grad");
  checked()->retain_grad = true;
}

void Tensor::zero_grad() {
  if (checked()->grad) Tensor(impl_->grad).zero_();
}

void Tensor::clear_grad() {
  checked()->grad = nullptr;
}

std::string Tensor::str() const {
  if (!impl_) return "Tensor(undefined)";
  return "Tensor(" + to_string(shape()) + ", " + dtype_name(dtype()) + ", " + device().str() + ")";
}

}  // namespace sprig
