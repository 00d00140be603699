// Post-training int8 quantisation (infer/quantize.h): one int8 layer computes exactly what its
// float layer computes on the quantised input with the dequantised weight; pruned zeros stay
// zero; calibration finds the ranges each method defines; int8 packed files round-trip, are
// small, and refuse corruption with a sprig::Error.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "infer/quantize.h"
#include "kernels/cpu/quantize.h"
#include "tests/pack_test_util.h"
#include "tests/temp_dir.h"
#include "train/trainer.h"

using namespace sprig;
using namespace sprig::test::pack;

namespace {

infer::QuantizeOptions options(infer::PackFormat f, int64_t batch = 2, int64_t block_rows = 1) {
  infer::QuantizeOptions o;
  o.int8_only = true;  // auto among the int8 kernels; the mixed plan has its own case
  o.pack.format = f;
  o.pack.batch = batch;
  o.pack.repeats = 1;
  o.pack.block_rows = block_rows;
  return o;
}

// The int8 plans a test runs through: each forced format (blocks of 1 and 4 rows), and auto.
struct Int8Format {
  infer::PackFormat format;
  int64_t block_rows;
  const char* linear_format;  // what a linear layer becomes ("" for auto: any int8 kernel)
};
constexpr Int8Format kInt8Formats[] = {
    {infer::PackFormat::Dense, 1, "int8 dense"},
    {infer::PackFormat::Csr, 1, "int8 csr"},
    {infer::PackFormat::Bsr, 1, "int8 bsr 1x4"},
    {infer::PackFormat::Bsr, 4, "int8 bsr 4x4"},
    {infer::PackFormat::Auto, 1, ""},
};

// x with every value replaced by what its uint8 code stands for: scale x (q - zero).
Tensor fake_quantize(const Tensor& x, cpu::ActivationQuant a) {
  std::vector<uint8_t> q(size_t(x.numel()));
  cpu::quantize_activations(x.data(), x.numel(), a, q.data());
  Tensor y = Tensor::empty(x.shape());
  for (size_t i = 0; i < q.size(); ++i) y.data()[i] = a.scale * float(int32_t(q[i]) - a.zero);
  return y;
}

// How many rows of logits a and b (N, classes) have their largest value in the same column.
int same_class(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const int64_t n = a.size(0), c = a.size(1);
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  int same = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto ax = std::max_element(x.begin() + i * c, x.begin() + (i + 1) * c) - x.begin();
    const auto ay = std::max_element(y.begin() + i * c, y.begin() + (i + 1) * c) - y.begin();
    same += ax == ay;
  }
  return same;
}

}  // namespace

TEST_CASE("an int8 layer is its float layer on the quantised input and dequantised weight") {
  // One weighted layer (and a fused ReLU) per model: the int8 kernel's exact int32 sum, scaled,
  // must equal the float layer's sum of the same products up to float rounding. Odd shapes,
  // strides and padding; dense, CSR and block kernels; pruned and unpruned weights.
  struct Case {
    const char* spec;
    Shape in;
  };
  const Case cases[] = {
      {"flatten linear(13)", {1, 5, 7}},   {"flatten linear(33) relu", {2, 3, 6}},
      {"conv(5,3,pad=1) relu", {3, 9, 7}}, {"conv(17,3,stride=2)", {2, 11, 10}},
      {"conv(4,1)", {33, 5, 5}},
  };
  for (const Case& c : cases)
    for (double amount : {0.0, 0.8})
      for (const Int8Format& f : kInt8Formats) {
        CAPTURE(c.spec);
        CAPTURE(amount);
        const std::string format = f.linear_format;
        CAPTURE(format);
        nn::Model m = pruned(c.spec, c.in, prune::Granularity::Element, amount);
        Tensor calib = random_input(m, 64, 1);
        infer::InferenceModel q =
            infer::quantize_model(m, calib, options(f.format, 2, f.block_rows));
        REQUIRE(q.layers.size() == 1);
        const infer::PackedLayer& l = q.layers[0];
        REQUIRE(l.int8);
        CHECK(l.format().rfind("int8 ", 0) == 0);
        CHECK(!l.reason.empty());
        if (l.conv) CHECK(l.format() == "int8 dense");  // int8 only: conv has no other kernel
        if (!l.conv && *f.linear_format) CHECK(l.format() == f.linear_format);
        for (int64_t batch : {1, 5, 17}) {
          Tensor x = random_input(m, batch, 7);  // partly outside the calibrated range: clamped
          NoGradGuard no_grad;
          Tensor want = q.model.forward(fake_quantize(x, l.int8->input));
          CHECK(rel_diff(want, q.forward(x)) <= 1e-5);
        }
      }
}

TEST_CASE("int8 keeps every pruned zero and the model close to the float one") {
  nn::Model m = pruned(
      "conv(6,3,pad=1) relu maxpool(2) conv(8,3,pad=1) relu flatten linear(32) relu linear(10)",
      {1, 12, 12}, prune::Granularity::Element, 0.9);
  Tensor calib = random_input(m, 200, 2);
  infer::QuantizeOptions o = options(infer::PackFormat::Auto);
  o.pack.shrink = false;
  infer::InferenceModel q = infer::quantize_model(m, calib, o);
  auto layers = m.named_parameters();
  for (const infer::PackedLayer& l : q.layers) {
    CAPTURE(l.name);
    std::vector<float> w;
    for (auto& [name, p] : layers)
      if (name == l.name + ".weight") w = p->value.to_vector();
    REQUIRE(w.size() == l.int8->weight.size());
    for (size_t i = 0; i < w.size(); ++i)
      if (w[i] == 0.0f) CHECK(l.int8->weight[i] == 0);
    CHECK(l.nonzero <= int64_t(std::count_if(w.begin(), w.end(), [](float v) { return v != 0; })));
  }
  // End to end, the int8 model's logits stay within a few steps of the float ones and pick the
  // same class for nearly every input.
  Tensor x = random_input(m, 300, 5);
  NoGradGuard no_grad;
  Tensor want = m.forward(x), got = q.forward(x);
  CHECK(rel_diff(want, got) <= 0.05);
  CHECK(same_class(want, got) >= 294);  // >= 98%
}

TEST_CASE(
    "int8 layers hand each other uint8 codes, and the model computes what it did with floats") {
  // conv -> relu -> conv (direct, requantised), relu -> flatten -> linear (requantised through
  // the flatten) -> relu -> linear; a 1x1 conv (im2col: floats, not codes) into a conv; and an
  // mlp; linear layers on each int8 kernel. The executor hands codes on only when nothing
  // observes the activations, so an observed forward is the float-between path: both must
  // agree bit for bit.
  const char* specs[] = {
      "conv(6,3,pad=1) relu conv(8,3,pad=1) relu flatten linear(32) relu linear(10)",
      "conv(4,1) relu conv(6,3,pad=1) relu maxpool(2) flatten linear(10)",
      "flatten linear(40) relu linear(20) relu linear(10)",
  };
  for (const char* spec : specs)
    for (const Int8Format& f : kInt8Formats) {  // linear layers dense, csr or blocks
      if (f.format == infer::PackFormat::Auto) continue;
      CAPTURE(spec);
      const std::string format = f.linear_format;
      CAPTURE(format);
      nn::Model m = pruned(spec, {1, 12, 12}, prune::Granularity::Element, 0.7);
      infer::InferenceModel q =
          infer::quantize_model(m, random_input(m, 64, 2), options(f.format, 2, f.block_rows));
      for (auto& l : q.layers) REQUIRE(l.int8);
      NoGradGuard no_grad;
      for (int64_t batch : {1, 5, 33}) {
        CAPTURE(batch);
        Tensor x = random_input(m, batch, 7);
        int observed = 0;
        const Tensor floats_between =
            q.forward_observed(x, [&](const infer::PackedLayer&, const Tensor&) { ++observed; });
        CHECK(observed == int(q.layers.size()));
        CHECK(q.forward(x).to_vector() == floats_between.to_vector());
      }
    }
}

TEST_CASE("calibration: minmax, percentile and entropy ranges") {
  // One linear layer, so its input is the samples: 20,000 values uniform in [0, 1), one -3 and
  // one outlier at 100.
  nn::Model m = nn::build_model("flatten linear(3)", {1, 4, 5}, 1);
  Rng rng(3);
  Tensor s = Tensor::uniform({1000, 1, 4, 5}, 0.0f, 1.0f, rng);
  s.data()[17] = 100.0f;
  s.data()[4242] = -3.0f;
  infer::PackOptions po;
  po.format = infer::PackFormat::Dense;
  infer::InferenceModel im = infer::pack_model(m, po);
  infer::QuantizeOptions o;
  o.calibration_batch = 77;  // batches that do not divide the samples
  auto r = infer::calibrate(im, s, o);
  REQUIRE(r.size() == 1);
  CHECK(r[0].lo == -3.0f);
  CHECK(r[0].hi == 100.0f);
  o.calibration = infer::Calibration::Percentile;
  o.percentile = 99.9;  // 20 values in each tail are clipped: both outliers go
  r = infer::calibrate(im, s, o);
  const double bin = 103.0 / 16384;
  CHECK(r[0].lo >= -bin);
  CHECK(r[0].lo <= 0.0f + bin);
  CHECK(r[0].hi >= 1.0f - bin);
  CHECK(r[0].hi <= 1.0f + 2 * bin);
  o.percentile = 100.0;  // nothing clipped: minmax up to float rounding of the bin edges
  r = infer::calibrate(im, s, o);
  CHECK(r[0].lo == doctest::Approx(-3.0));
  CHECK(r[0].hi == doctest::Approx(100.0));
  // Entropy keeps the mass: the single outlier is not worth 255 coarse levels.
  o.calibration = infer::Calibration::Entropy;
  r = infer::calibrate(im, s, o);
  CHECK(r[0].lo == -3.0f);
  CHECK(r[0].hi >= 0.9f);
  CHECK(r[0].hi <= 5.0f);
  // Bad calibration input names what is wrong.
  o.percentile = 40;
  o.calibration = infer::Calibration::Percentile;
  CHECK_THROWS_WITH_AS(infer::calibrate(im, s, o), doctest::Contains("--percentile"), Error);
  o.percentile = 99;
  CHECK_THROWS_WITH_AS(infer::calibrate(im, Tensor::zeros({3, 20}), o),
                       doctest::Contains("calibration: samples are"), Error);
  s.data()[5] = std::nanf("");
  CHECK_THROWS_WITH_AS(infer::calibrate(im, s, o), doctest::Contains("not finite"), Error);
  CHECK_THROWS_WITH_AS(infer::parse_calibration("kl"), doctest::Contains("'kl'"), Error);
}

TEST_CASE("int8 packed files round-trip, are small when pruned, and refuse corruption") {
  test::TempDir dir("sprig_test_quantize");
  // 256 x 256 at 90%: the int8 weight goes to the file as CSR; unpruned as dense bytes.
  for (double amount : {0.0, 0.9})
    for (const Int8Format& f : kInt8Formats) {
      if (f.format == infer::PackFormat::Auto) continue;
      CAPTURE(amount);
      const std::string format = f.linear_format;
      CAPTURE(format);
      nn::Model m = pruned("flatten linear(256) relu linear(10)", {1, 16, 16},
                           prune::Granularity::Element, amount);
      infer::InferenceModel q =
          infer::quantize_model(m, random_input(m, 50, 1), options(f.format, 2, f.block_rows));
      for (const infer::PackedLayer& l : q.layers) CHECK(l.format() == f.linear_format);
      const std::string path = dir.file("q.safetensors");
      infer::save_packed(path, q, {{"dataset", "x"}});
      infer::PackedFile pf = infer::load_packed(path);
      REQUIRE(pf.model.layers.size() == q.layers.size());
      for (size_t i = 0; i < q.layers.size(); ++i) {
        const infer::PackedLayer &a = q.layers[i], &b = pf.model.layers[i];
        REQUIRE(b.int8);
        CHECK(b.format() == a.format());
        CHECK(b.int8->weight == a.int8->weight);
        CHECK(b.int8->scales == a.int8->scales);
        CHECK(b.int8->input.scale == a.int8->input.scale);
        CHECK(b.int8->input.zero == a.int8->input.zero);
        CHECK(b.nonzero == a.nonzero);
        CHECK(b.reason == a.reason);
      }
      Tensor x = random_input(m, 4, 2);
      CHECK(rel_diff(q.forward(x), pf.model.forward(x)) == 0.0);
      infer::SizeReport s = infer::size_report(m, path);
      MESSAGE("int8 at ", amount, ": ", s.packed_bytes, " B of a ", s.dense_file_bytes,
              " B dense file");
      if (amount == 0.0) CHECK(s.ratio() <= 0.27);       // a quarter, plus scales and header
      if (amount == 0.9) CHECK(s.ratio() <= 1.0 / 6.0);  // the bar: 1/6 at most
    }

  nn::Model m =
      pruned("flatten linear(24) relu linear(6)", {1, 5, 7}, prune::Granularity::Element, 0.8);
  const std::string sparse = dir.file("sparse.safetensors"), dense = dir.file("dense.safetensors");
  infer::save_packed(
      sparse, infer::quantize_model(m, random_input(m, 20, 1), options(infer::PackFormat::Bsr)));
  nn::Model full = nn::build_model("flatten linear(24) relu linear(6)", {1, 5, 7}, 2);
  infer::save_packed(dense, infer::quantize_model(full, random_input(full, 20, 1),
                                                  options(infer::PackFormat::Dense)));
  using T = std::vector<std::pair<std::string, Tensor>>;
  using M = std::map<std::string, std::string>;
  expect_corrupt(
      sparse, [](T& t, M&) { tensor(t, "1.weight.int8.scale").data()[2] = 0.0f; },
      "scales must be positive");
  expect_corrupt(
      sparse, [](T& t, M&) { tensor(t, "1.input.zero").data_as<int32_t>()[0] = 256; },
      "zero point 256");
  expect_corrupt(
      sparse, [](T& t, M&) { tensor(t, "1.input.scale").data()[0] = -1.0f; },
      "not a positive scale");
  expect_corrupt(
      sparse,
      [](T& t, M&) {
        uint8_t* c = tensor(t, "1.weight.int8.col").data_as<uint8_t>();
        c[0] = 0xff, c[1] = 0x00;  // column 255 of 35
      },
      "out of range");
  expect_corrupt(
      sparse,
      [](T& t, M&) {
        Tensor& v = tensor(t, "1.weight.int8.values");
        v = Tensor::zeros({v.numel() + 1}, DType::U8);
      },
      "ends at");
  expect_corrupt(
      sparse, [](T& t, M&) { t.erase(t.begin() + 1); }, "missing tensor");
  expect_corrupt(
      sparse, [](T&, M& m) { m["pack.1"] = "int8 bsr 2x4"; }, "'int8 bsr 2x4'");
  expect_corrupt(
      dense,
      [](T& t, M&) {
        tensor(t, "1.weight.int8") = Tensor::zeros({24, 36}, DType::U8);
      },
      "1.weight.int8");
  expect_corrupt(
      dense, [](T& t, M&) { tensor(t, "3.weight.int8.scale").data()[0] = std::nanf(""); },
      "must be finite");
}

TEST_CASE("QAT: the fake-quantised model trains, keeps its masks, and is what int8 runs") {
  // A pruned one-layer model (so the int8 and fake-quantised outputs may differ only by float
  // rounding) and a deeper one (compared by the class each picks).
  for (const char* spec : {"flatten linear(10)", "conv(4,3,pad=1) relu flatten linear(10)"}) {
    CAPTURE(spec);
    nn::Model m = pruned(spec, {1, 6, 6}, prune::Granularity::Element, 0.7);
    Rng rng(8);
    data::Dataset train;
    train.images = Tensor::uniform({256, 1, 6, 6}, -1.0f, 2.0f, rng);
    std::vector<int32_t> labels(256);
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t(i % 10);
    train.labels = Tensor::from_vector_i32(labels, {256});
    infer::QuantizeOptions o = options(infer::PackFormat::Dense);
    o.pack.shrink = false;
    std::vector<infer::InputRange> ranges;
    infer::InferenceModel q = infer::prepare_quantization(m, train.images, o, &ranges);
    const std::vector<float> before = q.model.named_parameters()[0].second->value.to_vector();
    infer::set_fake_quant(q, ranges);
    q.model.net->train();
    auto optim = train::make_optimizer({"adam", 1e-2f}, q.model.parameters());
    train::FitConfig fc;
    fc.epochs = 2;
    fc.batch_size = 32;
    train::fit(q.model, *optim, train, train, train::Task::Classification, fc);
    const std::vector<float> after = q.model.named_parameters()[0].second->value.to_vector();
    CHECK(after != before);  // it trained
    for (size_t i = 0; i < before.size(); ++i)
      if (before[i] == 0.0f) CHECK(after[i] == 0.0f);  // and pruned weights stayed pruned
    Tensor x = Tensor::uniform({50, 1, 6, 6}, -1.0f, 2.0f, rng);
    q.model.net->eval();
    Tensor simulated;
    {
      NoGradGuard no_grad;
      simulated = q.model.forward(x);  // fake-quantised: what training optimised
    }
    infer::quantize_layers(q, ranges, o);
    for (const infer::PackedLayer& l : q.layers) {
      REQUIRE(l.int8);
      // quantize_layers took the fake quantisers off: the dense model is the plain reference.
      if (auto* lin = dynamic_cast<nn::Linear*>(l.module)) CHECK(!lin->fake_quant);
    }
    Tensor int8 = q.forward(x);
    if (q.layers.size() == 1) {
      CHECK(rel_diff(simulated, int8) <= 1e-5);
    } else {
      CHECK(same_class(simulated, int8) >= 49);
      CHECK(rel_diff(simulated, int8) <= 5e-3);
    }
  }
}

TEST_CASE("the auto plan measures int8 and float kernels per layer and keeps the fastest") {
  nn::Model m = pruned("flatten linear(64) relu linear(32) relu linear(10)", {1, 8, 8},
                       prune::Granularity::Element, 0.9);
  Tensor calib = random_input(m, 64, 1);
  infer::QuantizeOptions o;  // int8_only false: the mixed plan
  o.pack.batch = 4;
  o.pack.repeats = 2;
  infer::InferenceModel q = infer::quantize_model(m, calib, o);
  Tensor x = random_input(m, 5, 3);
  NoGradGuard no_grad;
  Tensor want = m.forward(x);
  int float_layers = 0;
  for (const infer::PackedLayer& l : q.layers) {
    CAPTURE(l.name);
    CAPTURE(l.reason);
    bool int8_time = false, float_time = false;
    for (const infer::CandidateTime& t : l.times)
      (t.format.rfind("int8 ", 0) == 0 ? int8_time : float_time) = true;
    CHECK(int8_time);
    CHECK(float_time);
    // The winner is the fastest candidate measured, and the reason says so.
    double fastest = INFINITY;
    std::string winner;
    for (const infer::CandidateTime& t : l.times)
      if (t.ms < fastest) fastest = t.ms, winner = t.format;
    CHECK(l.reason.rfind(winner + " ", 0) == 0);
    CHECK((l.int8 != nullptr) == (winner.rfind("int8 ", 0) == 0));
    float_layers += !l.int8;
  }
  // Float layers keep the float weights: a plan with no int8 layer computes the float model.
  if (float_layers == int(q.layers.size())) CHECK(rel_diff(want, q.forward(x)) <= 1e-5);
  CHECK(rel_diff(want, q.forward(x)) <= 0.05);
  // The file records the mix and loads it back.
  test::TempDir dir("sprig_test_quantize_mixed");
  infer::save_packed(dir.file("m.safetensors"), q);
  infer::PackedFile pf = infer::load_packed(dir.file("m.safetensors"));
  for (size_t i = 0; i < q.layers.size(); ++i)
    CHECK(pf.model.layers[i].format() == q.layers[i].format());
  CHECK(rel_diff(q.forward(x), pf.model.forward(x)) == 0.0);
}

TEST_CASE("quantize refuses int8 formats it has no kernel for") {
  nn::Model m = pruned("flatten linear(8)", {1, 4, 4}, prune::Granularity::Element, 0.5);
  Tensor calib = random_input(m, 8, 1);
  CHECK_THROWS_WITH_AS(infer::quantize_model(m, calib, options(infer::PackFormat::Nm)),
                       doctest::Contains("no N:M kernel"), Error);
  CHECK_THROWS_WITH_AS(infer::quantize_model(m, calib, options(infer::PackFormat::Bsr, 2, 2)),
                       doctest::Contains("1x4 or 4x4, got 2x4"), Error);
}
