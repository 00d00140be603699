#pragma once
// safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON describing each tensor (dtype, shape, byte range), then the
// raw little-endian data. Checkpoints use this format so Python's safetensors and numpy can read
// them. Supported dtypes: F32, I32, U8, U16 (sprig's DType::F32/I32/U8/U16).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace sprig {

// A tensor load_safetensors was asked to leave out (see skip_suffixes): checked, not read.
struct SkippedTensor {
  std::string name, dtype;  // dtype as safetensors spells it ("I64")
  Shape shape;
};

struct TensorFile {
  // In header order. For files sprig wrote that is the order given to save_safetensors.
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;  // the "__metadata__" object
  std::string path;                             // where it was loaded from, for messages
  std::vector<SkippedTensor> skipped;           // in header order

  const Tensor* find(const std::string& name) const;  // nullptr when absent
  const Tensor& at(const std::string& name) const;    // throws sprig::Error when absent
};

// Writes the tensors (CPU, any of F32/I32/U8, views allowed) and the metadata to path.
// The write is atomic: data go to "<path>.tmp.<pid>" in the same directory, are fsync'ed, and
// the temp file is renamed over path. On any failure the temp file is removed, an existing
// file at path is left untouched, and sprig::Error names the path and the reason.
// Names must be non-empty, unique and not "__metadata__". In the data section 4-byte dtypes
// come before U8 tensors (as the reference implementation orders by alignment), so every
// tensor's data is aligned to its element size; the header keeps the given order.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a whole file into new CPU tensors. Everything is validated before any data is read:
// a malformed, truncated or inconsistent file raises sprig::Error naming the file and the
// problem; nothing is read out of bounds.
TensorFile load_safetensors(const std::string& path);
// The same, but a tensor whose name ends with one of skip_suffixes may have any dtype the
// safetensors format defines (I64, F16, ...); it is validated like the others and listed in
// `skipped` instead of being read. For state we do not keep, such as PyTorch's BatchNorm
// "num_batches_tracked" (I64).
TensorFile load_safetensors(const std::string& path, const std::vector<std::string>& skip_suffixes);

}  // namespace sprig
