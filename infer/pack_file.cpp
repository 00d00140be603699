// Packed model files (layout in infer/pack.h) and the size report. Loading trusts nothing:
// every index is checked before a kernel or csr_to_dense could read with it.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "engine/safetensors.h"
#include "infer/pack.h"
#include "infer/pack_internal.h"

namespace sprig::infer {

namespace {

std::string shape_csv(const Shape& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out;
}

// Non-negative integer of a whole string, or -1.
int64_t parse_count(const std::string& s) {
  if (s.empty() || s.size() > 18) return -1;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

Tensor i32_tensor(const std::vector<int64_t>& v, const std::string& what) {
  Tensor t = Tensor::empty({int64_t(v.size())}, DType::I32);
  int32_t* d = t.data_as<int32_t>();
  for (size_t i = 0; i < v.size(); ++i) {
    SPRIG_CHECK(v[i] >= 0 && v[i] <= INT32_MAX, "save_packed: ", what, " value ", v[i],
                " does not fit int32");
    d[i] = int32_t(v[i]);
  }
  return t;
}

template <typename T>
Tensor copy_tensor(const std::vector<T>& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DTypeOf<T>::value);
  std::copy(v.begin(), v.end(), t.data_as<T>());
  return t;
}

// CSR column indices: uint16 as little-endian byte pairs (U8, 2 * nnz; safetensors has no U16
// in sprig) when the matrix has at most 65536 columns, else I32 (nnz).
template <typename T>
Tensor col_tensor(const std::vector<T>& col, bool narrow) {
  if (!narrow) {
    Tensor t = Tensor::empty({int64_t(col.size())}, DType::I32);
    std::copy(col.begin(), col.end(), t.data_as<int32_t>());
    return t;
  }
  Tensor t = Tensor::empty({2 * int64_t(col.size())}, DType::U8);
  uint8_t* b = t.data_as<uint8_t>();
  for (size_t i = 0; i < col.size(); ++i) {
    b[2 * i] = uint8_t(col[i] & 0xff);
    b[2 * i + 1] = uint8_t((col[i] >> 8) & 0xff);
  }
  return t;
}

// An int8 layer's tensors: its int8 weight as two's-complement bytes, dense or as CSR, whichever
// is smaller; its per-channel scales; its input's scale and zero point.
void add_int8(std::vector<std::pair<std::string, Tensor>>& tensors, const PackedLayer& p) {
  const Int8Weights& q = *p.int8;
  const std::string w = p.name + ".weight";
  std::vector<int64_t> row_ptr{0};
  std::vector<int32_t> col;
  std::vector<int8_t> values;
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t c = 0; c < p.cols; ++c)
      if (int8_t v = q.weight[size_t(r * p.cols + c)]) {
        values.push_back(v);
        col.push_back(int32_t(c));
      }
    row_ptr.push_back(int64_t(values.size()));
  }
  const bool narrow = p.cols <= 65536;
  const int64_t nnz = int64_t(values.size());
  if (nnz * (narrow ? 3 : 5) + 4 * (p.rows + 1) < p.rows * p.cols) {
    Tensor v = Tensor::empty({nnz}, DType::U8);
    std::memcpy(v.data_as<uint8_t>(), values.data(), values.size());
    tensors.push_back({w + ".int8.values", v});
    tensors.push_back({w + ".int8.row_ptr", i32_tensor(row_ptr, w + ".int8.row_ptr")});
    tensors.push_back({w + ".int8.col", col_tensor(col, narrow)});
  } else {
    Tensor v = Tensor::empty({p.rows, p.cols}, DType::U8);
    std::memcpy(v.data_as<uint8_t>(), q.weight.data(), q.weight.size());
    tensors.push_back({w + ".int8", v});
  }
  tensors.push_back({w + ".int8.scale", copy_tensor(q.scales, {p.rows})});
  tensors.push_back({p.name + ".input.scale", copy_tensor(std::vector<float>{q.input.scale}, {1})});
  tensors.push_back({p.name + ".input.zero", copy_tensor(std::vector<int32_t>{q.input.zero}, {1})});
}

}  // namespace

void save_packed(const std::string& path, const InferenceModel& m,
                 const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> meta = extra;
  meta["format"] = kPackedFormat;
  meta["spec"] = m.model.spec;
  meta["input_shape"] = shape_csv(m.model.input_shape);
  meta["source_spec"] = m.source_spec;
  meta["source_params"] = std::to_string(m.source_params);
  meta["batch"] = std::to_string(m.batch);
  meta["micro_batch"] = std::to_string(m.micro_batch);
  meta["split_samples"] = m.split_samples ? "1" : "0";
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, buffer] : m.model.named_buffers()) tensors.push_back({name, buffer->detach()});
  for (auto& [name, param] : m.model.named_parameters()) {
    // A conv / linear layer's weight is "<name>.weight"; a packed layer replaces it.
    const PackedLayer* p = nullptr;
    for (auto& l : m.layers)
      if (name == l.name + ".weight") p = &l;
    if (p && p->int8) {
      add_int8(tensors, *p);
      continue;
    }
    if (!p || p->kind == PackFormat::Dense) {
      tensors.push_back({name, param->value.detach()});
      continue;
    }
    const std::string w = name;
    const SparseWeight& a = p->sparse;  // on the CPU
    if (p->kind == PackFormat::Csr) {
      tensors.push_back({w + ".csr.values", a.values});
      tensors.push_back({w + ".csr.row_ptr", a.pointers});
      if (a.indices.dtype() == DType::U16) {
        const uint16_t* c = a.indices.data_as<uint16_t>();
        tensors.push_back(
            {w + ".csr.col", col_tensor(std::vector<uint16_t>(c, c + a.indices.numel()), true)});
      } else {
        tensors.push_back({w + ".csr.col", a.indices});
      }
    } else if (p->kind == PackFormat::Bsr) {
      tensors.push_back({w + ".bsr.values", a.values});
      tensors.push_back({w + ".bsr.block_col", a.indices});
      tensors.push_back({w + ".bsr.block_row_ptr", a.pointers});
    } else {
      tensors.push_back({w + ".nm.values", a.values});
      tensors.push_back({w + ".nm.index", a.indices});
    }
  }
  for (auto& l : m.layers) {
    meta["pack." + l.name] = l.format();
    meta["reason." + l.name] = l.reason;
    std::string times;
    for (auto& t : l.times) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%s=%.4f", times.empty() ? "" : ",", t.format.c_str(), t.ms);
      times += buf;
    }
    meta["times." + l.name] = times;
  }
  save_safetensors(path, tensors, meta);
}

namespace {

// Checks of one packed layer against what the spec says its weight is.
struct Loader {
  const TensorFile& file;
  const std::string& path;
  std::set<std::string>* used;

  const Tensor& need(const std::string& name, DType dtype, const Shape& shape) {
    const Tensor* t = file.find(name);
    SPRIG_CHECK(t, path, ": missing tensor '", name, "'");
    SPRIG_CHECK(t->dtype() == dtype && t->shape() == shape, path, ": tensor '", name, "' is ",
                dtype_name(t->dtype()), " ", to_string(t->shape()), " but must be ",
                dtype_name(dtype), " ", to_string(shape));
    check_finite(name, *t);
    used->insert(name);
    return *t;
  }
  // A 1-D tensor of any length; returns the length.
  const Tensor& need_1d(const std::string& name, DType dtype) {
    const Tensor* t = file.find(name);
    SPRIG_CHECK(t, path, ": missing tensor '", name, "'");
    SPRIG_CHECK(t->dtype() == dtype && t->dim() == 1, path, ": tensor '", name, "' is ",
                dtype_name(t->dtype()), " ", to_string(t->shape()), " but must be 1-D ",
                dtype_name(dtype));
    check_finite(name, *t);
    used->insert(name);
    return *t;
  }
  // NaN or infinite weights would only surface as NaN accuracy; refuse them here.
  void check_finite(const std::string& name, const Tensor& t) {
    if (t.dtype() != DType::F32) return;
    const float* v = t.data_as<float>();
    for (int64_t i = 0; i < t.numel(); ++i)
      SPRIG_CHECK(std::isfinite(v[i]), path, ": tensor '", name, "' holds ", v[i], " at element ",
                  i, " (weights must be finite)");
  }
  // row_ptr (n + 1) starts at 0, never decreases and ends at total.
  std::vector<int32_t> row_ptr(const std::string& name, int64_t n, int64_t total) {
    const Tensor& t = need(name, DType::I32, {n + 1});
    const int32_t* d = t.data_as<int32_t>();
    SPRIG_CHECK(d[0] == 0, path, ": tensor '", name, "' must start at 0, starts at ", d[0]);
    for (int64_t i = 0; i < n; ++i)
      SPRIG_CHECK(d[i + 1] >= d[i], path, ": tensor '", name, "' is not monotone at row ", i, " (",
                  d[i], " then ", d[i + 1], ")");
    SPRIG_CHECK(d[n] == total, path, ": tensor '", name, "' ends at ", d[n], " but there are ",
                total, " stored entries");
    return std::vector<int32_t>(d, d + n + 1);
  }
  // The column indices of a CSR matrix with `cols` columns whose row pointers are ptr, stored by
  // col_tensor (U8 byte pairs up to 65536 columns, else I32), checked.
  std::vector<int64_t> csr_cols(const std::string& name, const std::vector<int32_t>& ptr,
                                int64_t cols) {
    const int64_t nnz = ptr.back();
    std::vector<int64_t> col(static_cast<size_t>(nnz));
    if (cols <= 65536) {
      const uint8_t* b = need(name, DType::U8, {2 * nnz}).data_as<uint8_t>();
      for (int64_t k = 0; k < nnz; ++k) col[size_t(k)] = b[2 * k] | (b[2 * k + 1] << 8);
    } else {
      const int32_t* c = need(name, DType::I32, {nnz}).data_as<int32_t>();
      std::copy(c, c + nnz, col.begin());
    }
    check_cols(
        name, ptr, [&](int64_t k) { return col[size_t(k)]; }, cols);
    return col;
  }
  // Column indices of each row are increasing and below limit.
  void check_cols(const std::string& name, const std::vector<int32_t>& ptr,
                  const std::function<int64_t(int64_t)>& col, int64_t limit) {
    for (size_t r = 0; r + 1 < ptr.size(); ++r)
      for (int64_t k = ptr[r]; k < ptr[r + 1]; ++k) {
        int64_t c = col(k);
        SPRIG_CHECK(c >= 0 && c < limit, path, ": tensor '", name, "' has index ", c,
                    " out of range [0, ", limit, ") at entry ", k);
        SPRIG_CHECK(k == ptr[r] || c > col(k - 1), path, ": tensor '", name,
                    "' indices are not increasing in row ", r, " at entry ", k);
      }
  }
};

std::pair<int64_t, int64_t> parse_pair(const std::string& s, char sep) {
  size_t at = s.find(sep);
  if (at == std::string::npos) return {-1, -1};
  return {parse_count(s.substr(0, at)), parse_count(s.substr(at + 1))};
}

std::vector<CandidateTime> parse_times(const std::string& path, const std::string& key,
                                       const std::string& s) {
  std::vector<CandidateTime> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    size_t eq = part.find('=');
    double ms = -1;
    try {
      size_t used = 0;
      if (eq != std::string::npos) ms = std::stod(part.substr(eq + 1), &used);
      if (used != part.size() - eq - 1) ms = -1;
    } catch (...) {
    }
    SPRIG_CHECK(eq != std::string::npos && std::isfinite(ms) && ms >= 0, path, ": metadata '", key,
                "' entry '", part, "' is not FORMAT=MS");
    out.push_back({part.substr(0, eq), ms});
  }
  return out;
}

}  // namespace

PackedFile load_packed(const std::string& path) {
  TensorFile file = load_safetensors(path);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = file.metadata.find(key);
    SPRIG_CHECK(it != file.metadata.end(), path, ": not a sprig packed model (no '", key,
                "' in the safetensors metadata)");
    return it->second;
  };
  SPRIG_CHECK(meta("format") == kPackedFormat, path, ": format '", meta("format"),
              "' is not a packed model (expected ", kPackedFormat, ")");
  Shape input_shape;
  {
    std::stringstream ss(meta("input_shape"));
    std::string part;
    while (std::getline(ss, part, ',')) {
      int64_t v = parse_count(part);
      SPRIG_CHECK(v > 0, path, ": metadata input_shape '", meta("input_shape"),
                  "' is not a list of positive integers");
      input_shape.push_back(v);
    }
    SPRIG_CHECK(!input_shape.empty(), path, ": metadata input_shape is empty");
  }
  PackedFile out;
  InferenceModel& im = out.model;
  try {
    im.model = nn::build_model(meta("spec"), input_shape, 0);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  im.source_spec = meta("source_spec");
  im.source_params = parse_count(meta("source_params"));
  im.batch = parse_count(meta("batch"));
  SPRIG_CHECK(im.source_params >= 0 && im.batch >= 1, path,
              ": metadata source_params / batch are not positive integers");
  if (auto it = file.metadata.find("split_samples"); it != file.metadata.end()) {
    // absent in files older than it: split
    SPRIG_CHECK(it->second == "0" || it->second == "1", path, ": metadata split_samples '",
                it->second, "' is not 0 or 1");
    im.split_samples = it->second == "1";
  }
  if (auto it = file.metadata.find("micro_batch"); it != file.metadata.end()) {
    im.micro_batch = parse_count(it->second);  // absent in files older than it: 0, whole shards
    SPRIG_CHECK(im.micro_batch >= 0, path, ": metadata micro_batch '", it->second,
                "' is not a count");
  }
  out.metadata = file.metadata;

  std::set<std::string> used;
  Loader L{file, path, &used};
  im.model.net->eval();
  auto layers = detail::weighted_layers(im.model);
  for (size_t i = 0; i < layers.size(); ++i) {
    const detail::WeightedLayer& l = layers[i];
    nn::ParameterPtr weight = l.weight(), bias = l.bias();
    {
      PackedLayer p;
      p.name = l.name;
      p.index = i;
      p.module = l.module;
      p.conv = l.conv != nullptr;
      p.rows = p.rows_before = weight->value.size(0);
      p.cols = p.cols_before = weight->value.numel() / p.rows;
      p.in_shape = l.in_shape;
      const std::string w = p.name + ".weight", fkey = "pack." + p.name;
      const std::string& f = meta(fkey);
      float* dense = weight->value.data();  // (rows, cols), unpacked into for the dense model
      if (f == "dense" || f == "shrunk-dense") {
        p.kind = PackFormat::Dense;
        p.shrunk = f == "shrunk-dense";
        weight->value.copy_(L.need(w, DType::F32, weight->value.shape()));
        detail::set_kernel_arrays(p, dense);
      } else if (f == "csr") {
        p.kind = PackFormat::Csr;
        cpu::CsrMatrix a;
        a.rows = p.rows;
        a.cols = p.cols;
        const Tensor& values = L.need_1d(w + ".csr.values", DType::F32);
        int64_t nnz = values.numel();
        SPRIG_CHECK(nnz <= p.rows * p.cols, path, ": tensor '", w, ".csr.values' holds ", nnz,
                    " values but the weight has only ", p.rows * p.cols, " entries");
        a.values.assign(values.data(), values.data() + nnz);
        a.row_ptr = L.row_ptr(w + ".csr.row_ptr", p.rows, nnz);
        const std::vector<int64_t> col = L.csr_cols(w + ".csr.col", a.row_ptr, p.cols);
        if (a.narrow())
          a.col16.assign(col.begin(), col.end());
        else
          a.col32.assign(col.begin(), col.end());
        cpu::csr_to_dense(a, dense);
        p.sparse = sparse_weight(a, weight->value.shape());
        detail::set_kernel_arrays(p, dense);
      } else if (f == "int8 dense" ||
                 (!p.conv && (f == "int8 csr" || f == "int8 bsr 1x4" || f == "int8 bsr 4x4"))) {
        Int8Weights q;
        q.weight.assign(size_t(p.rows * p.cols), 0);  // (rows, cols)
        if (file.find(w + ".int8")) {
          const Tensor& t = L.need(w + ".int8", DType::U8, {p.rows, p.cols});
          std::memcpy(q.weight.data(), t.data_as<uint8_t>(), q.weight.size());
        } else {
          const Tensor& values = L.need_1d(w + ".int8.values", DType::U8);
          const int64_t nnz = values.numel();
          SPRIG_CHECK(nnz <= p.rows * p.cols, path, ": tensor '", w, ".int8.values' holds ", nnz,
                      " values but the weight has only ", p.rows * p.cols, " entries");
          const std::vector<int32_t> ptr = L.row_ptr(w + ".int8.row_ptr", p.rows, nnz);
          const std::vector<int64_t> col = L.csr_cols(w + ".int8.col", ptr, p.cols);
          for (int64_t r = 0; r < p.rows; ++r)
            for (int64_t k = ptr[size_t(r)]; k < ptr[size_t(r + 1)]; ++k)
              q.weight[size_t(r * p.cols + col[size_t(k)])] = int8_t(values.data_as<uint8_t>()[k]);
        }
        const float* scales = L.need(w + ".int8.scale", DType::F32, {p.rows}).data();
        q.scales.assign(scales, scales + p.rows);
        for (int64_t r = 0; r < p.rows; ++r)
          SPRIG_CHECK(q.scales[size_t(r)] > 0, path, ": tensor '", w, ".int8.scale' holds ",
                      q.scales[size_t(r)], " for channel ", r, " (scales must be positive)");
        q.input.scale = L.need(p.name + ".input.scale", DType::F32, {1}).data()[0];
        q.input.zero = L.need(p.name + ".input.zero", DType::I32, {1}).data_as<int32_t>()[0];
        SPRIG_CHECK(q.input.scale > 0 && q.input.zero >= 0 && q.input.zero <= 255, path, ": layer ",
                    p.name, "'s input scale ", q.input.scale, " and zero point ", q.input.zero,
                    " are not a positive scale and a uint8");
        try {
          const PackFormat kind = f == "int8 dense" ? PackFormat::Dense
                                  : f == "int8 csr" ? PackFormat::Csr
                                                    : PackFormat::Bsr;
          detail::set_int8(p, std::move(q), kind, f == "int8 bsr 4x4" ? 4 : 1);
        } catch (const Error& e) {
          throw Error(path + ": " + e.what());
        }
      } else if (f.rfind("bsr ", 0) == 0 && !p.conv) {
        auto [br, bc] = parse_pair(f.substr(4), 'x');
        SPRIG_CHECK(br >= 1 && bc >= 1 && br <= 4096 && bc <= 4096, path, ": metadata '", fkey,
                    "' = '", f, "' is not 'bsr RxC'");
        p.kind = PackFormat::Bsr;
        cpu::BsrMatrix a;
        a.rows = p.rows;
        a.cols = p.cols;
        a.br = br;
        a.bc = bc;
        int64_t brows = (p.rows + br - 1) / br, bcols = (p.cols + bc - 1) / bc;
        const Tensor& bcol = L.need_1d(w + ".bsr.block_col", DType::I32);
        int64_t nb = bcol.numel();
        SPRIG_CHECK(nb <= brows * bcols, path, ": tensor '", w, ".bsr.block_col' holds ", nb,
                    " blocks but the weight has only ", brows * bcols);
        a.block_col.assign(bcol.data_as<int32_t>(), bcol.data_as<int32_t>() + nb);
        const Tensor& values = L.need(w + ".bsr.values", DType::F32, {nb, br, bc});
        a.values.assign(values.data(), values.data() + values.numel());
        a.block_row_ptr = L.row_ptr(w + ".bsr.block_row_ptr", brows, nb);
        L.check_cols(
            w + ".bsr.block_col", a.block_row_ptr, [&](int64_t k) { return a.block_col[k]; },
            bcols);
        // The zero padding of edge blocks must be zero, or the kernels and the dense copy differ.
        for (int64_t r = 0; r < brows; ++r)
          for (int64_t k = a.block_row_ptr[r]; k < a.block_row_ptr[r + 1]; ++k)
            for (int64_t i2 = 0; i2 < br; ++i2)
              for (int64_t j = 0; j < bc; ++j)
                SPRIG_CHECK((r * br + i2 < p.rows && a.block_col[k] * bc + j < p.cols) ||
                                a.values[size_t((k * br + i2) * bc + j)] == 0.0f,
                            path, ": tensor '", w, ".bsr.values' block ", k,
                            " has a nonzero outside the matrix");
        cpu::bsr_to_dense(a, dense);
        p.sparse = sparse_weight(a, weight->value.shape());
      } else if (f.rfind("nm ", 0) == 0 && !p.conv) {
        auto [n, mm] = parse_pair(f.substr(3), ':');
        SPRIG_CHECK(n >= 1 && mm >= n && mm <= 255, path, ": metadata '", fkey, "' = '", f,
                    "' is not 'nm N:M' with 0 < N <= M <= 255");
        p.kind = PackFormat::Nm;
        cpu::NmMatrix a;
        a.rows = p.rows;
        a.cols = p.cols;
        a.n = n;
        a.m = mm;
        int64_t groups = (p.cols + mm - 1) / mm;
        const Tensor& values = L.need(w + ".nm.values", DType::F32, {p.rows, groups, n});
        const Tensor& index = L.need(w + ".nm.index", DType::U8, {p.rows, groups, n});
        a.values.assign(values.data(), values.data() + values.numel());
        a.index.assign(index.data_as<uint8_t>(), index.data_as<uint8_t>() + index.numel());
        // Every position (padding too) lies inside its group, short last group included, so no
        // kernel reads past the row; nonzero values of a group sit at distinct positions.
        for (int64_t r = 0; r < p.rows; ++r)
          for (int64_t g = 0; g < groups; ++g) {
            int64_t len = std::min(mm, p.cols - g * mm);
            uint64_t seen = 0;
            for (int64_t k = 0; k < n; ++k) {
              size_t at = size_t((r * groups + g) * n + k);
              SPRIG_CHECK(a.index[at] < len, path, ": tensor '", w, ".nm.index' has position ",
                          int(a.index[at]), " outside its group of ", len, " (row ", r, ", group ",
                          g, ")");
              if (a.values[at] == 0.0f) continue;
              // Duplicates are tracked for M <= 64 (every N:M sprig prunes to).
              SPRIG_CHECK(mm > 64 || !(seen >> a.index[at] & 1), path, ": tensor '", w,
                          ".nm.index' repeats position ", int(a.index[at]), " in row ", r,
                          ", group ", g);
              if (mm <= 64) seen |= uint64_t(1) << a.index[at];
            }
          }
        cpu::nm_to_dense(a, dense);
        p.sparse = sparse_weight(a, weight->value.shape());
      } else {
        throw Error(path + ": metadata '" + fkey + "' = '" + f + "' is not a format for " +
                    (p.conv ? "a conv" : "a linear") + " layer (dense, shrunk-dense, csr" +
                    (p.conv ? ", int8 dense"
                            : ", bsr RxC, nm N:M, int8 dense, int8 csr, int8 bsr 1x4 or 4x4") +
                    ")");
      }
      if (bias) bias->value.copy_(L.need(p.name + ".bias", DType::F32, bias->value.shape()));
      p.nonzero = weight->count_nonzero();
      auto r = file.metadata.find("reason." + p.name);
      if (r != file.metadata.end()) p.reason = r->second;
      auto t = file.metadata.find("times." + p.name);
      if (t != file.metadata.end()) p.times = parse_times(path, t->first, t->second);
      im.layers.push_back(std::move(p));
    }
  }
  // Everything else (a BatchNorm that follows no conv / linear, ...) is stored as it is.
  std::set<std::string> weighted;
  for (auto& l : layers) weighted.insert({l.name + ".weight", l.name + ".bias"});
  for (auto& [name, param] : im.model.named_parameters())
    if (!weighted.count(name)) param->value.copy_(L.need(name, DType::F32, param->value.shape()));
  for (auto& [name, buffer] : im.model.named_buffers())
    buffer->copy_(L.need(name, DType::F32, buffer->shape()));
  for (auto& [name, t] : file.tensors)
    SPRIG_CHECK(used.count(name), path, ": unexpected tensor '", name,
                "' (not part of packed spec '", im.model.spec, "')");
  for (auto& [key, v] : file.metadata)
    if (key.rfind("pack.", 0) == 0) {
      bool known = false;
      for (auto& l : im.layers) known = known || key == "pack." + l.name;
      SPRIG_CHECK(known, path, ": metadata '", key, "' names no conv / linear layer");
    }
  return out;
}

SizeReport size_report(const nn::Model& dense, const std::string& packed_path) {
  namespace fs = std::filesystem;
  SizeReport r;
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, p] : dense.named_parameters()) {
    tensors.push_back({name, p->value.detach()});
    r.dense_bytes += p->numel() * int64_t(sizeof(float));
  }
  // The dense file is written to the temp directory, read back and compressed in memory.
  fs::path tmp = fs::temp_directory_path() /
                 ("sprig_dense_" + std::to_string(::getpid()) + "_" +
                  std::to_string(reinterpret_cast<uintptr_t>(&r)) + ".safetensors");
  std::string bytes;
  try {
    save_safetensors(tmp.string(), tensors, {{"spec", dense.spec}});
    std::ifstream f(tmp, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  std::error_code ec;
  fs::remove(tmp, ec);
  r.dense_file_bytes = int64_t(bytes.size());
  uLongf zsize = compressBound(uLong(bytes.size()));
  std::vector<Bytef> z(zsize);
  SPRIG_CHECK(compress2(z.data(), &zsize, reinterpret_cast<const Bytef*>(bytes.data()),
                        uLong(bytes.size()), Z_DEFAULT_COMPRESSION) == Z_OK,
              "size report: zlib compress2 failed");
  r.dense_gzip_bytes = int64_t(zsize);
  r.packed_bytes = int64_t(fs::file_size(packed_path, ec));
  SPRIG_CHECK(!ec, "size report: cannot read the size of ", packed_path, ": ", ec.message());
  return r;
}

}  // namespace sprig::infer
