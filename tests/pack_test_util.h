#pragma once
// What the packed-model suites (test_pack.cpp, test_quantize.cpp) share: random inputs, the
// relative difference of two outputs, pruned models, BatchNorms with random statistics, and
// corrupting a packed file. test_cuda_sparse.cpp uses them too.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "infer/pack.h"
#include "nn/model.h"
#include "prune/prune.h"

namespace sprig::test::pack {

inline Tensor random_input(const nn::Model& m, int64_t batch, uint64_t seed) {
  Rng rng(seed);
  Shape s = m.input_shape;
  s.insert(s.begin(), batch);
  return Tensor::uniform(s, -1.0f, 1.0f, rng);
}

// max |a - b| / max |a|: relative to the output's scale, so outputs near 0 do not dominate.
inline double rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  std::vector<float> x = a.to_vector(), y = b.to_vector();
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, double(std::fabs(x[i] - y[i])));
    scale = std::max(scale, double(std::fabs(x[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

inline nn::Model pruned(const std::string& spec, const Shape& in, prune::Granularity g,
                        double amount) {
  nn::Model m = nn::build_model(spec, in, 7);
  prune::PruneSpec ps;
  ps.granularity = g;
  ps.amount = amount;
  ps.block_rows = 2;
  ps.block_cols = 4;
  prune::prune_model(m, ps);
  return m;
}

// Every BatchNorm of m gets random statistics and affine parameters (a fresh one is the
// identity, which would hide a folding bug), and m goes to eval mode.
inline void randomize_batchnorms(nn::Model& m) {
  Rng rng(11);
  for (auto& [name, mod] : m.net->named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(mod)) {
      const int64_t c = bn->num_features;
      bn->weight->value.copy_(Tensor::uniform({c}, 0.5f, 1.5f, rng));
      bn->bias->value.copy_(Tensor::uniform({c}, -0.5f, 0.5f, rng));
      bn->running_mean.copy_(Tensor::uniform({c}, -0.5f, 0.5f, rng));
      bn->running_var.copy_(Tensor::uniform({c}, 0.5f, 2.0f, rng));
    }
  m.net->eval();
}

// Loads path, lets edit change the tensors / metadata, writes it to a new file and expects
// load_packed to throw a sprig::Error containing `expect`.
using Edit = std::function<void(std::vector<std::pair<std::string, Tensor>>&,
                                std::map<std::string, std::string>&)>;
inline void expect_corrupt(const std::string& path, const Edit& edit, const std::string& expect) {
  TensorFile f = load_safetensors(path);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [n, t] : f.tensors) tensors.push_back({n, t.clone()});
  std::map<std::string, std::string> meta = f.metadata;
  edit(tensors, meta);
  std::string bad = path + ".bad.safetensors";
  save_safetensors(bad, tensors, meta);
  CAPTURE(expect);
  try {
    infer::load_packed(bad);
    FAIL("no error");
  } catch (const Error& e) {
    std::string msg = e.what();
    CHECK_MESSAGE(msg.find(expect) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(bad) != std::string::npos, msg);
  }
}

inline Tensor& tensor(std::vector<std::pair<std::string, Tensor>>& ts, const std::string& name) {
  for (auto& [n, t] : ts)
    if (n == name) return t;
  FAIL("no tensor " << name);
  throw 0;
}

}  // namespace sprig::test::pack
