#include "datasets/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace sprig::data {

size_t idx_type_size(IdxType t) {
  switch (t) {
    case IdxType::U8:
      return 1;
    case IdxType::I8:
      return 1;
    case IdxType::I16:
      return 2;
    case IdxType::I32:
      return 4;
    case IdxType::F32:
      return 4;
    case IdxType::F64:
      return 8;
  }
  return 0;
}

const char* idx_type_name(IdxType t) {
  switch (t) {
    case IdxType::U8:
      return "ubyte";
    case IdxType::I8:
      return "byte";
    case IdxType::I16:
      return "short";
    case IdxType::I32:
      return "int";
    case IdxType::F32:
      return "float";
    case IdxType::F64:
      return "double";
  }
  return "?";
}

static bool known_type_code(uint8_t code) {
  return code == 0x08 || code == 0x09 || code == 0x0B || code == 0x0C || code == 0x0D ||
         code == 0x0E;
}

int64_t IdxArray::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

// ---- byte sources ----------------------------------------------------------------------------
// read_idx parses through a ByteSource so that raw and gzip files share one set of checks.
// read() returns fewer than n bytes only at the end of the (decompressed) stream.
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(uint8_t* dst, size_t n) = 0;
};

class RawSource : public ByteSource {
 public:
  RawSource(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  size_t read(uint8_t* dst, size_t n) override {
    size_t got = std::fread(dst, 1, n, f_);
    SPRIG_CHECK(!std::ferror(f_), path_, ": read error (", std::strerror(errno), ")");
    return got;
  }

 private:
  std::FILE* f_;
  const std::string& path_;
};

class GzipSource : public ByteSource {
 public:
  GzipSource(std::FILE* f, const std::string& path) : f_(f), path_(path), in_(1 << 16) {
    std::memset(&zs_, 0, sizeof(zs_));
    // 16 + MAX_WBITS: expect a gzip wrapper and check its CRC and length trailer.
    int rc = inflateInit2(&zs_, 16 + MAX_WBITS);
    SPRIG_CHECK(rc == Z_OK, path_, ": cannot initialise zlib (code ", rc, ")");
  }
  ~GzipSource() override { inflateEnd(&zs_); }

  size_t read(uint8_t* dst, size_t n) override {
    size_t produced = 0;
    while (produced < n) {
      if (zs_.avail_in == 0 && !file_eof_) refill();
      if (member_done_) {
        if (zs_.avail_in == 0 && file_eof_) break;  // clean end of the last gzip member
        if (zs_.avail_in == 0) continue;
        SPRIG_CHECK(zs_.next_in[0] == 0x1f, path_, ": unexpected data after the end of the gzip ",
                    "stream at compressed byte ", consumed(), " (corrupt gzip file?)");
        // Concatenated gzip members decompress to the concatenation, as with gunzip.
        inflateReset(&zs_);
        member_done_ = false;
      }
      // avail_out is 32-bit; feed large requests in pieces.
      size_t want = std::min<size_t>(n - produced, size_t(1) << 30);
      zs_.next_out = dst + produced;
      zs_.avail_out = static_cast<uInt>(want);
      int rc = inflate(&zs_, Z_NO_FLUSH);
      produced += want - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        member_done_ = true;
      } else if (rc == Z_BUF_ERROR) {
        // No progress possible: only legitimate when more input is still to come.
        SPRIG_CHECK(!(zs_.avail_in == 0 && file_eof_), path_,
                    ": gzip stream is truncated (ends after ", consumed(),
                    " compressed bytes, before the end-of-stream marker)");
      } else if (rc != Z_OK) {
        throw Error(detail::concat(path_, ": corrupt gzip stream near compressed byte ", consumed(),
                                   " (zlib: ", zs_.msg ? zs_.msg : zError(rc), ")"));
      }
    }
    return produced;
  }

 private:
  void refill() {
    size_t got = std::fread(in_.data(), 1, in_.size(), f_);
    SPRIG_CHECK(!std::ferror(f_), path_, ": read error (", std::strerror(errno), ")");
    if (got < in_.size()) file_eof_ = true;
    fed_ += got;
    zs_.next_in = in_.data();
    zs_.avail_in = static_cast<uInt>(got);
  }
  uint64_t consumed() const { return fed_ - zs_.avail_in; }

  std::FILE* f_;
  const std::string& path_;
  std::vector<uint8_t> in_;  // compressed input chunk
  z_stream zs_;
  uint64_t fed_ = 0;  // compressed bytes handed to zlib so far
  bool file_eof_ = false;
  bool member_done_ = false;
};

uint32_t load_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

std::string hex8(uint32_t v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02x", v & 0xff);
  return buf;
}

// Reads until EOF, or past `limit`, and returns how many bytes there were (to report
// over-long files without decompressing gigabytes of trailing gzip members).
uint64_t count_rest(ByteSource& src, uint64_t limit) {
  std::vector<uint8_t> scratch(1 << 16);
  uint64_t total = 0;
  for (;;) {
    size_t got = src.read(scratch.data(), scratch.size());
    total += got;
    if (got < scratch.size() || total > limit) return total;
  }
}

// A gzip file may declare at most this many decompressed bytes per compressed byte (real image
// data compresses 2-5x; deflate allows about 1000x), and at least kGzipFloorBytes. A 12 MB
// gzip bomb must not make a loader allocate gigabytes because its header says so.
constexpr uint64_t kGzipMaxRatio = 64;
constexpr uint64_t kGzipFloorBytes = uint64_t(64) << 20;

}  // namespace

// ---- read ----------------------------------------------------------------------------------
IdxArray read_idx(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SPRIG_CHECK(fs::exists(path, ec), path, ": file not found");
  SPRIG_CHECK(!fs::is_directory(path, ec), path, ": is a directory, expected an IDX file");
  FilePtr file(std::fopen(path.c_str(), "rb"));
  SPRIG_CHECK(file, path, ": cannot open (", std::strerror(errno), ")");

  // Sniff the first two bytes: gzip starts 1f 8b, raw IDX starts 00 00.
  uint8_t sniff[2] = {0, 0};
  size_t sniffed = std::fread(sniff, 1, 2, file.get());
  SPRIG_CHECK(!std::ferror(file.get()), path, ": read error (", std::strerror(errno), ")");
  SPRIG_CHECK(sniffed > 0, path, ": file is empty, expected an IDX header");
  bool gz = sniffed == 2 && sniff[0] == 0x1f && sniff[1] == 0x8b;
  std::rewind(file.get());

  std::unique_ptr<ByteSource> src;
  if (gz) {
    src = std::make_unique<GzipSource>(file.get(), path);
  } else {
    src = std::make_unique<RawSource>(file.get(), path);
  }
  // Sizes and offsets below count decompressed bytes; say so for gzip files.
  const char* dz = gz ? "decompressed " : "";
  const char* where = gz ? " in the decompressed data" : "";

  // Magic: 00 00 <type> <rank>.
  uint8_t head[4];
  size_t got = src->read(head, 4);
  SPRIG_CHECK(got > 0, path, gz ? ": gzip stream decompresses to nothing" : ": file is empty",
              ", expected an IDX header");
  SPRIG_CHECK(got == 4, path, ": truncated header: expected a 4-byte magic number, found ", got,
              " ", dz, "bytes");
  uint32_t magic = load_be32(head);
  SPRIG_CHECK(head[0] == 0 && head[1] == 0, path, ": bad magic ", hex32(magic), " at offset 0",
              where, " (expected 0x0000TTRR: two zero bytes, type code TT, rank RR)");
  SPRIG_CHECK(known_type_code(head[2]), path, ": unknown element type code ", hex8(head[2]),
              " at offset 2 (magic ", hex32(magic),
              "; expected 0x08 ubyte, 0x09 byte, 0x0b short, 0x0c int, 0x0d float or "
              "0x0e double)");
  int rank = head[3];
  SPRIG_CHECK(rank >= 1 && rank <= 4, path, ": rank ", rank,
              " at offset 3 is not supported (expected 1 to 4)");

  IdxArray a;
  a.type = static_cast<IdxType>(head[2]);
  const size_t header_bytes = 4 + 4 * size_t(rank);

  uint8_t dimbuf[16];  // rank big-endian uint32 dimensions
  got = src->read(dimbuf, 4 * rank);
  SPRIG_CHECK(got == size_t(4 * rank), path, ": truncated header: rank ", rank, " needs a ",
              header_bytes, "-byte header, found ", 4 + got, " ", dz, "bytes");

  const uint64_t elem = idx_type_size(a.type);
  uint64_t expected = elem;  // data bytes
  for (int i = 0; i < rank; ++i) {
    uint32_t d = load_be32(dimbuf + 4 * i);
    SPRIG_CHECK(d > 0, path, ": dimension ", i, " (offset ", 4 + 4 * i,
                ") is 0; every dimension must be positive");
    // Checked before multiplying so that absurd headers cannot overflow.
    SPRIG_CHECK(expected <= kMaxIdxBytes / d, path, ": dimension ", i, " (offset ", 4 + 4 * i,
                ") is ", d, ", which makes the data larger than the ", kMaxIdxBytes >> 30,
                " GiB limit (corrupt header?)");
    expected *= d;
    a.dims.push_back(d);
  }
  if (gz) {
    const uint64_t compressed = fs::file_size(path, ec);
    const uint64_t cap = std::max(kGzipFloorBytes, kGzipMaxRatio * (ec ? 0 : compressed));
    SPRIG_CHECK(expected <= cap, path, ": the header declares ", expected,
                " decompressed data bytes, more than ", kGzipMaxRatio, " times the ", compressed,
                "-byte gzip file (a gzip bomb?); gunzip it and pass the raw IDX file");
  }

  // Grow the buffer as data arrives (doubling, from 64 KiB up to 16 MiB steps), so a lying
  // header cannot make us allocate much more than the file holds.
  const size_t chunk = size_t(1) << 24;
  size_t have = 0;
  while (have < expected) {
    size_t step = std::min(chunk, std::max(have, size_t(1) << 16));
    size_t want = std::min<uint64_t>(step, expected - have);
    a.data.resize(have + want);
    size_t n = src->read(a.data.data() + have, want);
    have += n;
    if (n < want) {
      throw Error(detail::concat(path, ": expected ", expected, " ", dz, "data bytes after the ",
                                 header_bytes, "-byte header, found ", have, " (truncated)"));
    }
  }
  const uint64_t kCountLimit = uint64_t(1) << 20;
  uint64_t extra = count_rest(*src, kCountLimit);
  SPRIG_CHECK(extra == 0, path, ": expected ", expected, " ", dz, "data bytes after the ",
              header_bytes, "-byte header, found ", extra > kCountLimit ? "more than " : "",
              expected + extra, " (", extra > kCountLimit ? "over " : "", extra,
              " trailing bytes: the file is longer than its header says)");
  return a;
}

// ---- write ---------------------------------------------------------------------------------
void write_idx(const std::string& path, const IdxArray& a, bool gzip) {
  SPRIG_CHECK(a.dims.size() >= 1 && a.dims.size() <= 4, path, ": write_idx: rank ", a.dims.size(),
              " not supported (expected 1 to 4)");
  for (int64_t d : a.dims)
    SPRIG_CHECK(d > 0 && d <= int64_t(UINT32_MAX), path, ": write_idx: bad dimension ", d);
  uint64_t expected = uint64_t(a.numel()) * idx_type_size(a.type);
  SPRIG_CHECK(a.data.size() == expected, path, ": write_idx: ", a.data.size(),
              " data bytes for dims needing ", expected);

  std::vector<uint8_t> header;  // 4 + 4 * rank bytes
  header.push_back(0);
  header.push_back(0);
  header.push_back(static_cast<uint8_t>(a.type));
  header.push_back(static_cast<uint8_t>(a.dims.size()));
  for (int64_t d : a.dims) {
    uint32_t v = static_cast<uint32_t>(d);
    for (int s = 24; s >= 0; s -= 8) header.push_back(static_cast<uint8_t>(v >> s));
  }

  // Write beside the target and rename, so a failed write never leaves a half file.
  std::string tmp = path + ".tmp";
  bool ok = true;
  if (gzip) {
    gzFile g = gzopen(tmp.c_str(), "wb");
    SPRIG_CHECK(g, path, ": cannot open for writing (", std::strerror(errno), ")");
    ok = gzwrite(g, header.data(), unsigned(header.size())) == int(header.size());
    for (size_t off = 0; ok && off < a.data.size(); off += size_t(1) << 24) {
      unsigned n = unsigned(std::min<size_t>(a.data.size() - off, size_t(1) << 24));
      ok = gzwrite(g, a.data.data() + off, n) == int(n);
    }
    ok = (gzclose(g) == Z_OK) && ok;
  } else {
    FilePtr f(std::fopen(tmp.c_str(), "wb"));
    SPRIG_CHECK(f, path, ": cannot open for writing (", std::strerror(errno), ")");
    ok = std::fwrite(header.data(), 1, header.size(), f.get()) == header.size();
    ok = ok && std::fwrite(a.data.data(), 1, a.data.size(), f.get()) == a.data.size();
    ok = (std::fclose(f.release()) == 0) && ok;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(path + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename temporary file into place (" + ec.message() + ")");
  }
}

// ---- conversion ----------------------------------------------------------------------------
Tensor idx_to_tensor(const IdxArray& a) {
  const int64_t n = a.numel();
  const uint8_t* p = a.data.data();
  SPRIG_CHECK(a.data.size() == uint64_t(n) * idx_type_size(a.type),
              "idx_to_tensor: ", a.data.size(), " bytes do not match dims ", to_string(a.dims));
  switch (a.type) {
    case IdxType::U8: {
      Tensor t = Tensor::empty(a.dims, DType::U8);
      std::memcpy(t.data_as<uint8_t>(), p, n);
      return t;
    }
    case IdxType::I8: {
      Tensor t = Tensor::empty(a.dims, DType::I32);
      int32_t* o = t.data_as<int32_t>();
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<int8_t>(p[i]);
      return t;
    }
    case IdxType::I16: {
      Tensor t = Tensor::empty(a.dims, DType::I32);
      int32_t* o = t.data_as<int32_t>();
      for (int64_t i = 0; i < n; ++i)
        o[i] = static_cast<int16_t>(uint16_t((p[2 * i] << 8) | p[2 * i + 1]));
      return t;
    }
    case IdxType::I32: {
      Tensor t = Tensor::empty(a.dims, DType::I32);
      int32_t* o = t.data_as<int32_t>();
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<int32_t>(load_be32(p + 4 * i));
      return t;
    }
    case IdxType::F32: {
      Tensor t = Tensor::empty(a.dims, DType::F32);
      float* o = t.data();
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits = load_be32(p + 4 * i);
        std::memcpy(&o[i], &bits, 4);
      }
      return t;
    }
    case IdxType::F64: {
      Tensor t = Tensor::empty(a.dims, DType::F32);
      float* o = t.data();
      for (int64_t i = 0; i < n; ++i) {
        uint64_t bits = (uint64_t(load_be32(p + 8 * i)) << 32) | load_be32(p + 8 * i + 4);
        double v;
        std::memcpy(&v, &bits, 8);
        o[i] = static_cast<float>(v);
      }
      return t;
    }
  }
  throw Error("idx_to_tensor: unknown IDX type");
}

}  // namespace sprig::data
