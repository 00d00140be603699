#pragma once
// Sparse packing: turn a pruned (masked or zeroed) model into an inference model in which each
// conv / linear layer runs as one of
//   dense         the layer as it is (the normal module forward)
//   shrunk-dense  dense, after prune::shrink removed its zeroed outputs / inputs
//   csr           compressed sparse rows (16-bit column indices when they fit); linear and conv
//   bsr RxC       block sparse rows; linear only, when the zeros form RxC blocks
//   nm N:M        at most N nonzeros in every M consecutive weights of a row; linear only
// The plan (`PackFormat::Auto`) measures each candidate kernel for the layer's real shape at the
// given batch on this machine and keeps the fastest, recording the times and why.
//
// Packed model files are safetensors (engine/safetensors.h); see save_packed for the layout.
#include <cstddef>  // size_t, which kernels/cpu/sparse.h uses
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/sparse_weight.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/conv_int8.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/sparse_int8.h"
#include "nn/model.h"

namespace sprig::infer {

inline constexpr const char* kPackedFormat = "sprig-packed-1";

enum class PackFormat { Auto, Dense, Csr, Bsr, Nm };
inline constexpr PackFormat kPackFormats[] = {PackFormat::Auto, PackFormat::Dense, PackFormat::Csr,
                                              PackFormat::Bsr, PackFormat::Nm};
PackFormat parse_pack_format(const std::string& s);  // auto|dense|csr|bsr|nm
const char* pack_format_name(PackFormat f);

struct PackOptions {
  PackFormat format = PackFormat::Auto;
  int64_t batch = 1;  // the batch size the auto plan measures at
  int repeats = 5;    // timed samples per candidate (after a warm-up); the median is kept
  // Shrink a copy of the model first (prune::shrink): layers lose their zeroed outputs and
  // inputs, and every later choice is made on the smaller shapes.
  bool shrink = true;
  // BSR block for --format bsr when the zeros show no block pattern of their own.
  int64_t block_rows = 1, block_cols = 4;
  uint64_t seed = 0;  // random inputs for the measurements
};

struct CandidateTime {
  std::string format;  // "dense", "csr", "bsr 1x4", "nm 2:4"
  double ms = 0.0;     // median time of one layer forward at the plan's batch
};

// A layer quantised to int8 (sprig quantize, infer/quantize.h): its input is quantised per
// tensor to uint8, its weight per output channel to int8, and the int32 sums are dequantised
// with the bias (and a ReLU that follows) fused. Kind (PackedLayer::kind) Dense runs gemm_u8s8 /
// conv2d_u8s8 on `dense`, or conv2d_u8s8_direct on `direct` (no im2col, the dequantisation in its
// stores); linear layers may also run sparse: kind Bsr on `bsr` (1 x 4 or 4 x 4 blocks), kind Csr
// on `csr` (kernels/cpu/sparse_int8.h).
struct Int8Weights {
  cpu::ActivationQuant input;    // of the layer's input, from calibration
  std::vector<float> scales;     // (rows) per-output-channel weight scales
  std::vector<int8_t> weight;    // (rows, cols) the int8 weight, kept for files and checks
  cpu::PackedInt8Weights dense;  // kind Dense: gemm_u8s8, or conv2d_u8s8 where `direct` is empty
  cpu::DirectConvInt8Weights direct;  // kind Dense conv where conv2d_u8s8_direct suits the shape
  cpu::BsrInt8 bsr;                   // kind Bsr
  cpu::CsrInt8 csr;                   // kind Csr
};

struct PackedLayer {
  std::string name;  // the layer's path in the model, "0" or "layer1.0.conv1" (named_modules)
  size_t index = 0;  // its position among the model's conv / linear layers
  nn::Module* module = nullptr;  // the layer in InferenceModel::model
  bool conv = false;
  PackFormat kind = PackFormat::Dense;  // never Auto: what the plan chose
  // Kind Csr: which of its device's CSR kernels runs it (Backend::csr_kernels: the CPU has one,
  // a GPU cusparse, rowsplit and coltile).
  int kernel = 0;
  bool shrunk = false;         // shrink changed this layer's shape
  int64_t rows = 0, cols = 0;  // the weight as 2-D (out, in * kh * kw), after any shrink
  int64_t rows_before = 0, cols_before = 0;  // before shrink
  int64_t nonzero = 0;                       // nonzero weights
  Shape in_shape;                            // per-sample input shape of the layer
  // Kinds Csr, Bsr and Nm: the packed weight, on the CPU (a GPU model uploads its own copy).
  SparseWeight sparse;
  // A dense Linear's W^T (cols, rows) in gemm's panels, packed once (cpu::gemm would pack it on
  // every call); empty panels for every other layer. Where gemm takes dot products (batch 1-8,
  // few outputs), W is read as stored instead.
  cpu::GemmPackedB weight_packed;
  // A dense conv's kernel (cpu::conv2d_forward_kernel at in_shape, Auto for every other layer)
  // and its weight packed once for that kernel (cpu::conv2d_forward_pack): the direct kernel's
  // order or Winograd's transformed filters; empty for im2col + gemm, which reads the weight.
  cpu::ConvForward conv_kernel = cpu::ConvForward::Auto;
  std::vector<float> conv_packed_w;
  // A CSR conv layer's cpu::csr_conv2d_offsets at in_shape, made once (set_kernel_arrays):
  // I32 (nnz), SparseOptions::conv_offsets.
  Tensor conv_offsets;
  std::shared_ptr<const Int8Weights> int8;  // set for an int8 layer (kinds Dense, Csr, Bsr)
  std::vector<CandidateTime> times;         // measured candidates (auto plans only)
  std::string reason;                       // why this kind, for `sprig plan`

  double sparsity() const {
    return rows * cols > 0 ? 1.0 - double(nonzero) / double(rows * cols) : 0.0;
  }
  // "dense", "shrunk-dense", "csr", "bsr 1x4", "nm 2:4", "int8 dense", "int8 csr",
  // "int8 bsr 1x4", "int8 bsr 4x4"; a CSR layer on a GPU gives its kernel's name ("cusparse",
  // "rowsplit", "coltile").
  std::string format() const;
  size_t weight_bytes() const;  // bytes of the weight in its format (dense: 4 per weight)
};

struct InferenceModel {
  // The dense equivalent, in eval mode (shrunk when shrink removed something, BatchNorms folded
  // into the conv / linear before them by fold_batchnorm): its non-weighted layers (relu, pool,
  // flatten, ...) and dense layers run as they are; its weights of packed layers are kept
  // (unpacked on load) so the model can always be checked against the packed kernels. Blocks
  // (seq, res) are walked into: a residual block runs its branches and adds them.
  nn::Model model;
  std::string source_spec;          // the spec before shrink
  int64_t source_params = 0;        // parameters before shrink
  int64_t batch = 1;                // the batch the plan measured at
  std::vector<PackedLayer> layers;  // one per conv / linear layer, in named_modules order
  // The forward's schedule, chosen by the plan, which timed each candidate on the whole model
  // (schedule_reason says what it saw; empty when there was no choice to make):
  // split_samples: from 16 samples a thread, each thread runs the model on its share of the
  // samples, its kernels on that thread alone; false: the calling thread runs the model and
  // each kernel splits its own work (panel-based sparse kernels keep 64-sample panels whole).
  // micro_batch: samples run through the model at a time (0: each share at once); the pieces
  // are claimed by the threads as they come free (by the calling thread alone when the samples
  // are not split).
  bool split_samples = true;
  int64_t micro_batch = 0;
  std::string schedule_reason;

  // x (N, input_shape...) -> the model's output (N, ...), without recording autograd.
  Tensor forward(const Tensor& x) const;
  // forward, calling observe(layer, its input) before each conv / linear layer runs (the
  // input may be held transposed, (features, N), between chained CSR layers): calibration.
  using Observer = std::function<void(const PackedLayer&, const Tensor&)>;
  Tensor forward_observed(const Tensor& x, const Observer& observe) const;
  int64_t nonzero() const;  // nonzero weights plus biases of the packed model
};

// Builds the inference model from model (which is not changed). Forced formats apply to every
// conv / linear layer where they can: bsr and nm have no conv kernel and nm needs groups that
// qualify, and such layers fall back to csr, saying so in their reason.
InferenceModel pack_model(const nn::Model& model, const PackOptions& opt = {});

// The packed model file, safetensors with, per conv / linear layer <i> (its path, "0" or
// "layer1.0.conv1"):
//   dense:  "<i>.weight" F32 (its full shape, as in checkpoints)
//   csr:    "<i>.weight.csr.values" F32 (nnz), "<i>.weight.csr.row_ptr" I32 (rows + 1),
//           "<i>.weight.csr.col" U8 (2 * nnz: little-endian uint16) when cols <= 65536,
//           else I32 (nnz)
//   bsr:    "<i>.weight.bsr.values" F32 (nblocks, br, bc), "<i>.weight.bsr.block_col" I32
//           (nblocks), "<i>.weight.bsr.block_row_ptr" I32 (ceil(rows / br) + 1)
//   nm:     "<i>.weight.nm.values" F32 (rows, ceil(cols / m), n), "<i>.weight.nm.index" U8
//           (same shape; position within the group)
//   and "<i>.bias" F32 (out) when the layer has one; every other parameter and buffer (a
//   BatchNorm that follows no conv / linear) under its own name.
// __metadata__: format = sprig-packed-1, spec (after shrink and folding), input_shape ("1,28,28"),
// source_spec, source_params, batch, and per layer "pack.<i>" = its format(), "reason.<i>",
// "times.<i>" ("dense=0.4500,csr=0.1200" in ms). `extra` adds keys (e.g. dataset).
// The write is atomic: an existing file survives any failure.
void save_packed(const std::string& path, const InferenceModel& m,
                 const std::map<std::string, std::string>& extra = {});

struct PackedFile {
  InferenceModel model;
  std::map<std::string, std::string> metadata;
};
// Loads and validates everything (dtypes, shapes against the spec, row pointers monotone and
// ending at nnz, indices in range and increasing, N:M positions inside their group), so a
// corrupt file gives a sprig::Error naming the file and the tensor, never a bad read.
PackedFile load_packed(const std::string& path);

// Sizes of one model three ways: float32 parameters, the dense safetensors file of those
// parameters (no masks) and its zlib-compressed size (compress2 at the default level 6, what
// zip measures), and the packed file.
struct SizeReport {
  int64_t dense_bytes = 0;       // 4 x parameters of the unshrunk model
  int64_t dense_file_bytes = 0;  // that dense model as a safetensors file
  int64_t dense_gzip_bytes = 0;  // the dense file compressed
  int64_t packed_bytes = 0;      // the packed file on disk
  double ratio() const { return dense_file_bytes ? double(packed_bytes) / dense_file_bytes : 0; }
};
SizeReport size_report(const nn::Model& dense, const std::string& packed_path);

// Median milliseconds of fn over `repeats` samples after one warm-up call. Fast calls are
// repeated inside a sample (so each sample lasts about 0.2 ms at least, 1 ms on a GPU) and
// divided back. When fn queues work on a GPU (device), each sample waits for it before and
// after, so the samples time the GPU's work, not its queueing.
double time_median_ms(const std::function<void()>& fn, int repeats, Device device = Device::cpu());

// ---- Inference on the GPU (infer/pack_cuda.cpp) -----------------------------------------------
// The same executor as the CPU's (infer/executor.h) runs a copy of the packed model on the GPU:
// blocks and residual adds as on the CPU, every module other than conv / linear as itself on GPU
// tensors. Each linear layer runs as one of
//   dense     cuBLAS (kernels/cuda/gemm.cuh) + bias
//   cusparse  cusparseSpMM on the CSR weight (kernels/cuda/sparse.cuh)
//   rowsplit  sprig's row-split CSR SpMM (best at high sparsity or small batches)
//   coltile   sprig's column-tiled CSR SpMM (x tiles in shared memory; large batches)
// A ReLU after a linear / conv layer is fused into it, and consecutive rowsplit / coltile
// linear layers keep their activations transposed (features, N) in between. Conv layers run
// dense (kernels/cuda/conv.cuh) or as im2col + rowsplit / coltile (cuda::csr_conv2d); cuSPARSE
// is for linear layers only. BSR / N:M layers of a packed file have no GPU kernel: their
// weights are re-packed as CSR. Everything here throws sprig::Error when this build has no
// CUDA backend or the machine no usable GPU.

// "NVIDIA H100 80GB HBM3 (sm_90)" for the GPU sprig runs on, or throws saying why there is none.
std::string cuda_device_description();

struct CudaPlanOptions {
  // auto: measure the kernels per layer (linear: four, conv: three) and keep the fastest;
  // dense: every layer dense; csr (also bsr, nm): every layer on its fastest CSR kernel.
  PackFormat format = PackFormat::Auto;
  int64_t batch = 1;  // the batch the candidates are measured at
  int repeats = 5;    // timed samples per candidate (median)
  uint64_t seed = 0;  // random inputs for the measurements
  // "dense", "cusparse", "rowsplit" or "coltile": every linear layer on it, unmeasured (tests).
  std::string force_kernel;
  int device = 0;  // CUDA device index
};

// An InferenceModel's layers uploaded to the GPU with a kernel chosen per layer.
class CudaInferenceModel {
 public:
  // Uploads the weights of m.model (dense, unpacked) and plans; m is not kept.
  explicit CudaInferenceModel(const InferenceModel& m, const CudaPlanOptions& opt = {});
  ~CudaInferenceModel();
  CudaInferenceModel(CudaInferenceModel&&) noexcept;
  CudaInferenceModel& operator=(CudaInferenceModel&&) noexcept;

  // x (N, input_shape...) on the CPU (copied in) or on the model's GPU (read in place) -> the
  // model's output (N, ...) on the CPU.
  Tensor forward(const Tensor& x) const;
  // Median ms of one forward at batch n on random input already on the GPU (no copies).
  double time_forward_ms(int64_t n, int repeats, uint64_t seed = 0) const;
  // Its layers as planned for the GPU: kind Dense or Csr (on PackedLayer::kernel, whose name
  // format() gives), int8 layers as packed; times and reason the GPU plan's.
  const std::vector<PackedLayer>& layers() const;
  const std::string& device() const;  // cuda_device_description()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One random W (rows, cols) with about `sparsity` of its weights zero, and a bias, timed on the
// GPU for each batch: cuBLAS dense, cusparseSpMM and sprig's two kernels (medians in ms, each
// with the bias), and the largest difference of each sparse output from the dense one,
// relative to the largest dense output.
struct CudaSpmmTiming {
  int64_t rows = 0, cols = 0, batch = 0, nnz = 0;
  double sparsity = 0.0;  // the real fraction of zeros
  double dense_ms = 0.0, cusparse_ms = 0.0, rowsplit_ms = 0.0, coltile_ms = 0.0;
  double cusparse_rel_diff = 0.0, rowsplit_rel_diff = 0.0, coltile_rel_diff = 0.0;
};
std::vector<CudaSpmmTiming> time_csr_linear_cuda(int64_t rows, int64_t cols, double sparsity,
                                                 const std::vector<int64_t>& batches, int repeats,
                                                 uint64_t seed = 0);

}  // namespace sprig::infer
