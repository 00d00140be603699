// The training recipe around fit(): learning-rate schedules (step, multistep, cosine, warm-up)
// against hand-computed values and as fit() applies them, their bad values, weight decay left
// off BatchNorm unless asked for, and network slimming's L1 subgradient on BatchNorm scales.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "nn/layers.h"
#include "train/trainer.h"

using namespace sprig;

namespace {
train::FitConfig schedule(train::LrSchedule kind, int epochs, int warmup = 0) {
  train::FitConfig fc;
  fc.epochs = epochs;
  fc.lr_schedule = kind;
  fc.warmup_epochs = warmup;
  return fc;
}

std::string error_of(const train::FitConfig& fc) {
  try {
    train::check_lr_schedule(fc);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("lr schedules: hand values at chosen steps (5 steps per epoch)") {
  const int64_t B = 5;
  SUBCASE("constant") {
    train::FitConfig fc = schedule(train::LrSchedule::Constant, 10);
    for (int64_t t : {0, 7, 49}) CHECK(train::scheduled_lr(fc, 0.3, t, B) == 0.3);
  }
  SUBCASE("step: x gamma every step_size epochs, as StepLR") {
    train::FitConfig fc = schedule(train::LrSchedule::Step, 10);
    fc.lr_step_size = 3;
    fc.lr_gamma = 0.1;
    CHECK(train::scheduled_lr(fc, 0.1, 0, B) == doctest::Approx(0.1));
    CHECK(train::scheduled_lr(fc, 0.1, 14, B) == doctest::Approx(0.1));   // epoch 2
    CHECK(train::scheduled_lr(fc, 0.1, 15, B) == doctest::Approx(0.01));  // epoch 3
    CHECK(train::scheduled_lr(fc, 0.1, 29, B) == doctest::Approx(0.01));  // epoch 5
    CHECK(train::scheduled_lr(fc, 0.1, 30, B) == doctest::Approx(0.001));
    CHECK(train::scheduled_lr(fc, 0.1, 49, B) == doctest::Approx(1e-4));  // epoch 9
  }
  SUBCASE("multistep: x gamma at each milestone, as MultiStepLR") {
    train::FitConfig fc = schedule(train::LrSchedule::MultiStep, 10);
    fc.lr_milestones = {2, 5};
    fc.lr_gamma = 0.5;
    CHECK(train::scheduled_lr(fc, 1.0, 9, B) == 1.0);    // epoch 1
    CHECK(train::scheduled_lr(fc, 1.0, 10, B) == 0.5);   // epoch 2: the first milestone
    CHECK(train::scheduled_lr(fc, 1.0, 24, B) == 0.5);   // epoch 4
    CHECK(train::scheduled_lr(fc, 1.0, 25, B) == 0.25);  // epoch 5
    CHECK(train::scheduled_lr(fc, 1.0, 49, B) == 0.25);
  }
  SUBCASE("warm-up: (t + 1) / (W B) of the lr, then the schedule") {
    train::FitConfig fc = schedule(train::LrSchedule::Constant, 10, 2);  // 10 warm-up steps
    CHECK(train::scheduled_lr(fc, 0.2, 0, B) == doctest::Approx(0.02));
    CHECK(train::scheduled_lr(fc, 0.2, 4, B) == doctest::Approx(0.1));
    CHECK(train::scheduled_lr(fc, 0.2, 9, B) == doctest::Approx(0.2));
    CHECK(train::scheduled_lr(fc, 0.2, 10, B) == 0.2);
    // A milestone inside the warm-up multiplies in.
    train::FitConfig ms = schedule(train::LrSchedule::MultiStep, 10, 2);
    ms.lr_milestones = {1, 3};
    ms.lr_gamma = 0.1;
    CHECK(train::scheduled_lr(ms, 1.0, 5, B) == doctest::Approx(0.6 * 0.1));
    CHECK(train::scheduled_lr(ms, 1.0, 14, B) == doctest::Approx(0.1));
    CHECK(train::scheduled_lr(ms, 1.0, 15, B) == doctest::Approx(0.01));
  }
  SUBCASE("cosine: over the whole run, or over the steps after the warm-up") {
    train::FitConfig fc = schedule(train::LrSchedule::Cosine, 10);
    CHECK(train::scheduled_lr(fc, 1.0, 0, B) == 1.0);
    CHECK(train::scheduled_lr(fc, 1.0, 25, B) == doctest::Approx(0.5));
    CHECK(train::scheduled_lr(fc, 1.0, 49, B) ==
          doctest::Approx(0.5 * (1 + std::cos(M_PI * 49 / 50))));
    train::FitConfig w = schedule(train::LrSchedule::Cosine, 10, 2);  // 10 warm-up, 40 cosine steps
    CHECK(train::scheduled_lr(w, 1.0, 4, B) == doctest::Approx(0.5));
    CHECK(train::scheduled_lr(w, 1.0, 10, B) == 1.0);
    CHECK(train::scheduled_lr(w, 1.0, 30, B) == doctest::Approx(0.5));
    CHECK(train::scheduled_lr(w, 1.0, 49, B) ==
          doctest::Approx(0.5 * (1 + std::cos(M_PI * 39 / 40))));
  }
}

TEST_CASE("lr schedules: fit() steps with the scheduled lr") {
  train::DataSource src = train::load_data_source("friedman1", "", 0);
  data::Dataset train = data::take(src.data.train, 100), test = data::take(src.data.test, 10);
  nn::Model model = nn::build_model("linear(4) relu linear(1)", src.input_shape, 0);
  auto opt = train::make_optimizer({"sgd", 0.05f, 0.9f}, model.parameters());
  train::FitConfig fc = schedule(train::LrSchedule::MultiStep, 4, 1);
  fc.batch_size = 20;  // 5 steps per epoch
  fc.lr_milestones = {2, 3};
  fc.lr_gamma = 0.2;
  std::vector<float> used;
  fc.after_step = [&](int64_t) { used.push_back(opt->lr); };
  train::fit(model, *opt, train, test, train::Task::Regression, fc);
  REQUIRE(used.size() == 20);
  for (int64_t t = 0; t < 20; ++t) {
    CAPTURE(t);
    CHECK(used[t] == float(train::scheduled_lr(fc, double(0.05f), t, 5)));
  }
  CHECK(used[0] == doctest::Approx(0.01));  // warm-up: 1/5 of 0.05
  CHECK(used[7] == doctest::Approx(0.05));
  CHECK(used[12] == doctest::Approx(0.01));
  CHECK(used[19] == doctest::Approx(0.002));
}

TEST_CASE("lr schedules: bad values name the flag") {
  train::FitConfig step = schedule(train::LrSchedule::Step, 10);
  CHECK(error_of(step).find("--lr-schedule step needs --lr-step-size") != std::string::npos);
  step.lr_step_size = 2;
  CHECK(error_of(step).empty());
  step.lr_gamma = 0.0;
  CHECK(error_of(step).find("--lr-gamma must be > 0, got 0") != std::string::npos);
  step.lr_gamma = std::nan("");
  CHECK(error_of(step).find("--lr-gamma must be > 0") != std::string::npos);
  step.lr_gamma = -0.5;
  CHECK(error_of(step).find("--lr-gamma must be > 0, got -0.5") != std::string::npos);

  train::FitConfig ms = schedule(train::LrSchedule::MultiStep, 10);
  CHECK(error_of(ms).find("needs --lr-milestones") != std::string::npos);
  ms.lr_milestones = {5, 3};
  CHECK(error_of(ms).find("--lr-milestones must be strictly increasing epochs >= 1, got 5,3") !=
        std::string::npos);
  ms.lr_milestones = {3, 3};
  CHECK(error_of(ms).find("--lr-milestones") != std::string::npos);
  ms.lr_milestones = {-1, 3};
  CHECK(error_of(ms).find("--lr-milestones") != std::string::npos);
  ms.lr_milestones = {3, 30};  // past the end of the run is allowed, as in PyTorch
  CHECK(error_of(ms).empty());

  train::FitConfig c = schedule(train::LrSchedule::Cosine, 10, 11);
  CHECK(error_of(c).find("--warmup-epochs 11 is longer than the 10 epochs of training") !=
        std::string::npos);
  c.warmup_epochs = -1;
  CHECK(error_of(c).find("--warmup-epochs must be >= 0") != std::string::npos);
  c.warmup_epochs = 10;
  CHECK(error_of(c).empty());
  c.lr_step_size = 3;
  CHECK(error_of(c).find("--lr-step-size applies to --lr-schedule step only") != std::string::npos);
  c.lr_step_size = 0;
  c.lr_milestones = {2};
  CHECK(error_of(c).find("--lr-milestones applies to") != std::string::npos);
  c.lr_milestones.clear();
  c.lr_gamma = 0.5;
  CHECK(error_of(c).find("--lr-gamma applies to") != std::string::npos);
  CHECK_THROWS_WITH_AS(train::parse_lr_schedule("exponential"), doctest::Contains("'exponential'"),
                       Error);
}

// ---- BatchNorm: weight decay and network slimming --------------------------------------------

namespace {
// A conv (not a norm parameter) followed by BatchNorm with scales gamma, both with defined,
// zero gradients.
struct BnModel {
  nn::Model model;
  nn::BatchNorm* bn = nullptr;
  nn::Conv2d* conv = nullptr;
};

BnModel bn_model(const std::vector<float>& gamma) {
  BnModel m{nn::build_model("conv(3,1,bias=0) bn", {1, 2, 2}, 0)};
  auto& seq = dynamic_cast<nn::Sequential&>(*m.model.net);
  m.conv = &dynamic_cast<nn::Conv2d&>(*seq.layers[0]);
  m.bn = &dynamic_cast<nn::BatchNorm&>(*seq.layers[1]);
  m.bn->weight->value.copy_(Tensor::from_vector(gamma, {3}));
  m.bn->bias->value.copy_(Tensor::from_vector({0.2f, -0.4f, 1.0f}, {3}));
  Tensor x = Tensor::from_vector({1, 2, 3, 5, -1, 0, 4, 2}, {2, 1, 2, 2});
  Tensor y = m.model.forward(x);
  // A loss whose gradient reaches every parameter.
  mean(mul(y, Tensor::from_vector(
                  {1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4},
                  {2, 3, 2, 2})))
      .backward();
  return m;
}
}  // namespace

TEST_CASE("weight decay leaves BatchNorm scales and shifts alone unless --bn-weight-decay") {
  for (const char* name : {"sgd", "adamw"}) {
    CAPTURE(name);
    for (bool bn_decay : {false, true}) {
      CAPTURE(bn_decay);
      BnModel m = bn_model({0.5f, -2.0f, 1.5f});
      train::OptimizerConfig oc{name, 0.1f, 0.0f, 0.5f};
      oc.bn_weight_decay = bn_decay;
      auto opt = train::make_optimizer(oc, m.model.parameters());
      opt->zero_grad();  // defined, zero gradients: only the decay moves anything
      const std::vector<float> conv_before = m.conv->weight->value.to_vector();
      opt->step();
      // SGD: w - lr (0 + wd w) = 0.95 w; AdamW: w - lr wd w, the same here.
      const std::vector<float> gamma = m.bn->weight->value.to_vector();
      const float want[3] = {0.5f, -2.0f, 1.5f};
      for (int c = 0; c < 3; ++c)
        CHECK(gamma[c] == doctest::Approx(bn_decay ? 0.95 * want[c] : want[c]).epsilon(1e-6));
      if (!bn_decay) CHECK(gamma == std::vector<float>(want, want + 3));  // exactly unchanged
      const std::vector<float> beta = m.bn->bias->value.to_vector();
      const float beta0[3] = {0.2f, -0.4f, 1.0f};
      for (int c = 0; c < 3; ++c)
        CHECK(beta[c] == doctest::Approx(bn_decay ? 0.95 * beta0[c] : beta0[c]).epsilon(1e-6));
      if (!bn_decay) CHECK(beta == std::vector<float>(beta0, beta0 + 3));
      const std::vector<float> conv = m.conv->weight->value.to_vector();
      for (size_t k = 0; k < conv.size(); ++k)  // other weights decay as before
        CHECK(conv[k] == doctest::Approx(0.95 * conv_before[k]).epsilon(1e-6));
    }
  }
}

TEST_CASE("--bn-l1: lambda sign(gamma) added to the scales' gradients, masks respected") {
  BnModel m = bn_model({0.5f, -2.0f, 0.0f});
  const std::vector<float> g0 = m.bn->weight->grad().to_vector();
  const std::vector<float> bias_g0 = m.bn->bias->grad().to_vector();
  const std::vector<float> conv_g0 = m.conv->weight->grad().to_vector();
  train::add_bn_l1_subgradient(m.model, 0.01f);
  const std::vector<float> g = m.bn->weight->grad().to_vector();
  CHECK(g[0] == g0[0] + 0.01f);                      // gamma > 0
  CHECK(g[1] == g0[1] - 0.01f);                      // gamma < 0
  CHECK(g[2] == g0[2]);                              // sign(0) = 0
  CHECK(m.bn->bias->grad().to_vector() == bias_g0);  // shifts are not penalised
  CHECK(m.conv->weight->grad().to_vector() == conv_g0);

  // A pruned scale: its value is held at 0 by the mask, gets no penalty, and stays 0.
  BnModel p = bn_model({0.5f, -2.0f, 1.5f});
  Tensor keep = Tensor::empty({3}, DType::U8);
  keep.data_as<uint8_t>()[0] = 1, keep.data_as<uint8_t>()[1] = 0, keep.data_as<uint8_t>()[2] = 1;
  p.bn->weight->set_mask(keep);
  auto opt = train::make_optimizer({"sgd", 0.1f, 0.9f}, p.model.parameters());
  opt->zero_grad();
  for (int k = 0; k < 3; ++k) {
    train::add_bn_l1_subgradient(p.model, 0.25f);
    CHECK(p.bn->weight->grad().to_vector()[1] == 0.0f);
    opt->step();
    opt->zero_grad();
  }
  const std::vector<float> gamma = p.bn->weight->value.to_vector();
  CHECK(gamma[1] == 0.0f);
  // The kept scales moved towards 0 by the penalty alone: SGD with momentum 0.9 and
  // gradient 0.25 sign(gamma) for 3 steps moves by 0.1 x 0.25 x (1 + 1.9 + 2.71).
  CHECK(gamma[0] == doctest::Approx(0.5 - 0.025 * 5.61).epsilon(1e-6));
  CHECK(gamma[2] == doctest::Approx(1.5 - 0.025 * 5.61).epsilon(1e-6));
}

TEST_CASE("--bn-l1 reaches every BatchNorm scale inside residual blocks, and nothing else") {
  nn::Model m = nn::build_model("resnet20", {3, 8, 8}, 0);
  Rng rng(3);
  mean(m.forward(Tensor::uniform({2, 3, 8, 8}, -1.0f, 1.0f, rng))).backward();
  for (auto& p : m.parameters()) p->value.zero_grad();
  train::add_bn_l1_subgradient(m, 0.5f);
  int scales = 0;
  for (auto& [name, p] : m.named_parameters()) {
    CAPTURE(name);
    const bool scale =
        p->norm_affine && name.size() > 7 && name.substr(name.size() - 7) == ".weight";
    scales += scale;
    for (float g : p->grad().to_vector()) REQUIRE(g == (scale ? 0.5f : 0.0f));  // gamma starts at 1
  }
  CHECK(scales == 19);  // one BatchNorm after the stem, two in each of the 9 blocks
}
