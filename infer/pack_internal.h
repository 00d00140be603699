#pragma once
// Internal to infer/: what the CPU plan (pack.cpp), the packed file (pack_file.cpp) and the GPU
// plan (pack_cuda.cpp) share: the walk over a model's conv / linear layers and text pieces for
// the "why" lines.
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops.h"
#include "infer/pack.h"
#include "nn/model.h"

namespace sprig::infer::detail {

// A conv / linear layer of a model, in named_modules order (blocks walked into), with the
// per-sample shape it receives.
struct WeightedLayer {
  std::string name;  // path, "0" or "layer1.0.conv1"; its weight is "<name>.weight"
  nn::Module* module = nullptr;
  nn::Conv2d* conv = nullptr;  // exactly one of conv / linear is set
  nn::Linear* linear = nullptr;
  Shape in_shape;
  const nn::ParameterPtr& weight() const { return conv ? conv->weight : linear->weight; }
  const nn::ParameterPtr& bias() const { return conv ? conv->bias : linear->bias; }
};
std::vector<WeightedLayer> weighted_layers(const nn::Model& m);

// The convolution conv computes on x (N, C, H, W), after checking that x fits it (the error
// names layer p and says what `what` it is: "packed layer", "int8 layer").
Conv2dShape conv_shape(const PackedLayer& p, const char* what, const nn::Conv2d& conv,
                       const Tensor& x);
// The convolution conv computes on N samples of (in_channels, H, W).
Conv2dShape conv_shape(const nn::Conv2d& conv, int64_t N, int64_t H, int64_t W);

// Packs p (a float layer of `module`, whose weight is `weight`) in opt.format, or for Auto in
// the fastest float format measured at opt.batch; fills p.times and p.reason (pack.cpp).
void choose(PackedLayer& p, nn::Module& module, const nn::Parameter& weight,
            const PackOptions& opt);

// One forward of a sparse layer p (kinds Csr, Bsr, Nm; module m) on its weight's device and its
// kernel: x (N, cols) for linear, (N, C, H, W) for conv, or (cols, N) when opt.x_t; the ReLU,
// a residual (conv) and the transposed layouts (CSR linear) as opt says; a CSR conv at its
// in_shape takes the offsets made for it. Shared by the CPU's and the GPU's runners.
Tensor run_sparse(const PackedLayer& p, nn::Module& m, const Tensor& x, SparseOptions opt);

// One forward of an int8 layer p (module m): x (N, cols) for linear, (N, C, H, W) for conv,
// quantised to uint8 with p.int8->input (or, as a U8 tensor, those codes already), the exact
// int32 product, then dequantised with the bias and, when relu, a ReLU (infer/quantize.cpp).
// With `requantize` the result is instead its uint8 codes under those parameters (the next int8
// layer's input), a U8 tensor, equal bit for bit to quantising the float result.
Tensor run_int8(const PackedLayer& p, nn::Module& m, const Tensor& x, bool relu,
                const cpu::ActivationQuant* requantize = nullptr);
// Whether run_int8 can requantize p's result: int8 linear layers (dense or sparse), and conv
// layers on the direct kernel.
bool can_requantize(const PackedLayer& p);

// Samples [lo, hi) of x (N, ...), a view of its storage.
Tensor sample_rows(const Tensor& x, int64_t lo, int64_t hi);
// Calls fn(shard, lo, xs) for the samples of x (N, ...) as forward runs them: split into one
// shard per thread (xs = samples [lo, ...) of x), each run on its own thread with its kernels on
// that thread alone, when every thread gets enough samples; else x whole, with the kernels on
// the whole team. Returns the number of shards.
int for_each_sample_shard(const Tensor& x,
                          const std::function<void(int shard, int64_t lo, const Tensor& xs)>& fn);
// The shards for_each_sample_shard plans for N samples, called here.
int planned_sample_shards(int64_t N);
// The median ms of fn on the first shard of x while every shard runs it on its own thread
// (time_median_ms), as forward runs a layer: the plan's measurement of a candidate, without
// the fork and join, which forward pays once per model, not once per layer.
double time_median_sharded_ms(const Tensor& x, int repeats,
                              const std::function<void(const Tensor& xs)>& fn);

// Makes p an int8 layer of kind Dense, or for a linear layer Csr or Bsr (blocks of block_rows
// x 4, block_rows 1 or 4), on q's weight and scales: packs the kernel's arrays and writes the
// dequantised weight into p's module (the dense reference).
void set_int8(PackedLayer& p, Int8Weights q, PackFormat kind, int64_t block_rows = 1);

// What p's kernel reads besides its weight, made once for its kind: W^T for a dense Linear
// (whose weight w is (p.rows, p.cols)), the tap offsets for a CSR conv (p.sparse, p.module and
// p.in_shape set); cleared otherwise.
void set_kernel_arrays(PackedLayer& p, const float* w);

// "0.0123" below 0.1 ms, "1.234" above: four significant figures for the plan tables.
inline std::string fmt_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 0.1 ? "%.4f" : "%.3f", ms);
  return buf;
}

// A plan's measurements differ by a few percent from run to run on a shared machine: a
// candidate replaces the default (the smaller weight, whole shards) only when it takes at most
// this fraction of the default's time, i.e. is 5% faster or more.
constexpr double kFasterBeyondNoise = 0.95;

// "csr 0.12 ms < dense 0.45 ms": measured candidate `best` (of two or more) against the next
// fastest; "csr 0.0041 ms, within 5% of dense 0.0040 ms and smaller" where best is not the
// fastest (smallest_within_noise).
inline std::string best_against_runner_up(const std::vector<CandidateTime>& times, size_t best) {
  size_t second = best == 0 ? 1 : 0;
  for (size_t i = 0; i < times.size(); ++i)
    if (i != best && times[i].ms < times[second].ms) second = i;
  const std::string head = times[best].format + " " + fmt_ms(times[best].ms) + " ms";
  const std::string other = times[second].format + " " + fmt_ms(times[second].ms) + " ms";
  if (times[second].ms < times[best].ms) return head + ", within 5% of " + other + " and smaller";
  return head + " < " + other;
}

// The candidate a plan keeps, of times (measured, two or more) storing bytes (the same order):
// within timing noise the smaller weight wins, so the fastest is kept over a candidate that
// stores fewer bytes only when it is 5% faster or more (the schedule's rule too). A pruned
// classifier as fast dense as CSR (cnn2's at batch 1 on AVX2) had made the packed file 4x larger
// or not from one run to the next.
inline size_t smallest_within_noise(const std::vector<CandidateTime>& times,
                                    const std::vector<size_t>& bytes) {
  size_t fastest = 0;
  for (size_t i = 0; i < times.size(); ++i)
    if (times[i].ms < times[fastest].ms) fastest = i;
  size_t best = fastest;
  for (size_t i = 0; i < times.size(); ++i)
    if (bytes[i] < bytes[best] && times[fastest].ms > kFasterBeyondNoise * times[i].ms) best = i;
  return best;
}

// One candidate of a layer's plan: its kind (never Auto), the block (Bsr) or N:M (Nm) shape,
// and for Csr which of the device's CSR kernels (Backend::csr_kernels).
struct Candidate {
  PackFormat kind = PackFormat::Dense;
  std::pair<int64_t, int64_t> shape{0, 0};
  int kernel = 0;
};
// The candidates of a layer on device d, the plan's for both devices: dense (with_dense), CSR on
// each CSR kernel of d's backend, and, where d has their kernels (the CPU), BSR in `block` and
// N:M in `nm` for linear layers whose zeros fit them ({0, 0}: none).
std::vector<Candidate> plan_candidates(Device d, bool with_dense, bool conv,
                                       std::pair<int64_t, int64_t> block,
                                       std::pair<int64_t, int64_t> nm);
// Times every candidate of p, made by make(c), with time() (ms of one forward as it will run),
// into p.times, and leaves p as the one smallest_within_noise keeps (p.weight_bytes() of
// each); returns its index.
size_t pick_candidate(PackedLayer& p, const std::vector<Candidate>& cands,
                      const std::function<void(const Candidate&)>& make,
                      const std::function<double()>& time);

// "92.0%"
inline std::string pct(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * f);
  return buf;
}

}  // namespace sprig::infer::detail
