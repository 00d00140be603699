#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "engine/atomic_file.h"

// The data section is raw little-endian bytes copied straight from tensor buffers.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sprig's safetensors I/O assumes a little-endian host"
#endif

namespace sprig {
namespace {

// ordered_json keeps header keys in file order, so tensors load in the order they were saved.
using Json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // the reference rejects > 100 MB
constexpr int kMaxJsonDepth = 16;  // a valid header nests 3 deep; bound pathological input
const char* const kMetadataKey = "__metadata__";
const char* const kSupportedDTypes = "F32, I32, U8, U16";

// safetensors' dtype names for sprig's dtypes.
struct DTypeName {
  DType dtype;
  const char* name;
};
const DTypeName kDTypes[] = {
    {DType::F32, "F32"}, {DType::I32, "I32"}, {DType::U8, "U8"}, {DType::U16, "U16"}};

const char* st_dtype_name(DType t) {
  for (const DTypeName& d : kDTypes)
    if (d.dtype == t) return d.name;
  return "?";
}

// Element sizes of every dtype the safetensors format defines, for tensors a caller asked to
// skip: they are checked against the data section but never read.
size_t st_dtype_size(const std::string& s) {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  auto it = sizes.find(s);
  return it == sizes.end() ? 0 : it->second;
}

bool parse_st_dtype(const std::string& s, DType* out) {
  for (const DTypeName& d : kDTypes) {
    if (s == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

// Every load error names the file first.
template <typename... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(detail::concat("safetensors file '", path, "': ", args...));
}

// Start of a tensor's bytes, honouring the element offset of views.
char* raw_bytes(const Tensor& t) {
  return static_cast<char*>(t.impl()->storage->data()) + t.impl()->offset * dtype_size(t.dtype());
}

// Owns a file descriptor so every early exit closes it.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { close(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int close() {
    int rc = fd_ >= 0 ? ::close(fd_) : 0;
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// ---- loading -----------------------------------------------------------------------------

// Reads exactly n bytes at file offset `at`. The size was checked against fstat before, so a
// short read means the file changed underneath us; report it rather than use garbage.
void read_exact(int fd, void* dst, uint64_t n, uint64_t at, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(at));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(path, "read error at byte ", at, ": ", std::strerror(errno));
    if (got == 0) fail(path, "unexpected end of file at byte ", at, " (did it change while read?)");
    p += got;
    at += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

// Parses the header, rejecting duplicate keys (nlohmann would silently keep the last one, and
// a duplicate tensor name makes the file ambiguous) and absurd nesting.
Json parse_header(const std::string& text, const std::string& path) {
  std::vector<std::set<std::string>> seen;  // keys of each object being parsed
  auto check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    using E = Json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= kMaxJsonDepth)
      fail(path, "header JSON nests deeper than ", kMaxJsonDepth, " levels");
    if (event == E::object_start) seen.emplace_back();
    if (event == E::object_end && !seen.empty()) seen.pop_back();
    if (event == E::key && !seen.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.back().insert(key).second) {
        if (seen.size() == 1) fail(path, "duplicate tensor name '", key, "' in the header");
        fail(path, "duplicate key '", key, "' in the header");
      }
    }
    return true;
  };
  try {
    return Json::parse(text, check);
  } catch (const Json::parse_error& e) {
    // e.byte counts from 1 within the header; the header starts at file offset 8.
    fail(path, "header is not valid JSON at header byte ", e.byte, " (file offset ", 7 + e.byte,
         "): ", e.what());
  } catch (const Json::exception& e) {
    fail(path, "header is not valid JSON: ", e.what());
  }
}

struct Entry {
  std::string name;
  DType dtype = DType::F32;
  std::string dtype_name;  // as in the header
  size_t element_size = 4;
  bool skip = false;  // validated, not read (load_safetensors' skip_suffixes)
  Shape shape;
  uint64_t begin = 0, end = 0;
};

// A JSON value as a non-negative integer; false for anything else (negative, float, string).
bool as_u64(const Json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

Entry parse_entry(const std::string& name, const Json& v, uint64_t data_start, uint64_t file_size,
                  const std::string& path, bool skip) {
  const uint64_t data_size = file_size - data_start;
  Entry e;
  e.name = name;
  const std::string what = "tensor '" + name + "'";
  if (!v.is_object()) fail(path, what, ": entry is a JSON ", v.type_name(), ", not an object");
  auto field = [&](const char* key) -> const Json& {
    auto it = v.find(key);
    if (it == v.end()) fail(path, what, ": missing \"", key, "\"");
    return *it;
  };

  const Json& dtype = field("dtype");
  if (!dtype.is_string())
    fail(path, what, ": \"dtype\" is a JSON ", dtype.type_name(), ", not a string");
  const std::string& dname = dtype.get_ref<const std::string&>();
  e.dtype_name = dname;
  e.skip = skip;
  if (parse_st_dtype(dname, &e.dtype))
    e.element_size = dtype_size(e.dtype);
  else if (skip && st_dtype_size(dname) > 0)
    e.element_size = st_dtype_size(dname);
  else
    fail(path, what, ": unsupported dtype '", dname, "' (supported: ", kSupportedDTypes, ")");

  const Json& shape = field("shape");
  if (!shape.is_array())
    fail(path, what, ": \"shape\" is a JSON ", shape.type_name(), ", not an array");
  uint64_t numel = 1;
  bool overflow = false;
  for (const Json& d : shape) {
    if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
      fail(path, what, ": negative dimension ", d.get<int64_t>(), " in shape ", shape.dump());
    uint64_t n = 0;
    if (!as_u64(d, &n))
      fail(path, what, ": shape ", shape.dump(), " holds a non-integer dimension");
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(path, what, ": dimension ", n, " in shape ", shape.dump(), " is too large");
    e.shape.push_back(static_cast<int64_t>(n));
    overflow = overflow || __builtin_mul_overflow(numel, n, &numel);
  }
  uint64_t bytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, e.element_size, &bytes);
  if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(path, what, ": shape ", shape.dump(), " has too many elements");

  const Json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !as_u64(offsets[0], &e.begin) ||
      !as_u64(offsets[1], &e.end))
    fail(path, what, ": \"data_offsets\" ", offsets.dump(),
         " is not [begin, end] with non-negative integers");
  if (e.begin > e.end)
    fail(path, what, ": data_offsets [", e.begin, ", ", e.end, "] have begin > end");
  if (e.end > data_size)
    fail(path, what, ": data_offsets end ", e.end, " is beyond the ", data_size,
         "-byte data section; the file is truncated or the header is wrong (expected at least ",
         data_start + e.end, " bytes, actual size ", file_size, ")");
  if (e.end - e.begin != bytes)
    fail(path, what, ": data_offsets [", e.begin, ", ", e.end, "] span ", e.end - e.begin,
         " bytes but shape ", shape.dump(), " of ", dname, " needs ", bytes,
         " bytes (size mismatch)");
  return e;
}

void parse_metadata(const Json& v, std::map<std::string, std::string>* out,
                    const std::string& path) {
  if (v.is_null()) return;  // the reference writes no metadata as absent or null
  if (!v.is_object()) fail(path, "\"__metadata__\" is a JSON ", v.type_name(), ", not an object");
  for (const auto& kv : v.items()) {
    if (!kv.value().is_string())
      fail(path, "\"__metadata__\" value for key '", kv.key(), "' is a JSON ",
           kv.value().type_name(), ", not a string");
    (*out)[kv.key()] = kv.value().get<std::string>();
  }
}

// The spec requires the data section to be indexed without holes or overlaps: sorted by
// offset, each tensor starts where the previous one ended and the last ends at the file's end.
void check_coverage(const std::vector<Entry>& entries, const std::vector<size_t>& by_offset,
                    uint64_t data_size, const std::string& path) {
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (size_t i : by_offset) {
    const Entry& e = entries[i];
    if (e.begin < expected)
      fail(path, "tensor '", e.name, "' [", e.begin, ", ", e.end, ") overlaps tensor '", prev->name,
           "' [", prev->begin, ", ", prev->end, ")");
    if (e.begin > expected)
      fail(path, "gap in the data section: bytes [", expected, ", ", e.begin,
           ") belong to no tensor (before tensor '", e.name, "')");
    expected = e.end;
    prev = &e;
  }
  if (expected != data_size)
    fail(path, "data section has ", data_size, " bytes but the tensors cover only ", expected, " (",
         data_size - expected, " trailing bytes belong to no tensor)");
}

// ---- saving ------------------------------------------------------------------------------

// Everything a save error says starts with this.
template <typename... Args>
[[noreturn]] void save_fail(const std::string& path, const Args&... args) {
  throw Error(detail::concat("cannot save safetensors file '", path, "': ", args...));
}

}  // namespace

// ---- TensorFile ---------------------------------------------------------------------------

const Tensor* TensorFile::find(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

const Tensor& TensorFile::at(const std::string& name) const {
  const Tensor* t = find(name);
  if (!t) {
    std::string names;
    for (size_t i = 0; i < tensors.size() && i < 8; ++i)
      names += (i ? ", " : "") + tensors[i].first;
    if (tensors.size() > 8) names += ", ...";
    throw Error(detail::concat("safetensors file '", path, "' has no tensor '", name, "' (it has ",
                               tensors.size(), ": ", names, ")"));
  }
  return *t;
}

// ---- load ---------------------------------------------------------------------------------

TensorFile load_safetensors(const std::string& path) {
  return load_safetensors(path, {});
}

TensorFile load_safetensors(const std::string& path,
                            const std::vector<std::string>& skip_suffixes) {
  auto skipped = [&](const std::string& name) {
    for (const std::string& s : skip_suffixes)
      if (name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0)
        return true;
    return false;
  };
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail(path, "cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) fail(path, "cannot stat: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    fail(path, "file is ", file_size, " bytes, shorter than the 8-byte header length");

  unsigned char len_bytes[8];
  read_exact(fd.get(), len_bytes, 8, 0, path);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  if (header_len > kMaxHeaderBytes)
    fail(path, "header length ", header_len, " bytes is absurd (limit ", kMaxHeaderBytes,
         "; file is ", file_size, " bytes)");
  if (header_len > file_size - 8)
    fail(path, "header length ", header_len, " bytes is larger than the file: only ", file_size - 8,
         " bytes follow the length field (file is ", file_size, " bytes)");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;

  std::string text(header_len, '\0');
  read_exact(fd.get(), &text[0], header_len, 8, path);
  const Json header = parse_header(text, path);
  if (!header.is_object()) fail(path, "header is a JSON ", header.type_name(), ", not an object");

  TensorFile out;
  out.path = path;
  std::vector<Entry> entries;
  for (const auto& kv : header.items()) {
    if (kv.key() == kMetadataKey)
      parse_metadata(kv.value(), &out.metadata, path);
    else
      entries.push_back(
          parse_entry(kv.key(), kv.value(), data_start, file_size, path, skipped(kv.key())));
  }
  std::vector<size_t> by_offset(entries.size());
  std::iota(by_offset.begin(), by_offset.end(), 0);
  std::sort(by_offset.begin(), by_offset.end(), [&](size_t a, size_t b) {
    const Entry &x = entries[a], &y = entries[b];
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  check_coverage(entries, by_offset, data_size, path);

  // Everything is consistent; only now allocate and read, straight into the tensors.
  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    if (e.skip) {
      out.skipped.push_back({e.name, e.dtype_name, e.shape});
      continue;
    }
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin)
      read_exact(fd.get(), raw_bytes(t), e.end - e.begin, data_start + e.begin, path);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

// ---- save ---------------------------------------------------------------------------------

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Validate everything before the temp file exists.
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) save_fail(path, "a tensor has an empty name");
    if (name == kMetadataKey)
      save_fail(path, "'", kMetadataKey, "' is reserved, not a tensor name");
    if (!names.insert(name).second) save_fail(path, "duplicate tensor name '", name, "'");
    if (!t.defined()) save_fail(path, "tensor '", name, "' is undefined");
  }

  // Data layout: 4-byte dtypes first, then U8, each group in the given order, so every
  // tensor starts at a multiple of its element size (the data section starts 8-aligned).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t data_size = 0;
  for (size_t i : order) {
    begin[i] = data_size;
    data_size += tensors[i].second.nbytes();
  }

  Json header = Json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    Json entry = Json::object();
    entry["dtype"] = st_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = Json::array({begin[i], begin[i] + t.nbytes()});
    header[tensors[i].first] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {  // e.g. a name or metadata string that is not UTF-8
    save_fail(path, "cannot encode the header: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data section starts 8-aligned
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(text.size() >> (8 * i));

  AtomicFile file(path, "cannot save safetensors file");
  file.write(len_bytes, 8);
  file.write(text.data(), text.size());
  for (size_t i : order) {
    const Tensor t = tensors[i].second.to(Device::cpu());  // GPU tensors: one at a time
    if (t.nbytes() > 0) file.write(raw_bytes(t), t.nbytes());
  }
  file.commit();
}

}  // namespace sprig
