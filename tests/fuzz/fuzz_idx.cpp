// libFuzzer target: the IDX reader (datasets/idx.h) on arbitrary bytes. Each input is read as
// it is (raw IDX, or gzip when it starts with 1f 8b); an input that is not gzip is also
// gzip-compressed and read again, which must give the same array or the same kind of failure.
// Expected failures are sprig::Error; anything else aborts the run.
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "datasets/idx.h"
#include "kernels/error.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using sprig::data::IdxArray;

// The array, or nullopt when read_idx rejected the file with sprig::Error.
std::optional<IdxArray> read(sprig::fuzz::MemFile& file, const void* data, size_t size) {
  try {
    IdxArray a = sprig::data::read_idx(file.write(data, size));
    // A successful read is consistent and converts; the tensor has every element.
    size_t bytes = size_t(a.numel()) * sprig::data::idx_type_size(a.type);
    if (a.dims.empty() || a.dims.size() > 4 || a.data.size() != bytes) std::abort();
    sprig::Tensor t = sprig::data::idx_to_tensor(a);
    if (t.numel() != a.numel()) std::abort();
    return a;
  } catch (const sprig::Error&) {
    return std::nullopt;
  }
}

std::vector<uint8_t> gzip(const uint8_t* data, size_t size) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<uint8_t> out(deflateBound(&zs, uLong(size)));  // (compressed bytes)
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = uInt(size);
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sprig::fuzz::ReleaseCache release;
  static sprig::fuzz::MemFile file;
  std::optional<IdxArray> raw = read(file, data, size);
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) return 0;
  // An empty input compresses to a valid gzip stream of nothing, which is an error too.
  std::vector<uint8_t> z = gzip(data, size);
  std::optional<IdxArray> unzipped = read(file, z.data(), z.size());
  if (raw.has_value() != unzipped.has_value()) std::abort();
  if (raw &&
      (raw->dims != unzipped->dims || raw->type != unzipped->type || raw->data != unzipped->data))
    std::abort();
  return 0;
}
