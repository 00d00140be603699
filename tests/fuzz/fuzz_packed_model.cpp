// libFuzzer target: the packed sparse model reader (infer/pack.h, load_packed) on arbitrary
// bytes. A file that loads must hold layers that pass the kernels' own validators
// (cpu::csr_validate / bsr_validate / nm_validate), and its sparse forward pass on a batch of 2
// must match the dense model it unpacked to, within a float error bound measured on |W| |x|.
// Files whose spec could reach gigabytes are skipped (fuzz_util.h, spec_bound).
// Expected failures are sprig::Error; anything else aborts the run.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "engine/sparse_weight.h"
#include "infer/pack.h"
#include "kernels/error.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// Whether the spec and input shape in the file's metadata are small enough to build.
bool within_budget(const std::string& path, sprig::fuzz::SpecBound* bound) {
  sprig::TensorFile f;
  try {
    f = sprig::load_safetensors(path);
  } catch (const sprig::Error&) {
    return false;  // load_packed fails the same way; fuzz_safetensors covers this reader
  }
  auto spec = f.metadata.find("spec"), shape = f.metadata.find("input_shape");
  if (spec == f.metadata.end() || shape == f.metadata.end()) return true;  // rejected early
  sprig::Shape dims;  // every number in input_shape, capped so the bound cannot overflow
  int64_t v = -1;
  for (char c : shape->second + ",") {
    if (c >= '0' && c <= '9') {
      v = std::min<int64_t>((v < 0 ? 0 : v) * 10 + (c - '0'), int64_t(1) << 40);
    } else if (v >= 0) {
      dims.push_back(v);
      v = -1;
    }
  }
  *bound = sprig::fuzz::spec_bound(spec->second, dims);
  return bound->params <= 4e6 && bound->features <= 4e6;
}

template <typename T>
std::vector<T> values_of(const sprig::Tensor& t) {
  const T* p = t.data_as<T>();
  return std::vector<T>(p, p + t.numel());
}

// The loaded layer's arrays, checked as the kernels need them (cpu::csr_validate and friends).
void validate(const sprig::infer::PackedLayer& l) {
  const sprig::SparseWeight& w = l.sparse;
  try {
    if (l.kind != sprig::infer::PackFormat::Dense && (w.rows() != l.rows || w.cols() != l.cols))
      throw sprig::Error("the sparse weight is not the layer's shape");
    switch (l.kind) {
      case sprig::infer::PackFormat::Csr: {
        sprig::cpu::CsrMatrix a;
        a.rows = w.rows(), a.cols = w.cols();
        a.row_ptr = values_of<int32_t>(w.pointers);
        if (w.indices.dtype() == sprig::DType::U16)
          a.col16 = values_of<uint16_t>(w.indices);
        else
          a.col32 = values_of<int32_t>(w.indices);
        a.values = values_of<float>(w.values);
        sprig::cpu::csr_validate(a);
        break;
      }
      case sprig::infer::PackFormat::Bsr: {
        sprig::cpu::BsrMatrix a;
        a.rows = w.rows(), a.cols = w.cols(), a.br = w.block_rows, a.bc = w.block_cols;
        a.block_row_ptr = values_of<int32_t>(w.pointers);
        a.block_col = values_of<int32_t>(w.indices);
        a.values = values_of<float>(w.values);
        sprig::cpu::bsr_validate(a);
        break;
      }
      case sprig::infer::PackFormat::Nm: {
        sprig::cpu::NmMatrix a;
        a.rows = w.rows(), a.cols = w.cols(), a.n = w.n, a.m = w.m;
        a.values = values_of<float>(w.values);
        a.index = values_of<uint8_t>(w.indices);
        sprig::cpu::nm_validate(a);
        break;
      }
      case sprig::infer::PackFormat::Dense:
      case sprig::infer::PackFormat::Auto:  // never a layer's kind
        break;
    }
  } catch (const sprig::Error& e) {
    std::fprintf(stderr, "load_packed accepted layer %s that the validator rejects: %s\n",
                 l.name.c_str(), e.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sprig::fuzz::ReleaseCache release;
  static sprig::fuzz::MemFile file;
  const std::string& path = file.write(data, size);
  sprig::fuzz::SpecBound bound;
  if (!within_budget(path, &bound)) return 0;
  sprig::infer::PackedFile pf;
  try {
    pf = sprig::infer::load_packed(path);
  } catch (const sprig::Error&) {
    return 0;
  }
  const sprig::infer::InferenceModel& im = pf.model;
  for (const auto& l : im.layers) validate(l);
  if (bound.im2col > 4e6) return 0;

  sprig::NoGradGuard no_grad;
  sprig::Shape shape = im.model.input_shape;
  shape.insert(shape.begin(), 2);
  sprig::Rng rng(3);
  sprig::Tensor x = sprig::Tensor::uniform(shape, -1.0f, 1.0f, rng);
  sprig::Tensor sparse = im.forward(x);
  sprig::Tensor dense = im.model.forward(x);
  if (sparse.shape() != dense.shape()) std::abort();

  // The same network on |W| and |x| bounds every partial sum (ReLU and max-pooling are
  // monotone), so float reordering moves an output by at most a small multiple of it.
  sprig::nn::Model mag = sprig::nn::build_model(im.model.spec, im.model.input_shape, 0);
  auto src = im.model.named_parameters(), dst = mag.named_parameters();
  bool finite = true;
  for (size_t i = 0; i < src.size(); ++i) {
    const float* s = src[i].second->value.data();
    float* d = dst[i].second->value.data();
    for (int64_t k = 0; k < src[i].second->numel(); ++k) {
      d[k] = std::fabs(s[k]);
      finite = finite && d[k] <= 1e12f;
    }
  }
  sprig::Tensor ax = x.detach().clone();
  for (int64_t k = 0; k < ax.numel(); ++k) ax.data()[k] = std::fabs(ax.data()[k]);
  sprig::Tensor scale = mag.forward(ax);
  if (!finite) return 0;
  for (int64_t k = 0; k < dense.numel(); ++k) {
    double a = sparse.data()[k], b = dense.data()[k], s = scale.data()[k];
    if (!std::isfinite(s) || !std::isfinite(a) || !std::isfinite(b)) continue;
    if (std::fabs(a - b) > 1e-4 * s + 1e-30) {
      std::fprintf(stderr, "output %lld: sparse %g, dense %g (bound %g)\n", (long long)k, a, b, s);
      std::abort();
    }
  }
  return 0;
}
