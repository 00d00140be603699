// CIFAR-10's binary files on small copies the tests write in the real format (a few records per
// file), per-channel normalisation by hand, every kind of damaged file, and the crop-and-flip
// augmentation against a naive reference that pads the image explicitly.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "datasets/augment.h"
#include "datasets/cifar10.h"
#include "datasets/dataloader.h"
#include "tests/temp_dir.h"
#include "train/trainer.h"

using namespace sprig;
using namespace sprig::data;
namespace fs = std::filesystem;
using test::TempDir;
using test::write_bytes;

namespace {

// The pixel byte at (channel, row, col) of record r of file `file`: distinct enough across
// records, files and positions that any mix-up shows.
uint8_t pixel(int file, int r, int c, int y, int x) {
  return uint8_t((file * 71 + r * 37 + c * 101 + y * 7 + x * 3) % 256);
}
uint8_t label(int file, int r) {
  return uint8_t((file * 3 + r) % 10);
}

// `records` records in the real layout: label byte, then the R, G, B planes row-major.
std::vector<uint8_t> batch_file(int file, int records) {
  std::vector<uint8_t> b;
  for (int r = 0; r < records; ++r) {
    b.push_back(label(file, r));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) b.push_back(pixel(file, r, c, y, x));
  }
  return b;
}

// The six files of a fake CIFAR-10: training files 0..4 with train_records each, the test file
// (number 5) with test_records.
void write_cifar10(const TempDir& d, int train_records, int test_records) {
  for (int f = 0; f < 5; ++f)
    write_bytes(d.file("data_batch_" + std::to_string(f + 1) + ".bin"),
                batch_file(f, train_records));
  write_bytes(d.file("test_batch.bin"), batch_file(5, test_records));
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("cifar10: a fake six-file directory loads with the right labels and pixels") {
  TempDir d;
  write_cifar10(d, 3, 2);
  TrainTest tt = load_cifar10(d.path);
  CHECK(tt.train.name == "cifar10/train");
  CHECK(tt.test.name == "cifar10/test");
  REQUIRE(tt.train.images.shape() == Shape{15, 3, 32, 32});
  REQUIRE(tt.test.images.shape() == Shape{2, 3, 32, 32});
  REQUIRE(tt.train.labels.dtype() == DType::I32);
  for (int f = 0; f < 6; ++f) {
    const Dataset& ds = f < 5 ? tt.train : tt.test;
    const int records = f < 5 ? 3 : 2;
    for (int r = 0; r < records; ++r) {
      const int64_t i = f < 5 ? f * 3 + r : r;  // training files concatenate in order
      CAPTURE(f);
      CAPTURE(r);
      CHECK(ds.labels.data_as<int32_t>()[i] == label(f, r));
      const float* img = ds.images.data() + i * 3072;  // (3, 32, 32)
      for (int c = 0; c < 3; ++c)
        for (int y : {0, 5, 31})
          for (int x : {0, 17, 31})
            REQUIRE(img[(c * 32 + y) * 32 + x] == pixel(f, r, c, y, x) / 255.0f);
    }
  }
}

TEST_CASE("cifar10: --dataset cifar10 normalises each channel with CIFAR-10's statistics") {
  TempDir d;
  write_cifar10(d, 2, 1);
  train::DataSource src = train::load_data_source("cifar10", d.path, 0);
  CHECK(src.input_shape == Shape{3, 32, 32});
  CHECK(src.task == train::Task::Classification);
  const double mean[3] = {0.4914, 0.4822, 0.4465}, stdev[3] = {0.2470, 0.2435, 0.2616};
  REQUIRE(src.black.size() == 3);
  for (int c = 0; c < 3; ++c) {
    CAPTURE(c);
    CHECK(src.black[c] == doctest::Approx(-mean[c] / stdev[c]).epsilon(1e-6));
    for (int y : {0, 9})
      for (int x : {3, 30}) {
        // Record 1 of file 2 is training sample 2 * 2 + 1.
        const double want = (pixel(2, 1, c, y, x) / 255.0 - mean[c]) / stdev[c];
        CHECK(src.data.train.images.data()[((5 * 3 + c) * 32 + y) * 32 + x] ==
              doctest::Approx(want).epsilon(1e-6));
      }
  }
  // A pure black and a pure white pixel, by hand: channel 0 maps 0 -> -1.98947, 255 -> 2.05911.
  CHECK((0.0f - 0.4914f) / 0.2470f == doctest::Approx(-1.989474).epsilon(1e-6));
  CHECK((1.0f - 0.4914f) / 0.2470f == doctest::Approx(2.059109).epsilon(1e-6));
}

TEST_CASE("cifar10: missing, empty, truncated files and bad labels are named") {
  TempDir d;
  SUBCASE("a directory that does not exist") {
    std::string e = error_of([&] { load_cifar10(d.file("nowhere")); });
    CHECK(e.find(d.file("nowhere")) != std::string::npos);
    CHECK(e.find("data_batch_1.bin .. data_batch_5.bin and test_batch.bin") != std::string::npos);
  }
  SUBCASE("missing files: one message naming each missing file and the directory") {
    write_cifar10(d, 1, 1);
    fs::remove(d.file("data_batch_3.bin"));
    fs::remove(d.file("test_batch.bin"));
    std::string e = error_of([&] { load_cifar10(d.path); });
    CHECK(e.find(d.path + " lacks data_batch_3.bin, test_batch.bin") != std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
  }
  SUBCASE("an empty file") {
    write_cifar10(d, 1, 1);
    write_bytes(d.file("data_batch_2.bin"), {});
    std::string e = error_of([&] { load_cifar10(d.path); });
    CHECK(e.find(d.file("data_batch_2.bin") + ": empty file") != std::string::npos);
  }
  SUBCASE("a truncated file") {
    write_cifar10(d, 2, 1);
    std::vector<uint8_t> cut = batch_file(4, 2);
    cut.resize(3073 + 100);
    write_bytes(d.file("data_batch_5.bin"), cut);
    std::string e = error_of([&] { load_cifar10(d.path); });
    CHECK(e.find(d.file("data_batch_5.bin") + ": 3173 bytes is not a whole number of 3073-byte") !=
          std::string::npos);
    CHECK(e.find("record 1 starts at byte 3073 and has only 100 bytes") != std::string::npos);
  }
  SUBCASE("a label above 9") {
    write_cifar10(d, 3, 1);
    std::vector<uint8_t> bad = batch_file(0, 3);
    bad[2 * 3073] = 10;
    write_bytes(d.file("data_batch_1.bin"), bad);
    std::string e = error_of([&] { load_cifar10(d.path); });
    CHECK(e.find(d.file("data_batch_1.bin") +
                 ": record 2 (byte offset 6146) has label 10, outside 0..9") != std::string::npos);
  }
  SUBCASE("a directory where a file should be") {
    write_cifar10(d, 1, 1);
    fs::remove(d.file("test_batch.bin"));
    fs::create_directories(d.file("test_batch.bin"));
    std::string e = error_of([&] { load_cifar10(d.path); });
    CHECK(e.find(d.file("test_batch.bin") + ": not a regular file") != std::string::npos);
  }
}

// ---- augmentation ----------------------------------------------------------------------------

namespace {
// The reference: build the padded image (C, H + 2p, W + 2p) explicitly, cut the window, then
// mirror it, as torchvision's RandomCrop(padding=p) followed by RandomHorizontalFlip does.
std::vector<float> naive_crop_flip(const std::vector<float>& x, int64_t N, int64_t C, int64_t H,
                                   int64_t W, const std::vector<CropFlip>& draws, int64_t p,
                                   const std::vector<float>& fill) {
  std::vector<float> out(x.size());
  const int64_t PH = H + 2 * p, PW = W + 2 * p;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c) {
      std::vector<float> padded(size_t(PH * PW), fill[c]);  // (PH, PW)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t xx = 0; xx < W; ++xx)
          padded[(y + p) * PW + xx + p] = x[((i * C + c) * H + y) * W + xx];
      std::vector<float> crop(size_t(H * W));  // (H, W)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t xx = 0; xx < W; ++xx)
          crop[y * W + xx] = padded[(draws[i].dy + y) * PW + draws[i].dx + xx];
      for (int64_t y = 0; y < H; ++y)
        for (int64_t xx = 0; xx < W; ++xx)
          out[((i * C + c) * H + y) * W + xx] =
              draws[i].flip ? crop[y * W + (W - 1 - xx)] : crop[y * W + xx];
    }
  return out;
}
}  // namespace

TEST_CASE("augment: crop and flip match the explicit-padding reference") {
  const int64_t N = 6, C = 3, H = 5, W = 7, pad = 4;
  std::vector<float> xv(size_t(N * C * H * W));
  for (size_t k = 0; k < xv.size(); ++k) xv[k] = float(k) * 0.25f + 1.0f;
  Tensor x = Tensor::from_vector(xv, {N, C, H, W});
  const std::vector<float> fill = {-1.5f, -2.0f, -2.5f};
  // Every corner and the centre, flipped and not, then random draws.
  std::vector<CropFlip> draws = {{0, 0, false}, {8, 8, true}, {0, 8, true},
                                 {8, 0, false}, {4, 4, true}, {4, 4, false}};
  CHECK(crop_flip(x, draws, pad, fill).to_vector() ==
        naive_crop_flip(xv, N, C, H, W, draws, pad, fill));
  Rng rng(5);
  for (int round = 0; round < 20; ++round) {
    draws = draw_crop_flip(N, pad, rng);
    REQUIRE(crop_flip(x, draws, pad, fill).to_vector() ==
            naive_crop_flip(xv, N, C, H, W, draws, pad, fill));
  }
  // The centred, unflipped crop is the image itself; the padded border holds the fill.
  auto same = crop_flip(x, {N, CropFlip{4, 4, false}}, pad, fill).to_vector();
  CHECK(same == xv);
  auto corner = crop_flip(x, {N, CropFlip{0, 0, false}}, pad, fill).to_vector();
  CHECK(corner[0] == -1.5f);          // channel 0, top-left: padding
  CHECK(corner[H * W + 0] == -2.0f);  // channel 1
  // Output (y, x) of the (0, 0) crop is source (y - 4, x - 4): (4, 4) is the image's (0, 0),
  // (4, 6) its (0, 2).
  CHECK(corner[(H - 1) * W + 4] == 1.0f);
  CHECK(corner[(H - 1) * W + 6] == 1.5f);
  CHECK_THROWS_AS(crop_flip(x, {N, CropFlip{9, 0, false}}, pad, fill), Error);
  CHECK_THROWS_AS(crop_flip(x, draws, pad, {0.0f}), Error);
}

TEST_CASE("augment: draws are seeded per (seed, epoch, batch) and cover every offset") {
  auto draws_of = [](uint64_t seed, int64_t epoch, int64_t batch) {
    Rng rng(augment_seed(seed, epoch, batch));
    return draw_crop_flip(64, 4, rng);
  };
  auto key = [](const std::vector<CropFlip>& v) {
    std::vector<int64_t> k;
    for (const CropFlip& d : v) k.insert(k.end(), {d.dy, d.dx, int64_t(d.flip)});
    return k;
  };
  CHECK(key(draws_of(3, 1, 2)) == key(draws_of(3, 1, 2)));
  CHECK(key(draws_of(3, 1, 2)) != key(draws_of(4, 1, 2)));  // another seed
  CHECK(key(draws_of(3, 1, 2)) != key(draws_of(3, 2, 2)));  // another epoch
  CHECK(key(draws_of(3, 1, 2)) != key(draws_of(3, 1, 3)));  // another batch
  // The stream is the documented one: three Rng::below draws per sample.
  Rng rng(augment_seed(3, 1, 2));
  for (const CropFlip& d : draws_of(3, 1, 2)) {
    CHECK(d.dy == int64_t(rng.below(9)));
    CHECK(d.dx == int64_t(rng.below(9)));
    CHECK(d.flip == (rng.below(2) == 1));
  }
  // Over many draws every offset 0..8 and both flips occur.
  std::vector<int> seen_dy(9), seen_dx(9), seen_flip(2);
  for (int64_t b = 0; b < 20; ++b)
    for (const CropFlip& d : draws_of(0, 0, b))
      ++seen_dy[d.dy], ++seen_dx[d.dx], ++seen_flip[d.flip];
  for (int k = 0; k < 9; ++k) CHECK((seen_dy[k] > 0 && seen_dx[k] > 0));
  CHECK((seen_flip[0] > 0 && seen_flip[1] > 0));
}
