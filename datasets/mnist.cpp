#include "datasets/mnist.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "datasets/idx.h"

namespace sprig::data {

namespace fs = std::filesystem;

// dir/base if it exists, else dir/base.gz; names both when neither is there.
static std::string find_idx_file(const std::string& dir, const std::string& base) {
  fs::path raw = fs::path(dir) / base;
  fs::path gz = fs::path(dir) / (base + ".gz");
  std::error_code ec;
  if (fs::is_regular_file(raw, ec)) return raw.string();
  if (fs::is_regular_file(gz, ec)) return gz.string();
  throw Error(detail::concat(dir, ": missing ", base, " (looked for ", raw.string(), " and ",
                             gz.string(), ")"));
}

// (N, H, W) ubyte IDX -> (N, 1, H, W) float32 in [0, 1].
static Tensor load_images(const std::string& path) {
  IdxArray a = read_idx(path);
  SPRIG_CHECK(a.type == IdxType::U8, path, ": images have element type ", idx_type_name(a.type),
              ", expected ubyte");
  SPRIG_CHECK(a.dims.size() == 3, path, ": images have rank ", a.dims.size(), " ",
              to_string(a.dims), ", expected rank 3 (N, H, W)");
  Tensor t = Tensor::empty({a.dims[0], 1, a.dims[1], a.dims[2]});
  float* out = t.data();
  const uint8_t* in = a.data.data();
  const int64_t n = t.numel();
  // Divide (not multiply by 1/255) so 255 maps to exactly 1 and values match x / 255.
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] / 255.0f;
  return t;
}

// (N) ubyte IDX -> (N) int32, every value in 0..9.
static Tensor load_labels(const std::string& path) {
  IdxArray a = read_idx(path);
  SPRIG_CHECK(a.type == IdxType::U8, path, ": labels have element type ", idx_type_name(a.type),
              ", expected ubyte");
  SPRIG_CHECK(a.dims.size() == 1, path, ": labels have rank ", a.dims.size(), " ",
              to_string(a.dims), ", expected rank 1 (N)");
  Tensor t = Tensor::empty({a.dims[0]}, DType::I32);
  int32_t* out = t.data_as<int32_t>();
  for (int64_t i = 0; i < a.dims[0]; ++i) {
    uint8_t v = a.data[i];
    SPRIG_CHECK(v <= 9, path, ": label ", int(v), " at index ", i, " is outside 0..9");
    out[i] = v;
  }
  return t;
}

static Dataset load_split(const std::string& dir, const std::string& prefix,
                          const std::string& name) {
  std::string images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  std::string labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  Dataset ds;
  ds.images = load_images(images_path);
  ds.labels = load_labels(labels_path);
  ds.name = name;
  SPRIG_CHECK(ds.images.size(0) == ds.labels.size(0), name, ": ", images_path, " holds ",
              ds.images.size(0), " images but ", labels_path, " holds ", ds.labels.size(0),
              " labels");
  return ds;
}

TrainTest load_mnist_dir(const std::string& dir, const std::string& name) {
  std::error_code ec;
  SPRIG_CHECK(fs::is_directory(dir, ec), dir, ": not a directory (expected the four ", name,
              " IDX files in it)");
  TrainTest tt;
  tt.train = load_split(dir, "train", name + "/train");
  tt.test = load_split(dir, "t10k", name + "/test");
  SPRIG_CHECK(tt.train.images.size(2) == tt.test.images.size(2) &&
                  tt.train.images.size(3) == tt.test.images.size(3),
              dir, ": train images are ", tt.train.images.size(2), "x", tt.train.images.size(3),
              " but test images are ", tt.test.images.size(2), "x", tt.test.images.size(3));
  return tt;
}

TrainTest load_fashion_mnist(const std::string& dir) {
  std::string d = dir.empty() ? std::string(kFashionMnistDefaultDir) : dir;
  std::error_code ec;
  if (dir.empty() && !fs::is_directory(d, ec)) {
    throw Error(detail::concat("Fashion-MNIST not found in ", d,
                               ": install it with `apt-get install dataset-fashion-mnist`, or "
                               "pass the directory that holds the four IDX files"));
  }
  return load_mnist_dir(d, "fashion-mnist");
}

void check_dataset(const Dataset& ds, const char* what) {
  SPRIG_CHECK(ds.images.defined(), what, ": dataset '", ds.name, "' has no images tensor");
  SPRIG_CHECK(ds.labels.defined(), what, ": dataset '", ds.name, "' has no labels tensor");
  SPRIG_CHECK(ds.images.device().is_cpu() && ds.labels.device().is_cpu(), what, ": dataset '",
              ds.name, "' must live on the cpu");
  SPRIG_CHECK(ds.images.dim() >= 1 && ds.labels.dim() >= 1, what, ": dataset '", ds.name,
              "' needs a leading sample dimension, got images ", to_string(ds.images.shape()),
              " and labels ", to_string(ds.labels.shape()));
  SPRIG_CHECK(ds.images.size(0) == ds.labels.size(0), what, ": dataset '", ds.name, "' has ",
              ds.images.size(0), " inputs ", to_string(ds.images.shape()), " but ",
              ds.labels.size(0), " targets ", to_string(ds.labels.shape()));
}

void normalize(Dataset& ds, float mean, float std) {
  SPRIG_CHECK(std > 0.0f, "normalize: std must be > 0, got ", std);
  SPRIG_CHECK(ds.images.defined(), "normalize: dataset '", ds.name, "' has no images");
  Tensor out = Tensor::empty(ds.images.shape());
  const float* in = ds.images.data();
  float* o = out.data();
  const float inv = 1.0f / std;
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) o[i] = (in[i] - mean) * inv;
  ds.images = out;
}

void normalize_channels(Dataset& ds, const std::vector<float>& mean,
                        const std::vector<float>& std) {
  SPRIG_CHECK(ds.images.defined() && ds.images.dim() >= 2, "normalize_channels: dataset '", ds.name,
              "' needs images (N, C, ...)");
  const int64_t n = ds.images.size(0), channels = ds.images.size(1);
  SPRIG_CHECK(int64_t(mean.size()) == channels && int64_t(std.size()) == channels,
              "normalize_channels: dataset '", ds.name, "' has ", channels, " channels but ",
              mean.size(), " means and ", std.size(), " stds");
  for (float s : std) SPRIG_CHECK(s > 0.0f, "normalize_channels: std must be > 0, got ", s);
  const int64_t plane = n * channels > 0 ? ds.images.numel() / (n * channels) : 0;
  Tensor out = Tensor::empty(ds.images.shape());
  const float* in = ds.images.data();  // (N, C, plane)
  float* o = out.data();               // (N, C, plane)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (i * channels + c) * plane;
      for (int64_t k = 0; k < plane; ++k) o[base + k] = (in[base + k] - mean[c]) / std[c];
    }
  ds.images = out;
}

// Copies rows `indices` of t (any rank, any dtype) into a new tensor.
static Tensor gather_rows(const Tensor& t, const std::vector<int64_t>& indices) {
  Shape shape = t.shape();
  const int64_t n = shape[0];
  shape[0] = static_cast<int64_t>(indices.size());
  Tensor out = Tensor::empty(shape, t.dtype());
  const size_t row = n > 0 ? t.nbytes() / n : 0;
  const uint8_t* src = static_cast<const uint8_t*>(t.impl()->storage->data()) +
                       t.impl()->offset * dtype_size(t.dtype());
  uint8_t* dst = static_cast<uint8_t*>(out.impl()->storage->data());
  for (size_t i = 0; i < indices.size(); ++i) {
    int64_t r = indices[i];
    SPRIG_CHECK(r >= 0 && r < n, "subset: index ", r, " out of range for ", n, " samples");
    std::memcpy(dst + i * row, src + r * row, row);
  }
  return out;
}

Dataset subset(const Dataset& ds, const std::vector<int64_t>& indices) {
  check_dataset(ds, "subset");
  Dataset out;
  out.images = gather_rows(ds.images, indices);
  out.labels = gather_rows(ds.labels, indices);
  out.name = ds.name;
  return out;
}

Dataset take(const Dataset& ds, int64_t n) {
  SPRIG_CHECK(n >= 0, "take: sample count must be >= 0, got ", n);
  check_dataset(ds, "take");
  int64_t m = std::min(n, ds.size());
  std::vector<int64_t> idx(m);
  for (int64_t i = 0; i < m; ++i) idx[i] = i;
  return subset(ds, idx);
}

}  // namespace sprig::data
