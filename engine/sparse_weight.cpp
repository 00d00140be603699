// SparseWeight: packing into Tensors, views for the kernels, copies between devices.
#include "engine/sparse_weight.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace sprig {

namespace {

// A CPU tensor of `shape` holding v's values.
template <typename T>
Tensor cpu_tensor(const std::vector<T>& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DTypeOf<T>::value);
  SPRIG_CHECK(t.numel() == int64_t(v.size()), "sparse weight: ", v.size(), " values for shape ",
              to_string(shape));
  if (!v.empty()) std::memcpy(t.data_as<T>(), v.data(), v.size() * sizeof(T));
  return t;
}

template <typename T>
std::vector<T> cpu_vector(const Tensor& t) {
  if (!t.defined()) return {};
  const Tensor c = t.to(Device::cpu());
  const T* p = c.data_as<T>();
  return std::vector<T>(p, p + c.numel());
}

Tensor to_device(const Tensor& t, Device d) {
  return t.defined() ? t.to(d) : Tensor();
}

void check_format(const SparseWeight& w, SparseFormat f) {
  SPRIG_CHECK(w.defined() && w.format == f, "sparse weight of shape ", to_string(w.shape), " is ",
              w.defined() ? sparse_format_name(w.format) : "empty", ", not ",
              sparse_format_name(f));
}

// A weight of format f and dense shape `shape`, its arrays still to fill from a rows x cols
// matrix of the packers.
SparseWeight empty_weight(SparseFormat f, const Shape& shape, int64_t rows, int64_t cols) {
  SparseWeight w;
  w.format = f;
  w.shape = shape;
  SPRIG_CHECK(w.rows() == rows && w.cols() == cols, "sparse weight of shape ", to_string(shape),
              " from a ", rows, "x", cols, " ", sparse_format_name(f), " matrix");
  return w;
}

}  // namespace

const char* sparse_format_name(SparseFormat f) {
  switch (f) {
    case SparseFormat::Csr:
      return "csr";
    case SparseFormat::Bsr:
      return "bsr";
    case SparseFormat::Nm:
      return "nm";
  }
  return "?";
}

int64_t SparseWeight::cols() const {
  int64_t c = 1;
  for (size_t i = 1; i < shape.size(); ++i) c *= shape[i];
  return shape.empty() ? 0 : c;
}

int64_t SparseWeight::stored() const {
  return values.defined() ? values.numel() : 0;
}

int64_t SparseWeight::nonzero() const {
  const std::vector<float> v = cpu_vector<float>(values);
  return int64_t(std::count_if(v.begin(), v.end(), [](float x) { return x != 0.0f; }));
}

size_t SparseWeight::bytes() const {
  size_t b = 0;
  for (const Tensor* t : {&values, &pointers, &indices, &row_order})
    if (t->defined()) b += t->nbytes();
  return b;
}

CsrRef SparseWeight::csr() const {
  check_format(*this, SparseFormat::Csr);
  CsrRef r;
  r.rows = rows();
  r.cols = cols();
  r.nnz = values.numel();
  r.row_ptr = pointers.ptr_as<int32_t>();
  if (indices.dtype() == DType::U16)
    r.col16 = indices.ptr_as<uint16_t>();
  else
    r.col32 = indices.ptr_as<int32_t>();
  r.values = values.ptr_as<float>();
  if (row_order.defined()) r.row_order = row_order.ptr_as<int32_t>();
  return r;
}

BsrRef SparseWeight::bsr() const {
  check_format(*this, SparseFormat::Bsr);
  BsrRef r;
  r.rows = rows();
  r.cols = cols();
  r.br = block_rows;
  r.bc = block_cols;
  r.nblocks = indices.numel();
  r.block_row_ptr = pointers.ptr_as<int32_t>();
  r.block_col = indices.ptr_as<int32_t>();
  r.values = values.ptr_as<float>();
  return r;
}

NmRef SparseWeight::nm() const {
  check_format(*this, SparseFormat::Nm);
  NmRef r;
  r.rows = rows();
  r.cols = cols();
  r.n = n;
  r.m = m;
  r.values = values.ptr_as<float>();
  r.index = indices.ptr_as<uint8_t>();
  return r;
}

SparseWeight SparseWeight::to(Device d) const {
  SparseWeight out = *this;
  out.values = to_device(values, d);
  out.pointers = to_device(pointers, d);
  out.row_order = Tensor();
  if (format != SparseFormat::Csr || !defined()) {
    out.indices = to_device(indices, d);
    return out;
  }
  // The column width and the row order are per device; the rest copies as it is.
  const std::vector<int32_t> ptr = cpu_vector<int32_t>(pointers);  // (rows + 1)
  std::vector<int32_t> col(static_cast<size_t>(stored()));         // (nnz)
  if (indices.dtype() == DType::U16) {
    const std::vector<uint16_t> c16 = cpu_vector<uint16_t>(indices);
    std::copy(c16.begin(), c16.end(), col.begin());
  } else {
    col = cpu_vector<int32_t>(indices);
  }
  if (d.is_cpu()) {
    if (cols() <= 65536)
      out.indices = cpu_tensor(std::vector<uint16_t>(col.begin(), col.end()), {stored()});
    else
      out.indices = cpu_tensor(col, {stored()});
    return out;
  }
  std::vector<int32_t> order(static_cast<size_t>(rows()));  // (rows)
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t p, int32_t q) {
    return ptr[size_t(p) + 1] - ptr[size_t(p)] > ptr[size_t(q) + 1] - ptr[size_t(q)];
  });
  out.indices = cpu_tensor(col, {stored()}).to(d);
  out.row_order = cpu_tensor(order, {rows()}).to(d);
  return out;
}

Tensor SparseWeight::to_dense() const {
  Tensor w = Tensor::zeros(shape);
  if (!defined()) return w;
  const SparseWeight c = device().is_cpu() ? *this : to(Device::cpu());
  float* out = w.data_as<float>();
  if (format == SparseFormat::Csr) cpu::csr_to_dense(c.csr(), out);
  if (format == SparseFormat::Bsr) cpu::bsr_to_dense(c.bsr(), out);
  if (format == SparseFormat::Nm) cpu::nm_to_dense(c.nm(), out);
  return w;
}

SparseWeight sparse_weight(const cpu::CsrMatrix& a, const Shape& shape) {
  cpu::csr_validate(a);
  SparseWeight w = empty_weight(SparseFormat::Csr, shape, a.rows, a.cols);
  w.values = cpu_tensor(a.values, {a.nnz()});
  w.pointers = cpu_tensor(a.row_ptr, {a.rows + 1});
  w.indices = a.narrow() ? cpu_tensor(a.col16, {a.nnz()}) : cpu_tensor(a.col32, {a.nnz()});
  return w;
}

SparseWeight sparse_weight(const cpu::BsrMatrix& a, const Shape& shape) {
  cpu::bsr_validate(a);
  SparseWeight w = empty_weight(SparseFormat::Bsr, shape, a.rows, a.cols);
  w.block_rows = a.br;
  w.block_cols = a.bc;
  w.values = cpu_tensor(a.values, {a.nblocks(), a.br, a.bc});
  w.pointers = cpu_tensor(a.block_row_ptr, {int64_t(a.block_row_ptr.size())});
  w.indices = cpu_tensor(a.block_col, {a.nblocks()});
  return w;
}

SparseWeight sparse_weight(const cpu::NmMatrix& a, const Shape& shape) {
  cpu::nm_validate(a);
  SparseWeight w = empty_weight(SparseFormat::Nm, shape, a.rows, a.cols);
  w.n = a.n;
  w.m = a.m;
  const int64_t groups = (a.cols + a.m - 1) / a.m;
  w.values = cpu_tensor(a.values, {a.rows, groups, a.n});
  w.indices = cpu_tensor(a.index, {a.rows, groups, a.n});
  return w;
}

SparseWeight sparse_weight_from_dense(SparseFormat f, const Tensor& w, int64_t block_rows,
                                      int64_t block_cols, int64_t n, int64_t m) {
  SPRIG_CHECK(w.defined() && w.dim() >= 1 && w.dtype() == DType::F32,
              "sparse_weight_from_dense: the weight must be a float32 tensor of 1 dim or more");
  const Tensor c = w.to(Device::cpu());
  const int64_t rows = c.size(0), cols = rows > 0 ? c.numel() / rows : 0;
  const float* p = c.data_as<float>();
  switch (f) {
    case SparseFormat::Csr:
      return sparse_weight(cpu::csr_from_dense(rows, cols, p), c.shape());
    case SparseFormat::Bsr:
      return sparse_weight(cpu::bsr_from_dense(rows, cols, block_rows, block_cols, p), c.shape());
    case SparseFormat::Nm:
      return sparse_weight(cpu::nm_from_dense(rows, cols, n, m, p), c.shape());
  }
  throw Error("sparse_weight_from_dense: unknown format");
}

}  // namespace sprig
