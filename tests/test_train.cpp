// End-to-end training on real data: the first accuracy bar, determinism, and regression.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "datasets/mnist.h"
#include "kernels/cpu/threads.h"
#include "tests/sanitized.h"
#include "train/trainer.h"

using namespace sprig;

static bool have_fashion_mnist() {
  return std::filesystem::exists(std::string(data::kFashionMnistDefaultDir) +
                                 "/train-images-idx3-ubyte.gz");
}

TEST_CASE("mlp trained on 5,000 Fashion-MNIST samples for one epoch passes 80% test accuracy") {
  // The dataset is installed by scripts/setup.sh (Debian's dataset-fashion-mnist); without it
  // this test fails rather than passing vacuously.
  REQUIRE_MESSAGE(have_fashion_mnist(), "Fashion-MNIST missing: run scripts/setup.sh");
  train::DataSource src = train::load_data_source("fashion-mnist", "", 0);
  data::Dataset train = data::take(src.data.train, 5000);
  nn::Model model = nn::build_model("mlp", src.input_shape, 0);
  // One pass over 5,000 samples is few steps; small batches and a cosine decay (which removes
  // the noise of the last steps) make the most of them. With batch 64 and a constant lr, sprig
  // and PyTorch alike end near 77%.
  auto opt = train::make_optimizer({"adam", 1e-3f}, model.parameters());
  train::FitConfig cfg;
  cfg.epochs = 1;
  cfg.batch_size = 4;
  cfg.lr_schedule = train::LrSchedule::Cosine;
  auto history = train::fit(model, *opt, train, src.data.test, train::Task::Classification, cfg);
  REQUIRE(history.size() == 1);
  MESSAGE("mlp, 5000 samples, 1 epoch: test accuracy ", history[0].test.accuracy);
  CHECK(history[0].test.samples == 10000);
  CHECK(history[0].test.accuracy > 0.80);
}

TEST_CASE("same seed and thread count give the identical final loss twice") {
  REQUIRE_MESSAGE(have_fashion_mnist(), "Fashion-MNIST missing: run scripts/setup.sh");
  train::DataSource src = train::load_data_source("fashion-mnist", "", 0);
  // A quarter of the samples under the sanitizers: determinism does not depend on how many.
  data::Dataset train = data::take(src.data.train, testing::kSanitized ? 320 : 1280);
  data::Dataset test = data::take(src.data.test, testing::kSanitized ? 128 : 500);
  cpu::set_num_threads(2);
  auto run = [&](uint64_t seed) {
    nn::Model model = nn::build_model("cnn2", src.input_shape, seed);
    auto opt = train::make_optimizer({"adam", 1e-3f}, model.parameters());
    train::FitConfig cfg;
    cfg.epochs = 2;
    cfg.seed = seed;
    auto h = train::fit(model, *opt, train, test, train::Task::Classification, cfg);
    return std::pair<double, double>{h.back().train_loss, h.back().test.loss};
  };
  auto a = run(3), b = run(3), c = run(4);
  CHECK(a.first == b.first);  // bit-identical, not approximately equal
  CHECK(a.second == b.second);
  CHECK(a.first != c.first);  // and the seed does matter
}

TEST_CASE("fashion-mnist --augment pads with exactly what a black pixel normalises to") {
  REQUIRE_MESSAGE(have_fashion_mnist(), "Fashion-MNIST missing: run scripts/setup.sh");
  train::DataSource src = train::load_data_source("fashion-mnist", "", 0);
  REQUIRE(src.black.size() == 1);
  const Tensor& x = src.data.train.images;  // (N, 1, 28, 28); the borders are mostly black
  float lowest = x.data()[0];
  for (int64_t i = 0; i < x.numel(); ++i) lowest = std::min(lowest, x.data()[i]);
  CHECK(lowest == src.black[0]);
  // Training on 28x28 crops of the 36x36 padded images works, and the crops change the run.
  data::Dataset train = data::take(src.data.train, 256), test = data::take(src.data.test, 100);
  auto run = [&](bool augment) {
    nn::Model model = nn::build_model("mlp", src.input_shape, 1);
    auto opt = train::make_optimizer({"sgd", 0.05f, 0.9f}, model.parameters());
    train::FitConfig cfg;
    cfg.augment = augment;
    cfg.augment_fill = src.black;
    return train::fit(model, *opt, train, test, train::Task::Classification, cfg).back().train_loss;
  };
  CHECK(run(true) != run(false));
}

TEST_CASE("a regression MLP learns Friedman #1") {
  train::DataSource src = train::load_data_source("friedman1", "", 0);
  CHECK(src.task == train::Task::Regression);
  CHECK(src.input_shape == Shape{10});
  nn::Model model =
      nn::build_model("linear(64) relu linear(64) relu linear(1)", src.input_shape, 0);
  auto opt = train::make_optimizer({"adam", 3e-3f}, model.parameters());
  train::FitConfig cfg;
  cfg.epochs = 15;
  cfg.batch_size = 32;
  double before = train::evaluate(model, src.data.test, train::Task::Regression).loss;
  auto h = train::fit(model, *opt, src.data.train, src.data.test, train::Task::Regression, cfg);
  MESSAGE("friedman1 test MSE ", before, " -> ", h.back().test.loss);
  // y has variance ~24; a linear model reaches ~6; the MLP must do clearly better.
  CHECK(h.back().test.loss < 3.0);
}

TEST_CASE("after the first steps, a training step takes no new memory from the system") {
  // Same batch size every step (drop the last partial batch), so every buffer a step needs
  // was freed by the step before and comes back from the allocator's cache.
  Rng rng(3);
  data::Dataset ds;
  ds.images = Tensor::uniform({640, 1, 28, 28}, 0.0f, 1.0f, rng);
  std::vector<int32_t> labels(640);
  for (auto& l : labels) l = int32_t(rng.below(10));
  ds.labels = Tensor::from_vector_i32(labels, {640});
  nn::Model model = nn::build_model("cnn2", {1, 28, 28}, 0);
  auto opt = train::make_optimizer({"adam", 1e-3f}, model.parameters());
  train::FitConfig cfg;
  cfg.epochs = 1;
  int64_t after_warmup = -1;
  cfg.after_step = [&](int64_t step) {
    if (step == 3) after_warmup = cpu_allocator_stats().system_allocs;
  };
  train::fit(model, *opt, ds, data::Dataset{}, train::Task::Classification, cfg);
  REQUIRE(after_warmup >= 0);
  CHECK(cpu_allocator_stats().system_allocs == after_warmup);
  CHECK(cpu_allocator_stats().reuses > 0);
}
