// libFuzzer target: the safetensors reader (engine/safetensors.h) on arbitrary bytes. A file
// that loads must describe tensors whose bytes fill the data section exactly; every tensor is
// read in full (so ASan sees any short buffer). Expected failures are sprig::Error. The same
// bytes also go through load_safetensors' skip_suffixes path.
#include <cstdlib>
#include <cstring>

#include "kernels/error.h"
#include "engine/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sprig::fuzz::ReleaseCache release;
  static sprig::fuzz::MemFile file;
  const std::string& path = file.write(data, size);
  // Skipping every tensor (the empty suffix ends every name) reads no data but validates the
  // same header, and also accepts dtypes sprig cannot hold: it must never fail where the full
  // load succeeds, and must list every tensor.
  sprig::TensorFile skipped_all;
  bool skip_ok = true;
  try {
    skipped_all = sprig::load_safetensors(path, {""});
  } catch (const sprig::Error&) {
    skip_ok = false;
  }
  if (skip_ok && !skipped_all.tensors.empty()) std::abort();
  sprig::TensorFile f;
  try {
    f = sprig::load_safetensors(path);
  } catch (const sprig::Error&) {
    return 0;
  }
  if (!skip_ok || skipped_all.skipped.size() != f.tensors.size()) std::abort();
  // Header length + header + data: the tensors cover the data section, nothing more or less.
  if (size < 8) std::abort();
  uint64_t header = 0;
  std::memcpy(&header, data, 8);  // little-endian host (safetensors.cpp checks)
  uint64_t total = 0;
  unsigned checksum = 0;
  for (auto& [name, t] : f.tensors) {
    if (name == "__metadata__" || !t.defined()) std::abort();
    total += uint64_t(t.nbytes());
    // Every byte of the tensor, whatever its dtype.
    const uint8_t* p = static_cast<const uint8_t*>(t.impl()->storage->data()) +
                       t.impl()->offset * sprig::dtype_size(t.dtype());
    for (size_t i = 0; i < t.nbytes(); ++i) checksum += p[i];
    if (f.find(name) == nullptr) std::abort();
  }
  if (8 + header + total != size) std::abort();
  try {
    (void)f.at("no such tensor \xff");
    std::abort();  // absent names must throw
  } catch (const sprig::Error&) {
  }
  return checksum == 0xdeadbeef ? 1 : 0;  // keep the reads from being optimised away
}
