// Model specs and the zoo, summaries, initialisers, optimizers (against the kernel
// references and the mask invariant), and checkpoints.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/ops.h"
#include "engine/safetensors.h"
#include "engine/text.h"
#include "kernels/cpu/optim.h"
#include "nn/checkpoint.h"
#include "nn/init.h"
#include "nn/optim.h"
#include "nn/summary.h"

using namespace sprig;
namespace fs = std::filesystem;

static fs::path temp_dir(const char* name) {
  fs::path d = fs::temp_directory_path() / ("sprig_test_nn_" + std::to_string(::getpid())) / name;
  fs::create_directories(d);
  return d;
}

static std::vector<char> file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

TEST_SUITE("model") {
  TEST_CASE("zoo models have the published parameter counts") {
    CHECK(nn::build_model("cnn2", {1, 28, 28}, 0).num_parameters() == 126698);  // seed 002
    CHECK(nn::build_model("mlp", {1, 28, 28}, 0).num_parameters() == 266610);   // 784-300-100-10
    CHECK(nn::build_model("lenet5", {1, 28, 28}, 0).num_parameters() == 61706);
  }

  TEST_CASE("a spec round-trips through its canonical form") {
    std::string spec =
        "conv(8, 3, pad=1) relu conv(16,3,stride=2,pad=1,bias=0) relu maxpool(2) "
        "flatten linear(32) relu linear(10,bias=0)";
    nn::Model a = nn::build_model(spec, {3, 17, 17}, 1);
    nn::Model b = nn::build_model(a.spec, {3, 17, 17}, 1);
    CHECK(a.spec == b.spec);
    CHECK(a.num_parameters() == b.num_parameters());
    CHECK(a.output_shape() == Shape{10});
    auto pa = a.named_parameters();
    CHECK(pa.front().first == "0.weight");
    CHECK(pa.back().first == "8.weight");  // no bias on the last layer
    // The same seed gives the same weights.
    CHECK(pa.front().second->value.to_vector() ==
          b.named_parameters().front().second->value.to_vector());
  }

  TEST_CASE("bad specs name the problem") {
    auto err = [](const std::string& spec, const Shape& in = {1, 28, 28}) {
      try {
        nn::build_model(spec, in, 0);
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    };
    CHECK(err("conv(8,3) frobnicate").find("unknown layer 'frobnicate'") != std::string::npos);
    CHECK(err("conv(8,3").find("missing ')'") != std::string::npos);
    CHECK(err("conv(8)").find("needs argument kernel") != std::string::npos);
    CHECK(err("conv(8,3,padd=1)").find("no argument 'padd'") != std::string::npos);
    CHECK(err("linear(10)").find("add flatten") != std::string::npos);
    CHECK(err("conv(8,40)").find("smaller than") != std::string::npos);
    CHECK(err("flatten linear(0)").find("positive") != std::string::npos);
    // Negative sizes are named as such, not as a model too large.
    CHECK(err("flatten linear(-5)").find("positive") != std::string::npos);
    CHECK(err("conv(-2,3)").find("positive") != std::string::npos);
    CHECK(err("").find("empty") != std::string::npos);
    CHECK(err("conv(8,3,pad=x)").find("expected an integer") != std::string::npos);
    CHECK(err("cnn2", {0, 28, 28}).find("zero or negative") != std::string::npos);
    // Rejected before the 40 GB weight is allocated, and without overflow (UBSan checks).
    CHECK(err("conv(1,100000)").find("smaller than the kernel") != std::string::npos);
    CHECK(err("conv(1,3,dilation=999999999999,pad=9)").find("smaller than") != std::string::npos);
    // A window wider than the input by less than the stride is an error too (truncating
    // division used to make it one output); as in PyTorch.
    CHECK(err("maxpool(3,stride=2)", {1, 2, 2}).find("smaller than the window") !=
          std::string::npos);
    CHECK(err("conv(1,3,stride=2)", {1, 2, 2}).find("smaller than") != std::string::npos);
    CHECK(err("flatten", {1 << 30, 1 << 30, 1 << 30}).find("too many elements") !=
          std::string::npos);
    CHECK(err("conv(999999,3000000,pad=999999999999)").find("too large") != std::string::npos);
    // A pad that makes a huge activation (and would wrap the FLOP count) is refused when the
    // layer is built, not when the first forward pass allocates gigabytes.
    CHECK(err("conv(8,3,pad=100000)").find("values per sample") != std::string::npos);
    CHECK(err("maxpool(2,pad=1) conv(8,3,pad=40000)").find("values per sample") !=
          std::string::npos);
    CHECK(err("flatten linear(300000) linear(300000)").find("sprig allows at most") !=
          std::string::npos);
    // A character outside ASCII is named whole, a byte that is not UTF-8 as \xNN.
    CHECK(err("conv(8,3) r\xC3\xA9lu").find("unexpected '\xC3\xA9'") != std::string::npos);
    CHECK(err("conv(8,3) r\xe9lu").find("unexpected '\\xe9'") != std::string::npos);
    CHECK(is_valid_utf8(err("conv(8,3) r\xe9lu")));
  }

  TEST_CASE("a spec is checked against a parameter budget before it allocates") {
    nn::SpecLimits limits;
    limits.source = "the file holds only 126697";
    const Shape in = {1, 28, 28};
    // Budget: exactly the parameters (and BatchNorm buffers) the spec needs.
    limits.max_parameters = 126698;
    CHECK(nn::build_model("cnn2", in, 0, limits).num_parameters() == 126698);
    limits.max_parameters = 126697;
    CHECK_THROWS_WITH_AS(
        nn::build_model("cnn2", in, 0, limits),
        doctest::Contains("126698 parameter and buffer values by this layer, but the file "
                          "holds only 126697"),
        Error);
    limits.max_parameters = 8 + 4 * 8 + 8 * 8 * 9;  // conv weight+bias, 4 BN vectors, conv
    CHECK_NOTHROW(nn::build_model("conv(8,1,bias=0) bn conv(8,3,bias=0)", in, 0, limits));
    limits.max_parameters -= 1;
    CHECK_THROWS_AS(nn::build_model("conv(8,1,bias=0) bn conv(8,3,bias=0)", in, 0, limits), Error);
    // The cited case: a spec of 19.6e9 weights against a small file.
    limits.max_parameters = 1000;
    CHECK_THROWS_WITH_AS(nn::build_model("flatten linear(25000000)", in, 0, limits),
                         doctest::Contains("linear(25000000)"), Error);
  }

  TEST_CASE("summary counts parameters, nonzeros and FLOPs per layer") {
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 0);
    // Prune half of the last layer's weights by hand to see nonzero and sparsity move.
    auto last = m.named_parameters()[4].second;  // 5.weight (10, 12544)
    REQUIRE(last->name == "5.weight");
    float* w = last->value.data();
    for (int64_t i = 0; i < last->numel(); i += 2) w[i] = 0.0f;
    nn::ModelSummary s = nn::summarize(m);
    REQUIRE(s.layers.size() == 6);
    CHECK(s.layers[0].params == 80);
    CHECK(s.layers[2].params == 1168);
    CHECK(s.layers[5].params == 125450);
    CHECK(s.layers[5].nonzero == 125450 - 62720);
    CHECK(s.params == 126698);
    // conv1: 784 positions x 8 filters x (2 x 9 + 1); conv2: 784 x 16 x (2 x 72 + 1);
    // linear: 2 x 12544 x 10 + 10.
    CHECK(s.layers[0].flops == 784 * 8 * 19);
    CHECK(s.layers[2].flops == 784 * 16 * 145);
    CHECK(s.layers[5].flops == 2 * 12544 * 10 + 10);
    CHECK(s.flops == 784 * 8 * 19 + 784 * 16 * 145 + 2 * 12544 * 10 + 10);
    CHECK(s.layers[4].output_shape == Shape{12544});
    auto j = nn::summary_json(s);
    CHECK(j["params"] == 126698);
    CHECK(j["layers"].size() == 6);
    CHECK(nn::format_summary(s).find("126,698") != std::string::npos);
    // Sent between ranks as JSON text: the same summary comes back.
    const nn::ModelSummary back = nn::summary_from_json(nlohmann::json::parse(j.dump()));
    CHECK(nn::format_summary(back) == nn::format_summary(s));
    CHECK(nn::summary_json(back) == j);
    CHECK(back.layers[5].nonzero == 125450 - 62720);
    auto broken = j;
    broken["layers"][2].erase("params");
    CHECK_THROWS_WITH_AS(nn::summary_from_json(broken),
                         doctest::Contains("model summary JSON"), Error);
  }
}

TEST_SUITE("init") {
  TEST_CASE("initialisers have the intended spread") {
    Rng rng(11);
    Tensor w = Tensor::empty({256, 128, 3, 3});  // fan_in 1152, fan_out 2304
    auto stddev = [](const Tensor& t) {
      double s = 0, s2 = 0;
      for (float v : t.to_vector()) s += v, s2 += double(v) * v;
      double n = double(t.numel());
      return std::sqrt(s2 / n - (s / n) * (s / n));
    };
    nn::init::kaiming_normal_(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / 1152)).epsilon(0.02));
    nn::init::kaiming_uniform_(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / 1152)).epsilon(0.02));
    nn::init::xavier_uniform_(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / (1152 + 2304))).epsilon(0.02));
    nn::init::xavier_normal_(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / (1152 + 2304))).epsilon(0.02));
    // PyTorch's default for layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    nn::Linear lin(400, 30, true, rng);
    float bound = 1.0f / 20.0f;
    for (float v : lin.weight->value.to_vector()) CHECK_MESSAGE(std::fabs(v) <= bound, v);
    CHECK(stddev(lin.weight->value) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.05));
  }
}

TEST_SUITE("optim") {
  // Runs three steps of opt and of the reference kernel on copies of the same data.
  template <typename MakeOpt, typename RefStep>
  void compare_with_reference(MakeOpt make_opt, RefStep ref_step, bool with_mask) {
    Rng rng(21);
    auto p = std::make_shared<nn::Parameter>("w", Tensor::uniform({37, 11}, -1, 1, rng));
    int64_t n = p->numel();
    std::vector<uint8_t> keep(n, 1);
    if (with_mask) {
      for (int64_t i = 0; i < n; i += 3) keep[i] = 0;
      Tensor k = Tensor::empty({37, 11}, DType::U8);
      std::memcpy(k.data_as<uint8_t>(), keep.data(), n);
      p->set_mask(k);
    }
    std::vector<float> w_ref = p->value.to_vector(), s1(n, 0.0f), s2(n, 0.0f);
    auto opt = make_opt(std::vector<nn::ParameterPtr>{p});
    for (int step = 1; step <= 3; ++step) {
      Tensor g = Tensor::uniform({37, 11}, -1, 1, rng);
      opt->zero_grad();
      // Route g through backward so the optimizer reads a real accumulated gradient.
      sum(mul(p->value, g)).backward();
      opt->step();
      ref_step(n, w_ref.data(), g.data(), s1.data(), s2.data(), with_mask ? keep.data() : nullptr,
               step);
      std::vector<float> w = p->value.to_vector();
      for (int64_t i = 0; i < n; ++i) {
        REQUIRE(w[i] == doctest::Approx(w_ref[i]).epsilon(1e-5));
        if (with_mask && !keep[i]) REQUIRE(w[i] == 0.0f);
      }
      for (auto& [name, st] : p->state)
        for (int64_t i = 0; i < n; ++i)
          if (with_mask && !keep[i]) REQUIRE(st.data()[i] == 0.0f);
    }
  }

  TEST_CASE("SGD (momentum, Nesterov, weight decay) matches the reference, masked and not") {
    for (bool masked : {false, true})
      for (bool nesterov : {false, true}) {
        CAPTURE(masked);
        CAPTURE(nesterov);
        nn::SGDOptions o{0.1f, 0.9f, 0.0f, 0.01f, nesterov};
        compare_with_reference(
            [&](std::vector<nn::ParameterPtr> ps) { return std::make_unique<nn::SGD>(ps, o); },
            [&](int64_t n, float* w, const float* g, float* v, float*, const uint8_t* m, int step) {
              cpu::sgd_step_ref(n, w, g, v, m, o.lr, o.momentum, o.dampening, o.weight_decay,
                                o.nesterov, step == 1);
            },
            masked);
      }
  }

  TEST_CASE("Adam and AdamW match the reference, masked and not") {
    for (bool masked : {false, true})
      for (bool decoupled : {false, true}) {
        CAPTURE(masked);
        CAPTURE(decoupled);
        nn::AdamOptions o{1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f, decoupled};
        compare_with_reference(
            [&](std::vector<nn::ParameterPtr> ps) { return std::make_unique<nn::Adam>(ps, o); },
            [&](int64_t n, float* w, const float* g, float* m1, float* m2, const uint8_t* m,
                int step) {
              cpu::adam_step_ref(n, w, g, m1, m2, m, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay,
                                 step, o.decoupled);
            },
            masked);
      }
  }

  TEST_CASE("one Adam step equals PyTorch's numbers") {
    // torch.optim.Adam([w], lr=0.1) with w = [1, -2], grad = [0.5, 0.25]: after one step each
    // weight moves by lr * sign(grad) (m_hat / sqrt(v_hat) = g / |g|), up to eps.
    auto p = std::make_shared<nn::Parameter>("w", Tensor::from_vector({1.0f, -2.0f}, {2}));
    nn::Adam opt({p}, {0.1f});
    sum(mul(p->value, Tensor::from_vector({0.5f, 0.25f}, {2}))).backward();
    opt.step();
    CHECK(p->value.to_vector()[0] == doctest::Approx(0.9f).epsilon(1e-6));
    CHECK(p->value.to_vector()[1] == doctest::Approx(-2.1f).epsilon(1e-6));
  }

  TEST_CASE("bad hyper-parameters are rejected") {
    auto p = std::make_shared<nn::Parameter>("w", Tensor::zeros({2}));
    CHECK_THROWS_WITH_AS(nn::SGD({p}, {-0.1f}), doctest::Contains("learning rate"), Error);
    CHECK_THROWS_WITH_AS(nn::SGD({p}, {0.1f, 0.0f, 0.0f, 0.0f, true}),
                         doctest::Contains("nesterov"), Error);
    CHECK_THROWS_WITH_AS(nn::Adam({p}, {NAN}), doctest::Contains("learning rate"), Error);
    CHECK_THROWS_WITH_AS(nn::Adam({p}, {1e-3f, 1.0f}), doctest::Contains("betas"), Error);
  }
}

TEST_SUITE("checkpoint") {
  TEST_CASE("round trip is bit-exact, masks included") {
    fs::path dir = temp_dir("roundtrip");
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 5);
    auto p0 = m.parameters()[0];
    Tensor keep = Tensor::zeros(p0->value.shape(), DType::U8);
    for (int64_t i = 0; i < keep.numel(); i += 2) keep.data_as<uint8_t>()[i] = 1;
    p0->set_mask(keep, nn::Granularity::Element);
    p0->value.data()[0] = -0.0f;  // a kept signed zero must survive too
    std::string path = (dir / "m.safetensors").string();
    nn::save_checkpoint(path, m, {{"dataset", "fashion-mnist"}});
    nn::Checkpoint ck = nn::load_checkpoint(path);
    CHECK(ck.model.spec == m.spec);
    CHECK(ck.metadata.at("dataset") == "fashion-mnist");
    auto a = m.named_parameters(), b = ck.model.named_parameters();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].first == b[i].first);
      REQUIRE(a[i].second->value.shape() == b[i].second->value.shape());
      CHECK(std::memcmp(a[i].second->value.data(), b[i].second->value.data(),
                        a[i].second->value.nbytes()) == 0);
    }
    REQUIRE(b[0].second->mask);
    CHECK(std::memcmp(b[0].second->mask->keep.data_as<uint8_t>(), keep.data_as<uint8_t>(),
                      keep.numel()) == 0);
    CHECK_FALSE(b[1].second->mask);
  }

  TEST_CASE("mask granularities survive save and load, and old checkpoints' names still load") {
    fs::path dir = temp_dir("granularity");
    nn::Model m = nn::build_model("cnn2", {1, 28, 28}, 5);
    auto params = m.named_parameters();
    const nn::Granularity all[] = {nn::Granularity::Element, nn::Granularity::Filter,
                                   nn::Granularity::Channel, nn::Granularity::Block,
                                   nn::Granularity::NM};
    REQUIRE(params.size() >= 5);
    for (int i = 0; i < 5; ++i) {
      Tensor keep = Tensor::zeros(params[i].second->value.shape(), DType::U8);
      for (int64_t j = 0; j < keep.numel(); ++j) keep.data_as<uint8_t>()[j] = 1;
      params[i].second->set_mask(keep, all[i]);
    }
    std::string path = (dir / "new.safetensors").string();
    nn::save_checkpoint(path, m);
    nn::Checkpoint ck = nn::load_checkpoint(path);
    for (int i = 0; i < 5; ++i) {
      REQUIRE(ck.model.named_parameters()[i].second->mask);
      CHECK(ck.model.named_parameters()[i].second->mask->granularity == all[i]);
    }

    // Checkpoints saved before there was one granularity enum name three of them differently.
    TensorFile tf = load_safetensors(path);
    auto meta = tf.metadata;
    meta["mask." + params[1].first] = "output_channel";
    meta["mask." + params[2].first] = "input_channel";
    meta["mask." + params[4].first] = "n:m";
    std::string old = (dir / "old.safetensors").string();
    save_safetensors(old, tf.tensors, meta);
    ck = nn::load_checkpoint(old);
    for (int i = 0; i < 5; ++i)
      CHECK(ck.model.named_parameters()[i].second->mask->granularity == all[i]);

    meta["mask." + params[3].first] = "diagonal";
    std::string bad = (dir / "bad.safetensors").string();
    save_safetensors(bad, tf.tensors, meta);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(bad),
                         (bad + ": unknown mask granularity 'diagonal'").c_str(), Error);
  }

  TEST_CASE("bad checkpoints give errors naming the file and tensor; files stay intact") {
    fs::path dir = temp_dir("bad");
    nn::Model m = nn::build_model("mlp", {1, 28, 28}, 1);
    std::string good = (dir / "good.safetensors").string();
    nn::save_checkpoint(good, m);
    std::vector<char> bytes = file_bytes(good);

    // Truncated file.
    std::string cut = (dir / "cut.safetensors").string();
    {
      std::ofstream f(cut, std::ios::binary);
      f.write(bytes.data(), std::streamsize(bytes.size() / 2));
    }
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(cut), doctest::Contains("cut.safetensors"), Error);

    // A tensor whose shape does not fit the spec.
    TensorFile tf = load_safetensors(good);
    std::vector<std::pair<std::string, Tensor>> tensors = tf.tensors;
    for (auto& [name, t] : tensors)
      if (name == "1.weight") t = Tensor::zeros({300, 783});
    std::string wrong = (dir / "wrong.safetensors").string();
    save_safetensors(wrong, tensors, tf.metadata);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(wrong), doctest::Contains("'1.weight'"), Error);

    // A missing tensor, an unknown spec, not a sprig file.
    tensors.erase(tensors.begin());
    save_safetensors(wrong, tensors, tf.metadata);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(wrong), doctest::Contains("missing tensor"), Error);
    auto meta = tf.metadata;
    meta["spec"] = "conv(8,3) wobble";
    save_safetensors(wrong, tf.tensors, meta);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(wrong), doctest::Contains("wobble"), Error);
    save_safetensors(wrong, tf.tensors, {});
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(wrong), doctest::Contains("not a sprig checkpoint"),
                         Error);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint((dir / "absent.safetensors").string()),
                         doctest::Contains("absent.safetensors"), Error);

    // Saving into a directory that does not exist fails and leaves the good file alone.
    CHECK_THROWS_AS(nn::save_checkpoint((dir / "no" / "such" / "m.safetensors").string(), m),
                    Error);
    CHECK(file_bytes(good) == bytes);
  }
}

TEST_SUITE("model") {
  TEST_CASE("forward hooks see every layer's input and output, and can be removed") {
    nn::Model m = nn::build_model("flatten linear(4) relu linear(2)", {1, 3, 3}, 0);
    std::vector<Shape> seen;
    int id =
        m.net->layers[1]->add_forward_hook([&](nn::Module&, const Tensor& in, const Tensor& out) {
          seen.push_back(in.shape());
          seen.push_back(out.shape());
        });
    Tensor x = Tensor::ones({5, 1, 3, 3});
    m.forward(x);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] == Shape{5, 9});
    CHECK(seen[1] == Shape{5, 4});
    m.net->layers[1]->remove_forward_hook(id);
    m.forward(x);
    CHECK(seen.size() == 2);
  }
}
