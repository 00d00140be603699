// Finite-difference gradient checks for every differentiable op and layer, and the autograd
// engine's semantics (accumulation, shared inputs, NoGradGuard, errors).
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "tests/gradcheck.h"

using namespace sprig;
using sprig::testing::check_gradients;
using sprig::testing::param;
using V = std::vector<Tensor>;

TEST_SUITE("gradcheck") {
  TEST_CASE("add, sub, mul, scale") {
    Rng rng(1);
    V in = {param({3, 5}, rng), param({3, 5}, rng)};
    check_gradients([](const V& x) { return add(x[0], x[1]); }, in);
    check_gradients([](const V& x) { return sub(x[0], x[1]); }, in);
    check_gradients([](const V& x) { return mul(x[0], x[1]); }, in);
    check_gradients([](const V& x) { return scale(x[0], -2.5f); }, in);
    // The same tensor on both sides: gradients from both uses must add up.
    check_gradients([](const V& x) { return mul(x[0], x[0]); }, in);
  }

  TEST_CASE("relu") {
    Rng rng(2);
    Tensor x = param({4, 7}, rng);
    sprig::testing::away_from_zero(x, 0.05f);
    check_gradients([](const V& v) { return relu(v[0]); }, {x});
  }

  TEST_CASE("matmul") {
    Rng rng(3);
    check_gradients([](const V& x) { return matmul(x[0], x[1]); },
                    {param({3, 4}, rng), param({4, 5}, rng)});
    check_gradients([](const V& x) { return matmul(x[0], x[1]); },
                    {param({1, 7}, rng), param({7, 1}, rng)});
  }

  TEST_CASE("linear with and without bias") {
    Rng rng(4);
    V in = {param({5, 7}, rng), param({3, 7}, rng), param({3}, rng)};
    check_gradients([](const V& x) { return linear(x[0], x[1], x[2]); }, in);
    check_gradients([](const V& x) { return linear(x[0], x[1], Tensor()); }, {in[0], in[1]});
  }

  TEST_CASE("conv2d: padding, stride, dilation, bias") {
    Rng rng(5);
    struct Case {
      Shape x, w;
      Conv2dOptions opt;
      bool bias;
    };
    for (const Case& c : {Case{{2, 3, 6, 5}, {4, 3, 3, 3}, {1, 1, 1}, true},
                          Case{{1, 2, 7, 7}, {3, 2, 3, 3}, {2, 0, 1}, true},
                          Case{{2, 2, 7, 6}, {2, 2, 3, 2}, {1, 2, 2}, false},
                          Case{{3, 1, 5, 5}, {2, 1, 1, 1}, {1, 0, 1}, true}}) {
      CAPTURE(to_string(c.x));
      CAPTURE(to_string(c.w));
      V in = {param(c.x, rng), param(c.w, rng), param({c.w[0]}, rng)};
      Conv2dOptions opt = c.opt;
      if (c.bias)
        check_gradients([opt](const V& x) { return conv2d(x[0], x[1], x[2], opt); }, in);
      else
        check_gradients([opt](const V& x) { return conv2d(x[0], x[1], Tensor(), opt); },
                        {in[0], in[1]});
    }
  }

  TEST_CASE("max_pool2d") {
    // Distinct values spaced well apart, so a finite-difference step never changes the argmax.
    for (auto [k, s, p] : {std::tuple{2, 2, 0}, std::tuple{3, 2, 1}, std::tuple{3, 1, 0}}) {
      Rng rng(6 + k + s);
      Shape shape{2, 3, 7, 6};
      std::vector<float> v(numel(shape));
      for (size_t i = 0; i < v.size(); ++i) v[i] = 0.05f * float(i);
      for (size_t i = v.size() - 1; i > 0; --i) std::swap(v[i], v[rng.below(i + 1)]);
      Tensor x = Tensor::from_vector(v, shape);
      x.set_requires_grad(true);
      check_gradients([k = k, s = s, p = p](const V& in) { return max_pool2d(in[0], k, s, p); },
                      {x}, 1e-2f);
    }
  }

  TEST_CASE("avg_pool2d, global_avg_pool2d, shortcut") {
    Rng rng(21);
    Tensor x = param({2, 3, 7, 6}, rng);
    for (auto [k, s, p] : {std::tuple{2, 2, 0}, std::tuple{3, 2, 1}, std::tuple{3, 1, 0}})
      check_gradients([k = k, s = s, p = p](const V& in) { return avg_pool2d(in[0], k, s, p); },
                      {x});
    check_gradients([](const V& in) { return global_avg_pool2d(in[0]); }, {x});
    // Stride 2 on odd and even sizes, channels centred and shifted.
    check_gradients([](const V& in) { return shortcut(in[0], 7, 2); }, {x});
    check_gradients([](const V& in) { return shortcut(in[0], 5, 3, 0); }, {x});
    check_gradients([](const V& in) { return shortcut(in[0], 3, 1); }, {x});
  }

  TEST_CASE("batch_norm: batch statistics, running statistics, with and without affine") {
    Rng rng(22);
    for (Shape shape : {Shape{4, 3, 3, 2}, Shape{5, 4}, Shape{1, 2, 3, 3}}) {
      CAPTURE(to_string(shape));
      const int64_t C = shape[1];
      Tensor x = param(shape, rng, -2.0f, 2.0f);
      Tensor w = param({C}, rng, 0.5f, 1.5f), b = param({C}, rng);
      Tensor rm = Tensor::from_vector(std::vector<float>(C, 0.1f), {C});
      Tensor rv = Tensor::from_vector(std::vector<float>(C, 0.8f), {C});
      // Momentum 0 keeps the running statistics fixed while the differences are taken.
      for (bool training : {true, false}) {
        CAPTURE(training);
        check_gradients(
            [&](const V& in) { return batch_norm(in[0], in[1], in[2], rm, rv, training, 0.0f); },
            {x, w, b});
        check_gradients(
            [&](const V& in) {
              return batch_norm(in[0], Tensor(), Tensor(), rm, rv, training, 0.0f);
            },
            {x});
      }
    }
  }

  TEST_CASE("batch_norm with statistics summed across processes (one process here)") {
    // The synchronised path (sums of x and x^2 out, sums of dy and dy * xhat back) with a
    // single process: the sum across processes is the identity, and the gradients must still
    // be those of the forward. test_kernels_norm splits a batch into shards; test_dist runs
    // it on real ranks.
    Rng rng(24);
    int calls = 0;
    SumAcrossProcesses alone = [&calls](double*, int64_t) { ++calls; };
    for (Shape shape : {Shape{4, 3, 3, 2}, Shape{5, 4}}) {
      CAPTURE(to_string(shape));
      const int64_t C = shape[1];
      Tensor x = param(shape, rng, -2.0f, 2.0f);
      Tensor w = param({C}, rng, 0.5f, 1.5f), b = param({C}, rng);
      Tensor rm = Tensor::from_vector(std::vector<float>(C, 0.1f), {C});
      Tensor rv = Tensor::from_vector(std::vector<float>(C, 0.8f), {C});
      check_gradients(
          [&](const V& in) {
            return batch_norm(in[0], in[1], in[2], rm, rv, true, 0.0f, 1e-5f, alone);
          },
          {x, w, b});
      // And the same values as the unsynchronised op.
      Tensor synced = batch_norm(x, w, b, rm, rv, true, 0.0f, 1e-5f, alone);
      Tensor plain = batch_norm(x, w, b, rm, rv, true, 0.0f, 1e-5f);
      std::vector<float> got = synced.to_vector(), want = plain.to_vector();
      for (size_t i = 0; i < got.size(); ++i)
        CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
    }
    CHECK(calls > 0);
  }

  TEST_CASE("a residual block with BatchNorm and both shortcut kinds") {
    Rng rng(23);
    for (const char* spec :
         {"res[conv(3,3,pad=1,bias=0) bn relu conv(3,3,pad=1,bias=0) bn] gap flatten linear(4)",
          "res[conv(6,3,stride=2,pad=1) bn relu conv(6,3,pad=1) bn | shortcut(6,stride=2)] "
          "flatten linear(4)",
          "res(relu=0)[conv(5,3,stride=2,pad=1) bn | conv(5,1,stride=2) bn] avgpool(2) flatten "
          "linear(4)"}) {
      CAPTURE(spec);
      nn::Model m = nn::build_model(spec, {3, 6, 6}, 5);
      Tensor in = param({3, 3, 6, 6}, rng);
      V all = {in};
      for (auto& p : m.parameters()) all.push_back(p->value);
      Tensor labels = Tensor::from_vector_i32({1, 3, 0}, {3});
      // Training mode: batch statistics (running ones change between calls but do not feed
      // the output).
      check_gradients([&](const V& v) { return cross_entropy(m.forward(v[0]), labels); }, all,
                      2e-3f, 3e-2, 3e-3);
    }
  }

  TEST_CASE("reshape, flatten, sum, mean") {
    Rng rng(7);
    Tensor x = param({2, 3, 4}, rng);
    check_gradients([](const V& v) { return reshape(v[0], {4, -1}); }, {x});
    check_gradients([](const V& v) { return flatten(v[0], 1); }, {x});
    check_gradients([](const V& v) { return sum(v[0]); }, {x});
    check_gradients([](const V& v) { return mean(v[0]); }, {x});
  }

  TEST_CASE("cross_entropy and mse_loss") {
    Rng rng(8);
    Tensor logits = param({6, 5}, rng, -3.0f, 3.0f);
    Tensor labels = Tensor::from_vector_i32({0, 4, 2, 2, 1, 3}, {6});
    check_gradients([labels](const V& v) { return cross_entropy(v[0], labels); }, {logits});
    V in = {param({4, 3}, rng), param({4, 3}, rng)};
    check_gradients([](const V& v) { return mse_loss(v[0], v[1]); }, in);
  }

  TEST_CASE("layers: Linear, Conv2d, and a small Sequential") {
    Rng rng(9);
    nn::Linear lin(6, 4, true, rng);
    Tensor x = param({3, 6}, rng);
    check_gradients([&](const V& v) { return lin.forward(v[0]); },
                    {x, lin.weight->value, lin.bias->value});

    nn::Conv2d conv(2, 3, 3, {1, 1, 1}, true, rng);
    Tensor img = param({2, 2, 5, 5}, rng);
    check_gradients([&](const V& v) { return conv.forward(v[0]); },
                    {img, conv.weight->value, conv.bias->value});

    nn::Model m =
        nn::build_model("conv(3,3,pad=1) relu maxpool(2) flatten linear(4)", {1, 6, 6}, 3);
    Tensor in = param({2, 1, 6, 6}, rng);
    V all = {in};
    for (auto& p : m.parameters()) all.push_back(p->value);
    Tensor labels = Tensor::from_vector_i32({1, 3}, {2});
    // Small eps: the ReLU and max-pool kinks are crossed with probability ~ eps.
    check_gradients([&](const V& v) { return cross_entropy(m.forward(v[0]), labels); }, all, 2e-3f,
                    3e-2, 3e-3);
  }
}

TEST_SUITE("autograd") {
  TEST_CASE("leaf gradients accumulate across backward calls") {
    Tensor x = Tensor::from_vector({1, 2, 3}, {3});
    x.set_requires_grad(true);
    sum(scale(x, 2.0f)).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{2, 2, 2});
    sum(scale(x, 3.0f)).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{5, 5, 5});
    x.zero_grad();
    CHECK(x.grad().to_vector() == std::vector<float>{0, 0, 0});
  }

  TEST_CASE("diamond graph: both paths contribute") {
    Tensor x = Tensor::from_vector({1.5f, -2.0f}, {2});
    x.set_requires_grad(true);
    Tensor a = scale(x, 3.0f), b = mul(x, x);
    sum(add(a, b)).backward();  // d/dx (3x + x^2) = 3 + 2x
    CHECK(x.grad().to_vector() == std::vector<float>{6.0f, -1.0f});
  }

  TEST_CASE("NoGradGuard records nothing; ops without grad inputs record nothing") {
    Tensor x = Tensor::ones({2});
    x.set_requires_grad(true);
    {
      NoGradGuard guard;
      Tensor y = scale(x, 2.0f);
      CHECK_FALSE(y.requires_grad());
      CHECK(y.grad_fn() == nullptr);
    }
    CHECK(scale(x, 2.0f).requires_grad());
    CHECK_FALSE(scale(Tensor::ones({2}), 2.0f).requires_grad());
  }

  TEST_CASE("errors name the problem") {
    Tensor x = Tensor::ones({3});
    x.set_requires_grad(true);
    CHECK_THROWS_WITH_AS(scale(x, 2.0f).backward(), doctest::Contains("single value"), Error);
    CHECK_THROWS_WITH_AS(Tensor::ones({2}).backward(), doctest::Contains("does not require grad"),
                         Error);
    CHECK_THROWS_WITH_AS(add(Tensor::ones({2, 3}), Tensor::ones({3, 2})),
                         doctest::Contains("(2, 3) and (3, 2)"), Error);
    CHECK_THROWS_WITH_AS(matmul(Tensor::ones({2, 3}), Tensor::ones({2, 3})),
                         doctest::Contains("do not chain"), Error);
    CHECK_THROWS_WITH_AS(conv2d(Tensor::ones({1, 3, 5, 5}), Tensor::ones({4, 2, 3, 3}), Tensor()),
                         doctest::Contains("3 channels"), Error);
    CHECK_THROWS_WITH_AS(cross_entropy(Tensor::ones({2, 3}), Tensor::from_vector_i32({0, 3}, {2})),
                         doctest::Contains("label 3"), Error);
    CHECK_THROWS_WITH_AS(reshape(Tensor::ones({2, 3}), {4, 2}),
                         doctest::Contains("cannot be viewed"), Error);
    CHECK_THROWS_AS(Tensor().shape(), Error);
  }

  TEST_CASE("reshape is a view of the same storage") {
    Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor y = x.reshape({3, 2});
    y.data()[0] = 42.0f;
    CHECK(x.data()[0] == 42.0f);
    CHECK(x.flatten(0).shape() == Shape{6});
    CHECK(reshape(x, {-1}).shape() == Shape{6});
  }
}

TEST_SUITE("autograd") {
  TEST_CASE("retain_grad keeps a non-leaf's gradient") {
    Tensor x = Tensor::from_vector({1.0f, -2.0f, 3.0f}, {3});
    x.set_requires_grad(true);
    Tensor h = scale(x, 2.0f);  // non-leaf
    h.retain_grad();
    Tensor w = Tensor::from_vector({0.5f, 1.0f, -1.0f}, {3});
    sum(mul(h, w)).backward();
    REQUIRE(h.grad().defined());
    CHECK(h.grad().to_vector() == w.to_vector());  // dL/dh = w
    CHECK(x.grad().to_vector() == std::vector<float>{1.0f, 2.0f, -2.0f});
    Tensor h2 = scale(x, 2.0f);  // without retain_grad nothing is kept
    sum(h2).backward();
    CHECK_FALSE(h2.grad().defined());
  }
}

// Fake quantisation rounds, so its derivative is zero almost everywhere and no finite
// difference describes what QAT wants: its backward is the straight-through estimator, checked
// here by its definition through a whole layer.
TEST_SUITE("autograd") {
  TEST_CASE("fake quantisation: straight-through gradients, stopped where the input clamps") {
    Rng rng(21);
    Tensor x = Tensor::uniform({3, 40}, -2.0f, 2.0f, rng);
    x.set_requires_grad(true);
    Tensor w = Tensor::uniform({4, 40}, -1.0f, 1.0f, rng);
    w.set_requires_grad(true);
    const float scale = 0.01f;  // codes cover [-0.5, 2.05]: values below -0.5 clamp
    const int32_t zero = 50;
    Tensor y = linear(fake_quantize(x, scale, zero), fake_quantize_per_channel(w), Tensor());
    Tensor c = Tensor::uniform({3, 4}, -1.0f, 1.0f, rng);
    sum(mul(y, c)).backward();
    // As if both fake quantisers were the identity in backward, except where x clamps.
    Tensor xq = fake_quantize(x.detach(), scale, zero), wq = fake_quantize_per_channel(w.detach());
    std::vector<float> dx = x.grad().to_vector(), dw = w.grad().to_vector();
    std::vector<float> cv = c.to_vector(), xv = x.to_vector(), xqv = xq.to_vector(),
                       wqv = wq.to_vector();
    int stopped = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t k = 0; k < 40; ++k) {
        double want = 0;  // d/dxq of sum(c * (xq wq^T)) = c wq
        for (int64_t o = 0; o < 4; ++o) want += cv[size_t(n * 4 + o)] * wqv[size_t(o * 40 + k)];
        const bool clamps = xv[size_t(n * 40 + k)] < -0.5f - scale;
        stopped += clamps;
        CHECK(dx[size_t(n * 40 + k)] == doctest::Approx(clamps ? 0.0 : want).epsilon(1e-5));
      }
    CHECK(stopped > 10);
    for (int64_t o = 0; o < 4; ++o)
      for (int64_t k = 0; k < 40; ++k) {
        double want = 0;  // c^T xq: every weight lies inside its channel's range
        for (int64_t n = 0; n < 3; ++n) want += cv[size_t(n * 4 + o)] * xqv[size_t(n * 40 + k)];
        CHECK(dw[size_t(o * 40 + k)] == doctest::Approx(want).epsilon(1e-5));
      }
    CHECK_THROWS_WITH_AS(fake_quantize(x, 0.0f, 0), doctest::Contains("positive scale"), Error);
    CHECK_THROWS_WITH_AS(fake_quantize(x, 1.0f, 300), doctest::Contains("300"), Error);
  }
}
