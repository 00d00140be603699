// Pruning schedules (TF-MOT PolynomialDecay semantics, iterative targets, the command-line
// forms) and lottery-ticket rewinding.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "prune/schedule.h"

using namespace sprig;
using namespace sprig::prune;

// The message of the sprig::Error that f throws, or "" if it throws none.
template <typename F>
static std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

static bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST_SUITE("prune_schedule") {
  TEST_CASE("polynomial decay follows the Zhu & Gupta formula, clamped outside [begin, end]") {
    PolynomialDecay d;
    d.initial_sparsity = 0.1;
    d.final_sparsity = 0.9;
    d.begin_step = 100;
    d.end_step = 200;
    d.frequency = 10;
    d.power = 3;
    auto formula = [&](double t) {
      return 0.9 + (0.1 - 0.9) * std::pow(1.0 - (t - 100.0) / 100.0, 3.0);
    };
    CHECK(d.sparsity_at(100) == doctest::Approx(0.1));
    CHECK(d.sparsity_at(150) == doctest::Approx(0.8));  // 0.9 - 0.8 * 0.5^3
    CHECK(d.sparsity_at(150) == doctest::Approx(formula(150)));
    CHECK(d.sparsity_at(137) == doctest::Approx(formula(137)));
    CHECK(d.sparsity_at(200) == 0.9);  // exactly final
    CHECK(d.sparsity_at(0) == doctest::Approx(0.1));
    CHECK(d.sparsity_at(-5) == doctest::Approx(0.1));
    CHECK(d.sparsity_at(10000) == 0.9);
    // Non-decreasing over the whole range.
    for (int64_t t = 0; t < 300; ++t) CHECK(d.sparsity_at(t + 1) >= d.sparsity_at(t));

    d.power = 1;  // linear
    CHECK(d.sparsity_at(125) == doctest::Approx(0.3));
  }

  TEST_CASE("should_prune is TF-MOT's _should_prune_in_step") {
    PolynomialDecay d;
    d.final_sparsity = 0.5;
    d.begin_step = 100;
    d.end_step = 200;
    d.frequency = 30;
    for (int64_t t : {100, 130, 160, 190}) CHECK(d.should_prune(t));
    // end_step is not a multiple of frequency after begin_step, so it is not a pruning step.
    for (int64_t t : {0, 99, 101, 129, 200, 220, 250}) CHECK_FALSE(d.should_prune(t));
    d.frequency = 50;
    for (int64_t t : {100, 150, 200}) CHECK(d.should_prune(t));
    for (int64_t t : {50, 125, 250}) CHECK_FALSE(d.should_prune(t));
    d.frequency = 1;
    for (int64_t t = 100; t <= 200; ++t) CHECK(d.should_prune(t));
    CHECK_FALSE(d.should_prune(201));
  }

  TEST_CASE("polynomial decay validation names the field and the value") {
    auto bad = [](auto change) {
      PolynomialDecay d;
      d.initial_sparsity = 0.0;
      d.final_sparsity = 0.8;
      d.begin_step = 0;
      d.end_step = 1000;
      change(d);
      return error_of([&] { d.validate(); });
    };
    CHECK(bad([](PolynomialDecay&) {}) == "");
    std::string e = bad([](PolynomialDecay& d) { d.final_sparsity = 1.0; });
    CHECK(contains(e, "final_sparsity"));
    CHECK(contains(e, "1"));
    e = bad([](PolynomialDecay& d) { d.initial_sparsity = -0.1; });
    CHECK(contains(e, "initial_sparsity"));
    CHECK(contains(e, "-0.1"));
    e = bad([](PolynomialDecay& d) { d.initial_sparsity = 0.9; });
    CHECK(contains(e, "final_sparsity must be >= initial_sparsity"));
    e = bad([](PolynomialDecay& d) { d.begin_step = -1; });
    CHECK(contains(e, "begin_step"));
    e = bad([](PolynomialDecay& d) { d.end_step = 0; });
    CHECK(contains(e, "end_step"));
    CHECK(contains(e, "got 0"));
    e = bad([](PolynomialDecay& d) { d.frequency = 0; });
    CHECK(contains(e, "frequency"));
    e = bad([](PolynomialDecay& d) { d.power = -2; });
    CHECK(contains(e, "power"));
    CHECK(contains(e, "-2"));
    e = bad([](PolynomialDecay& d) { d.final_sparsity = NAN; });
    CHECK(contains(e, "final_sparsity"));
    // The step functions validate too.
    PolynomialDecay d;
    d.final_sparsity = 0.5;
    d.end_step = 0;
    CHECK_THROWS_AS(d.sparsity_at(0), Error);
    CHECK_THROWS_AS(d.should_prune(0), Error);
  }

  TEST_CASE("iterative targets prune the same fraction of what is left each step") {
    auto t = iterative_targets(0.75, 2);
    REQUIRE(t.size() == 2);
    CHECK(t[0] == doctest::Approx(0.5));
    CHECK(t[1] == 0.75);
    t = iterative_targets(0.875, 3);
    REQUIRE(t.size() == 3);
    CHECK(t[0] == doctest::Approx(0.5));
    CHECK(t[1] == doctest::Approx(0.75));
    CHECK(t[2] == 0.875);
    t = iterative_targets(0.9, 7);
    REQUIRE(t.size() == 7);
    CHECK(t.back() == 0.9);
    // Each step keeps the same fraction of the previous survivors.
    double keep = std::pow(0.1, 1.0 / 7.0);
    double prev = 0.0;
    for (double s : t) {
      CHECK((1.0 - s) / (1.0 - prev) == doctest::Approx(keep));
      prev = s;
    }
    CHECK(iterative_targets(0.6, 1) == std::vector<double>{0.6});
    CHECK(contains(error_of([] { iterative_targets(0.5, 0); }), "steps must be >= 1, got 0"));
    CHECK(contains(error_of([] { iterative_targets(1.0, 3); }), "[0, 1)"));
  }

  TEST_CASE("parse_iterative reads a step count or an explicit list") {
    auto t = parse_iterative("4", 0.9375);
    REQUIRE(t.size() == 4);
    CHECK(t[0] == doctest::Approx(0.5));
    CHECK(t[1] == doctest::Approx(0.75));
    CHECK(t[2] == doctest::Approx(0.875));
    CHECK(t[3] == 0.9375);
    CHECK(parse_iterative("0.5,0.75,0.875,0.92", 0.92) ==
          std::vector<double>{0.5, 0.75, 0.875, 0.92});
    CHECK(parse_iterative("0.5,0.5,0.8", 0.8) == std::vector<double>{0.5, 0.5, 0.8});
    CHECK(parse_iterative("0.3", 0.9) == std::vector<double>{0.3});

    CHECK(contains(error_of([] { parse_iterative("0.5,0.4", 0.9); }), "'0.5,0.4'"));
    CHECK(contains(error_of([] { parse_iterative("0.5,0.4", 0.9); }), "must not decrease"));
    CHECK(contains(error_of([] { parse_iterative("0.5,1.0", 0.9); }), "outside [0, 1)"));
    CHECK(contains(error_of([] { parse_iterative("0.5,,0.7", 0.9); }), "not a number"));
    CHECK(contains(error_of([] { parse_iterative("0.5x", 0.9); }), "'0.5x'"));
    CHECK(contains(error_of([] { parse_iterative("abc", 0.9); }), "not a number"));
    CHECK(contains(error_of([] { parse_iterative("0", 0.9); }), "steps"));
    CHECK(contains(error_of([] { parse_iterative("-3", 0.9); }), "steps"));
    CHECK(contains(error_of([] { parse_iterative("", 0.9); }), "empty"));
  }

  TEST_CASE("parse_schedule reads the command-line forms") {
    ScheduleSpec s = parse_schedule("oneshot", 0.8);
    CHECK(s.kind == ScheduleSpec::OneShot);
    CHECK(s.targets == std::vector<double>{0.8});

    s = parse_schedule("iterative:2", 0.75);
    CHECK(s.kind == ScheduleSpec::Iterative);
    REQUIRE(s.targets.size() == 2);
    CHECK(s.targets[0] == doctest::Approx(0.5));
    CHECK(s.targets[1] == 0.75);

    s = parse_schedule("iterative:0.5,0.75,0.875,0.92", 0.92);
    CHECK(s.kind == ScheduleSpec::Iterative);
    CHECK(s.targets == std::vector<double>{0.5, 0.75, 0.875, 0.92});

    s = parse_schedule("agp:100,2100,200", 0.9);
    CHECK(s.kind == ScheduleSpec::Polynomial);
    CHECK(s.agp.initial_sparsity == 0.0);
    CHECK(s.agp.final_sparsity == 0.9);
    CHECK(s.agp.begin_step == 100);
    CHECK(s.agp.end_step == 2100);
    CHECK(s.agp.frequency == 200);
    CHECK(s.agp.power == 3.0);
    CHECK(s.agp.sparsity_at(2100) == 0.9);

    // Errors: one line, naming the bad part, listing the forms where the kind is unknown.
    auto err = [](const std::string& spec, double final_sparsity = 0.9) {
      return error_of([&] { parse_schedule(spec, final_sparsity); });
    };
    for (const char* bad :
         {"gradual", "oneshot:3", "iterative", "iterative:", "iterative:0.9,0.5", "agp", "agp:1,2",
          "agp:1,2,3,4", "agp:a,100,10", "agp:0,100,0", "agp:100,50,10", ""}) {
      std::string e = err(bad);
      CHECK_MESSAGE(!e.empty(), bad);
      CHECK_MESSAGE(e.find('\n') == std::string::npos, e);
    }
    CHECK(contains(err("gradual"), "unknown schedule 'gradual'"));
    CHECK(contains(err("gradual"),
                   "oneshot, iterative:STEPS, iterative:s1,s2,..., agp:BEGIN,END,FREQ"));
    CHECK(contains(err("agp:1,2"), "agp needs BEGIN,END,FREQ"));
    CHECK(contains(err("agp:a,100,10"), "BEGIN 'a' is not an integer"));
    CHECK(contains(err("agp:0,100,0"), "frequency must be > 0, got 0"));
    CHECK(contains(err("agp:100,50,10"), "end_step"));
    CHECK(contains(err("iterative:0.9,0.5"), "must not decrease"));
    CHECK(contains(err("oneshot", 1.0), "final sparsity must be in [0, 1), got 1"));
  }

  TEST_CASE("rewinding restores the snapshot and keeps pruned weights at zero") {
    nn::Model model = nn::build_model("flatten linear(4) relu linear(2)", {3}, 7);
    WeightSnapshot snap = snapshot_weights(model);
    REQUIRE(snap.values.size() == 4);
    auto params = model.named_parameters();
    nn::Parameter& w = *params[0].second;  // "1.weight" (4, 3)
    REQUIRE(params[0].first == "1.weight");
    std::vector<float> w0 = snap.values.at("1.weight").to_vector();
    CHECK(w0 == w.value.to_vector());

    // "Train": change every weight and leave optimizer state behind; then prune two weights.
    nn::SGD opt(model.parameters(), {0.1f, 0.9f});
    for (auto& [name, p] : params) {
      p->value.fill_(5.0f);
      p->state["momentum_buffer"] = Tensor::ones(p->value.shape());
    }
    opt.steps = 12;
    std::vector<uint8_t> keep(12, 1);
    keep[1] = 0;
    keep[7] = 0;
    Tensor mask = Tensor::zeros({4, 3}, DType::U8);
    for (int i = 0; i < 12; ++i) mask.data_as<uint8_t>()[i] = keep[i];
    w.set_mask(mask);

    rewind_weights(model, snap, &opt);
    std::vector<float> w1 = w.value.to_vector();
    for (int i = 0; i < 12; ++i) CHECK(w1[i] == (keep[i] ? w0[i] : 0.0f));
    for (auto& [name, p] : params) {
      CHECK(p->state.empty());
      if (name != "1.weight") CHECK(p->value.to_vector() == snap.values.at(name).to_vector());
    }
    CHECK(opt.steps == 0);
    // The snapshot itself is untouched (it holds copies).
    CHECK(snap.values.at("1.weight").to_vector() == w0);

    // Mismatches: another architecture, or the same names with other shapes.
    nn::Model other = nn::build_model("flatten linear(4)", {3}, 7);
    std::string e = error_of([&] { rewind_weights(other, snap); });
    CHECK(contains(e, "'3.bias'"));
    CHECK(contains(e, "not in the model"));
    nn::Model wider = nn::build_model("flatten linear(5) relu linear(2)", {3}, 7);
    e = error_of([&] { rewind_weights(wider, snap); });
    CHECK(contains(e, "'1.weight'"));
    CHECK(contains(e, "(5, 3)"));
    WeightSnapshot missing = snap;
    missing.values.erase("3.bias");
    e = error_of([&] { rewind_weights(model, missing); });
    CHECK(contains(e, "no parameter '3.bias'"));
  }
}
