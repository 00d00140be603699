// Tests for datasets/: IDX reading (raw, gzip, every kind of damage), the MNIST-directory
// loader, the DataLoader and Friedman #1.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "datasets/dataloader.h"
#include "datasets/friedman.h"
#include "datasets/idx.h"
#include "datasets/mnist.h"
#include "tests/temp_dir.h"

using namespace sprig;
using namespace sprig::data;
namespace fs = std::filesystem;
using test::TempDir;
using test::write_bytes;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)),
                              std::istreambuf_iterator<char>());
}

// Gzip-compresses bytes into path (one gzip member).
void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile g = gzopen(path.c_str(), "wb");
  REQUIRE(g != nullptr);
  if (!bytes.empty())
    REQUIRE(gzwrite(g, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(g) == Z_OK);
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

// Header bytes: 00 00 type rank, then the dims big-endian.
std::vector<uint8_t> idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> h = {0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims) put_be32(h, d);
  return h;
}

// A raw ubyte IDX file image with values 0, 1, 2, ... (mod 256).
std::vector<uint8_t> idx_u8(const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> b = idx_header(0x08, dims);
  size_t n = 1;
  for (uint32_t d : dims) n *= d;
  for (size_t i = 0; i < n; ++i) b.push_back(uint8_t(i * 7 + 3));
  return b;
}

// The message of the sprig::Error that f throws; "" (and a failed check) when it throws none.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sprig::Error& e) {
    return e.what();
  }
  FAIL_CHECK("expected a sprig::Error");
  return "";
}

// read_idx(path) must throw a sprig::Error naming the file and containing `word`.
void check_idx_error(const std::string& path, const std::string& word) {
  std::string msg = error_of([&] { read_idx(path); });
  INFO("message: ", msg);
  CHECK(msg.find(fs::path(path).filename().string()) != std::string::npos);
  CHECK(msg.find(word) != std::string::npos);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

// ---- IDX -----------------------------------------------------------------------------------
TEST_CASE("idx: raw and gzip ubyte files read back exactly") {
  TempDir dir;
  std::vector<uint8_t> bytes = idx_u8({3, 4, 5});
  write_bytes(dir.file("a-idx3-ubyte"), bytes);

  IdxArray a = read_idx(dir.file("a-idx3-ubyte"));
  CHECK(a.type == IdxType::U8);
  CHECK(a.dims == std::vector<int64_t>{3, 4, 5});
  CHECK(a.numel() == 60);
  CHECK(a.data == std::vector<uint8_t>(bytes.begin() + 16, bytes.end()));

  write_idx(dir.file("a-idx3-ubyte.gz"), a, /*gzip=*/true);
  CHECK(read_bytes(dir.file("a-idx3-ubyte.gz"))[0] == 0x1f);
  IdxArray b = read_idx(dir.file("a-idx3-ubyte.gz"));
  CHECK(b.dims == a.dims);
  CHECK(b.data == a.data);

  // gzip is detected by content, not by name.
  fs::copy_file(dir.file("a-idx3-ubyte.gz"), dir.file("plain-name"));
  CHECK(read_idx(dir.file("plain-name")).data == a.data);

  // write_idx raw produces the same bytes we built by hand.
  write_idx(dir.file("b"), a, /*gzip=*/false);
  CHECK(read_bytes(dir.file("b")) == bytes);

  Tensor t = idx_to_tensor(a);
  CHECK(t.dtype() == DType::U8);
  CHECK(t.shape() == Shape{3, 4, 5});
  CHECK(t.data_as<uint8_t>()[7] == a.data[7]);
}

TEST_CASE("idx: concatenated gzip members decompress to the concatenation") {
  TempDir dir;
  std::vector<uint8_t> raw = idx_u8({2, 3});
  // Header in one gzip member, data in a second, as `cat a.gz b.gz` would make.
  write_gz(dir.file("p1.gz"), std::vector<uint8_t>(raw.begin(), raw.begin() + 12));
  write_gz(dir.file("p2.gz"), std::vector<uint8_t>(raw.begin() + 12, raw.end()));
  std::vector<uint8_t> both = read_bytes(dir.file("p1.gz"));
  std::vector<uint8_t> m2 = read_bytes(dir.file("p2.gz"));
  both.insert(both.end(), m2.begin(), m2.end());
  write_bytes(dir.file("both.gz"), both);
  IdxArray a = read_idx(dir.file("both.gz"));
  CHECK(a.dims == std::vector<int64_t>{2, 3});
  CHECK(a.data == std::vector<uint8_t>(raw.begin() + 12, raw.end()));
}

TEST_CASE("idx: other element types convert from big-endian") {
  TempDir dir;
  {
    std::vector<uint8_t> b = idx_header(0x0B, {3});  // int16
    for (int16_t v : {int16_t(-2), int16_t(300), int16_t(-32768)}) {
      b.push_back(uint8_t(uint16_t(v) >> 8));
      b.push_back(uint8_t(uint16_t(v)));
    }
    write_bytes(dir.file("s"), b);
    Tensor t = idx_to_tensor(read_idx(dir.file("s")));
    CHECK(t.dtype() == DType::I32);
    CHECK(t.to_vector_i32() == std::vector<int32_t>{-2, 300, -32768});
  }
  {
    std::vector<uint8_t> b = idx_header(0x0C, {2});  // int32
    put_be32(b, uint32_t(-7));
    put_be32(b, 123456789);
    write_bytes(dir.file("i"), b);
    CHECK(idx_to_tensor(read_idx(dir.file("i"))).to_vector_i32() ==
          std::vector<int32_t>{-7, 123456789});
  }
  {
    std::vector<uint8_t> b = idx_header(0x09, {2});  // int8
    b.push_back(0xff);
    b.push_back(0x05);
    write_bytes(dir.file("b"), b);
    CHECK(idx_to_tensor(read_idx(dir.file("b"))).to_vector_i32() == std::vector<int32_t>{-1, 5});
  }
  {
    std::vector<uint8_t> b = idx_header(0x0D, {2});  // float32
    float vals[2] = {1.5f, -0.25f};
    for (float v : vals) {
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      put_be32(b, bits);
    }
    write_bytes(dir.file("f"), b);
    CHECK(idx_to_tensor(read_idx(dir.file("f"))).to_vector() == std::vector<float>{1.5f, -0.25f});
  }
  {
    std::vector<uint8_t> b = idx_header(0x0E, {1});  // float64
    double v = 3.25;
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    put_be32(b, uint32_t(bits >> 32));
    put_be32(b, uint32_t(bits));
    write_bytes(dir.file("d"), b);
    CHECK(idx_to_tensor(read_idx(dir.file("d"))).to_vector() == std::vector<float>{3.25f});
  }
}

TEST_CASE("idx: damaged files are errors that name the file and the problem") {
  TempDir dir;
  std::vector<uint8_t> good = idx_u8({10, 28, 28});

  SUBCASE("truncated data") {
    std::vector<uint8_t> b(good.begin(), good.begin() + 1000);
    write_bytes(dir.file("train-images-idx3-ubyte"), b);
    check_idx_error(dir.file("train-images-idx3-ubyte"), "truncated");
    std::string msg = error_of([&] { read_idx(dir.file("train-images-idx3-ubyte")); });
    CHECK(contains(msg, "expected 7840 data bytes after the 16-byte header, found 984"));
  }
  SUBCASE("truncated data in a gzip file") {
    write_gz(dir.file("short.gz"), std::vector<uint8_t>(good.begin(), good.begin() + 500));
    check_idx_error(
        dir.file("short.gz"),
        "expected 7840 decompressed data bytes after the 16-byte header, found 484 (truncated)");
  }
  SUBCASE("truncated header") {
    write_bytes(dir.file("hdr"), std::vector<uint8_t>(good.begin(), good.begin() + 10));
    check_idx_error(dir.file("hdr"), "truncated header");
    write_bytes(dir.file("hdr2"), {0, 0});
    check_idx_error(dir.file("hdr2"), "truncated header");
  }
  SUBCASE("over-long file") {
    std::vector<uint8_t> b = good;
    b.push_back(1);
    b.push_back(2);
    write_bytes(dir.file("long"), b);
    check_idx_error(dir.file("long"), "2 trailing bytes");
  }
  SUBCASE("wrong magic") {
    std::vector<uint8_t> b = good;
    b[0] = 0x12, b[1] = 0x34, b[2] = 0x56, b[3] = 0x78;
    write_bytes(dir.file("magic"), b);
    check_idx_error(dir.file("magic"), "bad magic 0x12345678 at offset 0");
  }
  SUBCASE("bad type code") {
    std::vector<uint8_t> b = good;
    b[2] = 0x07;
    write_bytes(dir.file("type"), b);
    check_idx_error(dir.file("type"), "type code 0x07");
  }
  SUBCASE("rank 0 and rank 5") {
    write_bytes(dir.file("r0"), {0, 0, 8, 0, 1, 2, 3});
    check_idx_error(dir.file("r0"), "rank 0");
    std::vector<uint8_t> b = idx_header(0x08, {1, 1, 1, 1, 1});
    b.push_back(9);
    write_bytes(dir.file("r5"), b);
    check_idx_error(dir.file("r5"), "rank 5");
  }
  SUBCASE("zero and absurd dimensions") {
    write_bytes(dir.file("z"), idx_header(0x08, {3, 0, 2}));
    check_idx_error(dir.file("z"), "dimension 1 (offset 8) is 0");
    write_bytes(dir.file("huge"), idx_header(0x08, {0xffffffffu, 0xffffffffu, 4, 4}));
    check_idx_error(dir.file("huge"), "limit");
    // Within the limit but far more than the file holds: truncated, without a 4 GiB buffer.
    write_bytes(dir.file("lying"), idx_header(0x0E, {0x7fffffffu}));
    check_idx_error(dir.file("lying"), "truncated");
  }
  SUBCASE("a gzip bomb: a small file whose header declares far more than it could hold") {
    // 100,000 28x28 images of zeros: 78 MB declared, about 80 KB compressed. Refused from the
    // header, before any buffer grows.
    std::vector<uint8_t> b = idx_header(0x08, {100000, 28, 28});
    b.resize(b.size() + size_t(100000) * 28 * 28, 0);
    write_gz(dir.file("bomb.gz"), b);
    REQUIRE(fs::file_size(dir.file("bomb.gz")) < (size_t(1) << 20));
    check_idx_error(dir.file("bomb.gz"), "gzip bomb");
    // The same data uncompressed is a valid (if dull) file.
    write_bytes(dir.file("bomb-raw"), b);
    CHECK(read_idx(dir.file("bomb-raw")).data.size() == size_t(100000) * 28 * 28);
  }
  SUBCASE("gigabytes of trailing gzip data are counted only up to a bound") {
    std::vector<uint8_t> trailing(size_t(8) << 20, 0);  // 8 MB of zeros past a good file
    write_gz(dir.file("g1.gz"), good);
    write_gz(dir.file("g2.gz"), trailing);
    std::vector<uint8_t> both = read_bytes(dir.file("g1.gz"));
    std::vector<uint8_t> tail = read_bytes(dir.file("g2.gz"));
    both.insert(both.end(), tail.begin(), tail.end());
    write_bytes(dir.file("trailing.gz"), both);
    check_idx_error(dir.file("trailing.gz"), "trailing bytes: the file is longer");
    CHECK(contains(error_of([&] { read_idx(dir.file("trailing.gz")); }), "more than"));
  }
  SUBCASE("empty and missing files") {
    write_bytes(dir.file("empty"), {});
    check_idx_error(dir.file("empty"), "empty");
    check_idx_error(dir.file("no-such-file.gz"), "not found");
    std::string msg = error_of([&] { read_idx(dir.path); });
    CHECK(contains(msg, "directory"));
  }
  SUBCASE("corrupt gzip streams") {
    IdxArray a;
    a.dims = {10, 28, 28};
    a.data.assign(good.begin() + 16, good.end());
    write_idx(dir.file("ok.gz"), a, true);
    std::vector<uint8_t> gz = read_bytes(dir.file("ok.gz"));
    REQUIRE(gz.size() > 30);

    // Byte 10 starts the deflate data; 0xff declares an invalid block type.
    std::vector<uint8_t> bad = gz;
    bad[10] = 0xff;
    write_bytes(dir.file("bad-block.gz"), bad);
    check_idx_error(dir.file("bad-block.gz"), "corrupt gzip");

    // A flipped bit in the CRC trailer.
    bad = gz;
    bad[bad.size() - 6] ^= 0x01;
    write_bytes(dir.file("bad-crc.gz"), bad);
    check_idx_error(dir.file("bad-crc.gz"), "corrupt gzip");

    // Cut in the middle of the compressed stream.
    bad.assign(gz.begin(), gz.begin() + gz.size() / 2);
    write_bytes(dir.file("cut.gz"), bad);
    check_idx_error(dir.file("cut.gz"), "truncated");

    // Only the gzip magic.
    write_bytes(dir.file("magic-only.gz"), {0x1f, 0x8b});
    check_idx_error(dir.file("magic-only.gz"), "gzip");

    // Garbage after a valid member.
    bad = gz;
    bad.insert(bad.end(), {'j', 'u', 'n', 'k'});
    write_bytes(dir.file("junk.gz"), bad);
    check_idx_error(dir.file("junk.gz"), "after the end of the gzip stream");

    // A valid gzip stream of nothing.
    write_gz(dir.file("nothing.gz"), {});
    check_idx_error(dir.file("nothing.gz"), "decompresses to nothing");
  }
}

// ---- MNIST directory ------------------------------------------------------------------------
namespace {

// Writes a fake MNIST directory: n_train/n_test images of 28x28, labels i % 10.
// Train files are gzip, test files raw, to cover both.
void write_fake_mnist(const TempDir& dir, int n_train, int n_test, int n_train_labels = -1,
                      uint8_t bad_label = 0) {
  auto images = [](int n) {
    IdxArray a;
    a.dims = {n, 28, 28};
    a.data.resize(size_t(n) * 784);
    for (size_t i = 0; i < a.data.size(); ++i) a.data[i] = uint8_t((i * 13) % 256);
    return a;
  };
  auto labels = [](int n) {
    IdxArray a;
    a.dims = {n};
    for (int i = 0; i < n; ++i) a.data.push_back(uint8_t(i % 10));
    return a;
  };
  IdxArray train_labels = labels(n_train_labels < 0 ? n_train : n_train_labels);
  if (bad_label) train_labels.data[1] = bad_label;
  write_idx(dir.file("train-images-idx3-ubyte.gz"), images(n_train), true);
  write_idx(dir.file("train-labels-idx1-ubyte.gz"), train_labels, true);
  write_idx(dir.file("t10k-images-idx3-ubyte"), images(n_test), false);
  write_idx(dir.file("t10k-labels-idx1-ubyte"), labels(n_test), false);
}

}  // namespace

TEST_CASE("mnist: a fake four-file directory loads") {
  TempDir dir;
  write_fake_mnist(dir, 5, 3);
  TrainTest tt = load_mnist_dir(dir.path, "fake");
  CHECK(tt.train.images.shape() == Shape{5, 1, 28, 28});
  CHECK(tt.train.labels.shape() == Shape{5});
  CHECK(tt.train.labels.dtype() == DType::I32);
  CHECK(tt.test.images.shape() == Shape{3, 1, 28, 28});
  CHECK(tt.test.labels.to_vector_i32() == std::vector<int32_t>{0, 1, 2});
  CHECK(tt.train.name == "fake/train");
  CHECK(tt.test.name == "fake/test");
  std::vector<float> px = tt.train.images.to_vector();
  for (size_t i = 0; i < px.size(); i += 97) CHECK(px[i] == float((i * 13) % 256) / 255.0f);

  SUBCASE("take") {
    Dataset two = take(tt.train, 2);
    CHECK(two.images.shape() == Shape{2, 1, 28, 28});
    CHECK(two.labels.to_vector_i32() == std::vector<int32_t>{0, 1});
    CHECK(two.images.to_vector() == std::vector<float>(px.begin(), px.begin() + 2 * 784));
    CHECK(take(tt.train, 100).size() == 5);
    CHECK(take(tt.train, 0).size() == 0);
    CHECK_THROWS_AS(take(tt.train, -1), sprig::Error);
  }
  SUBCASE("normalize") {
    Dataset copy = tt.train;
    normalize(tt.train, 0.5f, 0.25f);
    std::vector<float> v = tt.train.images.to_vector();
    CHECK(v[5] == doctest::Approx((px[5] - 0.5f) / 0.25f));
    CHECK(copy.images.to_vector() == px);  // the old buffer is untouched
    CHECK_THROWS_AS(normalize(tt.train, 0.0f, 0.0f), sprig::Error);
  }
}

TEST_CASE("mnist: missing and inconsistent files are named") {
  TempDir dir;
  SUBCASE("missing file") {
    write_fake_mnist(dir, 5, 3);
    fs::remove(dir.file("t10k-labels-idx1-ubyte"));
    std::string msg = error_of([&] { load_mnist_dir(dir.path); });
    CHECK(contains(msg, "t10k-labels-idx1-ubyte"));
    CHECK(contains(msg, "missing"));
  }
  SUBCASE("label count differs from image count") {
    write_fake_mnist(dir, 5, 3, /*n_train_labels=*/4);
    std::string msg = error_of([&] { load_mnist_dir(dir.path); });
    CHECK(contains(msg, "5 images"));
    CHECK(contains(msg, "4 labels"));
  }
  SUBCASE("label out of range") {
    write_fake_mnist(dir, 5, 3, -1, /*bad_label=*/12);
    std::string msg = error_of([&] { load_mnist_dir(dir.path); });
    CHECK(contains(msg, "train-labels-idx1-ubyte.gz"));
    CHECK(contains(msg, "label 12 at index 1"));
  }
  SUBCASE("images of the wrong rank") {
    write_fake_mnist(dir, 5, 3);
    IdxArray flat;
    flat.dims = {3, 784};
    flat.data.assign(3 * 784, 0);
    write_idx(dir.file("t10k-images-idx3-ubyte"), flat);
    std::string msg = error_of([&] { load_mnist_dir(dir.path); });
    CHECK(contains(msg, "t10k-images-idx3-ubyte"));
    CHECK(contains(msg, "rank 2"));
  }
  SUBCASE("not a directory") {
    std::string msg = error_of([&] { load_fashion_mnist(dir.file("nowhere")); });
    CHECK(contains(msg, "nowhere"));
  }
}

TEST_CASE("mnist: the real Fashion-MNIST, when installed") {
  if (!fs::is_directory(kFashionMnistDefaultDir)) {
    MESSAGE("skipped: ", kFashionMnistDefaultDir,
            " is absent (apt-get install dataset-fashion-mnist)");
    return;
  }
  TrainTest tt = load_fashion_mnist();
  CHECK(tt.train.images.shape() == Shape{60000, 1, 28, 28});
  CHECK(tt.test.images.shape() == Shape{10000, 1, 28, 28});
  CHECK(tt.train.name == "fashion-mnist/train");
  const float* p = tt.train.images.data();
  double sum = 0;
  float lo = 1, hi = 0;
  for (int64_t i = 0; i < tt.train.images.numel(); ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
    sum += p[i];
  }
  CHECK(lo == 0.0f);
  CHECK(hi == 1.0f);
  CHECK(sum / tt.train.images.numel() == doctest::Approx(kFashionMnistMean).epsilon(0.001));
  std::vector<int> train_counts(10), test_counts(10);
  for (int32_t y : tt.train.labels.to_vector_i32()) train_counts.at(y)++;
  for (int32_t y : tt.test.labels.to_vector_i32()) test_counts.at(y)++;
  CHECK(train_counts == std::vector<int>(10, 6000));
  CHECK(test_counts == std::vector<int>(10, 1000));
}

// ---- DataLoader -----------------------------------------------------------------------------
namespace {

// n samples: x row i is (i, i + 0.5, i + 0.25), label i.
Dataset counting_dataset(int n) {
  std::vector<float> x;
  std::vector<int32_t> y;
  for (int i = 0; i < n; ++i) {
    x.insert(x.end(), {float(i), i + 0.5f, i + 0.25f});
    y.push_back(i);
  }
  Dataset ds;
  ds.images = Tensor::from_vector(x, {n, 3});
  ds.labels = Tensor::from_vector_i32(y, {n});
  ds.name = "counting";
  return ds;
}

// The labels of one epoch, in visiting order, checking each batch's shape and x/y agreement.
std::vector<int32_t> run_epoch(DataLoader& loader, std::vector<int64_t>* sizes = nullptr) {
  loader.start_epoch();
  std::vector<int32_t> seen;
  Batch b;
  while (loader.next(b)) {
    REQUIRE(b.x.dim() == 2);
    REQUIRE(b.x.size(1) == 3);
    REQUIRE(b.y.shape() == Shape{b.x.size(0)});
    if (sizes) sizes->push_back(b.x.size(0));
    std::vector<float> xv = b.x.to_vector();
    std::vector<int32_t> yv = b.y.to_vector_i32();
    for (size_t i = 0; i < yv.size(); ++i) {
      CHECK(xv[3 * i] == float(yv[i]));
      CHECK(xv[3 * i + 2] == yv[i] + 0.25f);
    }
    seen.insert(seen.end(), yv.begin(), yv.end());
  }
  return seen;
}

}  // namespace

TEST_CASE("dataloader: batches cover every sample once") {
  Dataset ds = counting_dataset(10);
  SUBCASE("in order, last batch partial") {
    DataLoader loader(ds, 3);
    CHECK(loader.num_batches() == 4);
    std::vector<int64_t> sizes;
    std::vector<int32_t> seen = run_epoch(loader, &sizes);
    CHECK(sizes == std::vector<int64_t>{3, 3, 3, 1});
    CHECK(seen == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  }
  SUBCASE("drop_last") {
    DataLoader loader(ds, 3, /*shuffle=*/true, 5, /*drop_last=*/true);
    CHECK(loader.num_batches() == 3);
    std::vector<int64_t> sizes;
    std::vector<int32_t> seen = run_epoch(loader, &sizes);
    CHECK(sizes == std::vector<int64_t>{3, 3, 3});
    CHECK(std::set<int32_t>(seen.begin(), seen.end()).size() == 9);
  }
  SUBCASE("batch larger than the dataset") {
    DataLoader loader(ds, 64);
    CHECK(loader.num_batches() == 1);
    DataLoader dropped(ds, 64, false, 0, true);
    CHECK(dropped.num_batches() == 0);
    CHECK(run_epoch(dropped).empty());
  }
  SUBCASE("shuffled, many batches") {
    Dataset big = counting_dataset(1000);
    DataLoader loader(big, 32, /*shuffle=*/true, 42);
    CHECK(loader.num_batches() == 32);
    for (int e = 0; e < 3; ++e) {
      std::vector<int32_t> seen = run_epoch(loader);
      CHECK(seen.size() == 1000);
      std::sort(seen.begin(), seen.end());
      for (int i = 0; i < 1000; ++i) CHECK(seen[i] == i);
    }
  }
  SUBCASE("next() after the end returns false until the next epoch") {
    DataLoader loader(ds, 4);
    Batch b;
    int count = 0;
    while (loader.next(b)) ++count;  // starts epoch 0 implicitly
    CHECK(count == 3);
    CHECK(loader.epoch() == 0);
    CHECK_FALSE(loader.next(b));
    loader.start_epoch();
    CHECK(loader.epoch() == 1);
    CHECK(loader.next(b));
  }
  SUBCASE("a held batch is not overwritten by the next") {
    DataLoader loader(ds, 2);
    loader.start_epoch();
    Batch first, second;
    REQUIRE(loader.next(first));
    REQUIRE(loader.next(second));
    CHECK(first.y.to_vector_i32() == std::vector<int32_t>{0, 1});
    CHECK(second.y.to_vector_i32() == std::vector<int32_t>{2, 3});
  }
}

TEST_CASE("dataloader: shuffling is seeded and differs per epoch") {
  Dataset ds = counting_dataset(100);
  DataLoader a(ds, 16, true, 7), b(ds, 16, true, 7), c(ds, 16, true, 8);
  std::vector<int32_t> a0 = run_epoch(a), a1 = run_epoch(a);
  std::vector<int32_t> b0 = run_epoch(b), b1 = run_epoch(b);
  std::vector<int32_t> c0 = run_epoch(c);
  CHECK(a0 == b0);
  CHECK(a1 == b1);
  CHECK(a0 != a1);
  CHECK(a0 != c0);
  std::vector<int32_t> identity(100);
  for (int i = 0; i < 100; ++i) identity[i] = i;
  CHECK(a0 != identity);
  // Restarting at an explicit epoch repeats its order (resuming from a checkpoint);
  // a and b have both run epochs 0 and 1.
  std::vector<int64_t> b_order = b.order();
  a.start_epoch(1);
  CHECK(a.order() == b_order);
  // The Rng is portable, so permutations are the same on every platform: pin one.
  CHECK(permutation(10, 7) == std::vector<int64_t>{8, 3, 9, 0, 7, 2, 1, 6, 5, 4});
  CHECK(permutation(0, 7).empty());
  CHECK(permutation(1, 7) == std::vector<int64_t>{0});
}

TEST_CASE("dataloader: the shards of n ranks split every batch in order, without overlap") {
  Dataset ds = counting_dataset(23);
  for (int ranks : {1, 2, 3, 5}) {
    CAPTURE(ranks);
    DataLoader whole(ds, 7, /*shuffle=*/true, 3);
    std::vector<DataLoader> shards(size_t(ranks), DataLoader(ds, 7, true, 3));
    for (int r = 0; r < ranks; ++r) shards[size_t(r)].set_shard(r, ranks);
    Batch all, part;
    while (whole.next(all)) {
      CHECK(all.total == all.x.size(0));
      CHECK(all.first == 0);
      std::vector<int32_t> joined;
      for (int r = 0; r < ranks; ++r) {
        REQUIRE(shards[size_t(r)].next(part));
        CHECK(part.total == all.total);
        CHECK(part.first == int64_t(joined.size()));
        // Balanced: sizes differ by at most one.
        CHECK(std::abs(part.x.size(0) * ranks - all.total) < ranks);
        for (int32_t v : part.y.to_vector_i32()) joined.push_back(v);
      }
      CHECK(joined == all.y.to_vector_i32());
    }
    for (auto& s : shards) CHECK_FALSE(s.next(part));
  }
  DataLoader loader(ds, 4);
  CHECK_THROWS_WITH_AS(loader.set_shard(2, 2), "DataLoader: shard 2 of 2 does not exist",
                       sprig::Error);
  CHECK_THROWS_AS(loader.set_shard(0, 0), sprig::Error);
}

TEST_CASE("dataloader: float targets and bad arguments") {
  Dataset reg = make_friedman1(10, 5, 0.0f, 3);
  DataLoader loader(reg, 4);
  Batch b;
  REQUIRE(loader.next(b));
  CHECK(b.x.shape() == Shape{4, 5});
  CHECK(b.y.shape() == Shape{4, 1});
  CHECK(b.y.to_vector()[2] == reg.labels.to_vector()[2]);

  std::string msg = error_of([&] { DataLoader bad(reg, 0); });
  CHECK(contains(msg, "batch size"));
  CHECK(contains(msg, "got 0"));
  CHECK_THROWS_AS(DataLoader(reg, -3), sprig::Error);

  Dataset mismatched = reg;
  mismatched.labels = Tensor::zeros({9, 1});
  CHECK_THROWS_WITH_AS(DataLoader(mismatched, 2), doctest::Contains("targets"), sprig::Error);
  Dataset empty_ds;
  CHECK_THROWS_AS(DataLoader(empty_ds, 2), sprig::Error);
}

// ---- Friedman #1 ----------------------------------------------------------------------------
TEST_CASE("friedman1: shapes, range and formula") {
  Dataset ds = make_friedman1(500, 10, 0.0f, 1);
  CHECK(ds.images.shape() == Shape{500, 10});
  CHECK(ds.labels.shape() == Shape{500, 1});
  CHECK(ds.labels.dtype() == DType::F32);
  std::vector<float> x = ds.images.to_vector(), y = ds.labels.to_vector();
  for (float v : x) CHECK((v >= 0.0f && v < 1.0f));
  for (int i = 0; i < 500; ++i) {
    const float* r = &x[10 * i];
    double expect =
        10 * std::sin(M_PI * r[0] * r[1]) + 20 * (r[2] - 0.5) * (r[2] - 0.5) + 10 * r[3] + 5 * r[4];
    CHECK(y[i] == doctest::Approx(expect).epsilon(1e-6));
  }
  CHECK_THROWS_WITH_AS(make_friedman1(10, 4), doctest::Contains("n_features"), sprig::Error);
  CHECK_THROWS_AS(make_friedman1(0), sprig::Error);
  CHECK_THROWS_AS(make_friedman1(10, 10, -1.0f), sprig::Error);
}

TEST_CASE("friedman1: seeded, noise added after X") {
  Dataset a = make_friedman1(2000, 10, 0.0f, 9), b = make_friedman1(2000, 10, 0.0f, 9);
  Dataset c = make_friedman1(2000, 10, 0.0f, 10);
  CHECK(a.images.to_vector() == b.images.to_vector());
  CHECK(a.labels.to_vector() == b.labels.to_vector());
  CHECK(a.images.to_vector() != c.images.to_vector());
  Dataset noisy = make_friedman1(2000, 10, 0.5f, 9);
  CHECK(noisy.images.to_vector() == a.images.to_vector());
  std::vector<float> y0 = a.labels.to_vector(), y1 = noisy.labels.to_vector();
  double ss = 0;
  for (size_t i = 0; i < y0.size(); ++i) ss += (y1[i] - y0[i]) * (y1[i] - y0[i]);
  CHECK(std::sqrt(ss / y0.size()) == doctest::Approx(0.5).epsilon(0.1));
}

TEST_CASE("train_test_split: sizes, disjoint parts, seeded") {
  Dataset ds = make_friedman1(10000, 10, 0.0f, 4);
  auto [train, test] = train_test_split(ds, 0.33, 4);
  CHECK(train.size() == 6700);
  CHECK(test.size() == 3300);
  CHECK(train.images.shape() == Shape{6700, 10});
  CHECK(test.labels.shape() == Shape{3300, 1});
  CHECK(train.name == "friedman1/train");
  CHECK(test.name == "friedman1/test");
  // Together the parts hold every original row once (compare the first feature).
  std::vector<float> all = ds.images.to_vector(), tr = train.images.to_vector(),
                     te = test.images.to_vector();
  std::vector<float> orig, parts;
  for (size_t i = 0; i < all.size(); i += 10) orig.push_back(all[i]);
  for (size_t i = 0; i < tr.size(); i += 10) parts.push_back(tr[i]);
  for (size_t i = 0; i < te.size(); i += 10) parts.push_back(te[i]);
  std::sort(orig.begin(), orig.end());
  std::sort(parts.begin(), parts.end());
  CHECK(orig == parts);
  // Rows keep their targets.
  std::vector<float> ty = test.labels.to_vector();
  const float* r = &te[0];
  double expect =
      10 * std::sin(M_PI * r[0] * r[1]) + 20 * (r[2] - 0.5) * (r[2] - 0.5) + 10 * r[3] + 5 * r[4];
  CHECK(ty[0] == doctest::Approx(expect).epsilon(1e-6));

  auto again = train_test_split(ds, 0.33, 4);
  CHECK(again.first.images.to_vector() == tr);
  auto other = train_test_split(ds, 0.33, 5);
  CHECK(other.first.images.to_vector() != tr);

  CHECK_THROWS_WITH_AS(train_test_split(ds, 0.0, 1), doctest::Contains("(0, 1)"), sprig::Error);
  CHECK_THROWS_AS(train_test_split(ds, 1.0, 1), sprig::Error);
  CHECK_THROWS_AS(train_test_split(take(ds, 1), 0.5, 1), sprig::Error);
}
