// Data-driven pruning criteria: accumulated gradients and Molchanov et al.'s Taylor filter
// scores, against formulas worked out in the test with plain loops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "prune/data_criteria.h"

using namespace sprig;
using namespace sprig::prune;

namespace {

struct Batch {
  Tensor x, y;
};

// A BatchFn over a fixed list that counts how many batches it handed out.
struct Feeder {
  std::vector<Batch> batches;
  size_t next_index = 0;
  BatchFn fn() {
    return [this](Tensor& x, Tensor& y) {
      if (next_index >= batches.size()) return false;
      x = batches[next_index].x;
      y = batches[next_index].y;
      ++next_index;
      return true;
    };
  }
};

Tensor randn(const Shape& shape, Rng& rng) {
  return Tensor::normal(shape, 0.0f, 1.0f, rng);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// theta / ||theta||_2 after abs, as the criteria return it.
std::vector<double> normalised(std::vector<double> theta) {
  double n2 = 0.0;
  for (double& t : theta) {
    t = std::fabs(t);
    n2 += t * t;
  }
  for (double& t : theta) t /= std::sqrt(n2);
  return theta;
}

void check_close(const Tensor& got, const std::vector<double>& want) {
  REQUIRE(got.numel() == int64_t(want.size()));
  std::vector<float> g = got.to_vector();
  for (size_t i = 0; i < want.size(); ++i) CHECK(g[i] == doctest::Approx(want[i]).epsilon(1e-5));
}

double l2(const Tensor& t) {
  double s = 0.0;
  for (float v : t.to_vector()) s += double(v) * v;
  return std::sqrt(s);
}

// True when a forward of layer i now keeps its output's gradient, i.e. a hook is still on.
bool layer_records(nn::Model& model, size_t i, const Tensor& x) {
  Tensor in = x;
  for (size_t j = 0; j < i; ++j) in = (*model.net->layers[j])(in);
  Tensor out = (*model.net->layers[i])(in);
  return out.impl()->retain_grad;
}

}  // namespace

TEST_SUITE("prune_data_criteria") {
  TEST_CASE("accumulate_gradients sums the analytic MSE gradient over batches") {
    nn::Model model = nn::build_model("flatten linear(2,bias=0)", {3}, 3);
    REQUIRE(model.named_parameters()[0].first == "1.weight");
    nn::Parameter& w = *model.named_parameters()[0].second;  // (2, 3)
    std::vector<float> W = w.value.to_vector();

    Rng rng(11);
    Feeder feed;
    for (int64_t n : {2, 3, 4}) feed.batches.push_back({randn({n, 3}, rng), randn({n, 2}, rng)});
    LossFn loss = [&](const Tensor& x, const Tensor& y) { return mse_loss(model.forward(x), y); };

    // dL/dP = 2 (P - T) / (N * 2) for the mean over N x 2 outputs; dL/dW = dP^T X.
    auto analytic = [&](size_t nbatches) {
      std::vector<double> g(6, 0.0);  // (2, 3)
      for (size_t b = 0; b < nbatches; ++b) {
        const Batch& B = feed.batches[b];
        int64_t N = B.x.size(0);
        std::vector<float> X = B.x.to_vector(), T = B.y.to_vector();
        for (int64_t n = 0; n < N; ++n)
          for (int o = 0; o < 2; ++o) {
            double p = 0.0;
            for (int i = 0; i < 3; ++i) p += double(W[o * 3 + i]) * X[n * 3 + i];
            double dp = 2.0 * (p - T[n * 2 + o]) / double(N * 2);
            for (int i = 0; i < 3; ++i) g[o * 3 + i] += dp * X[n * 3 + i];
          }
      }
      return g;
    };

    // Leave a stale gradient behind: it must be cleared, not added to.
    mse_loss(model.forward(feed.batches[2].x), feed.batches[2].y).backward();
    REQUIRE(w.grad().defined());

    accumulate_gradients(model, feed.fn(), loss, 2);
    CHECK(feed.next_index == 2);  // stops after `batches` even though more are there
    check_close(w.grad(), analytic(2));

    feed.next_index = 0;
    accumulate_gradients(model, feed.fn(), loss, 1);
    check_close(w.grad(), analytic(1));

    feed.next_index = 0;
    accumulate_gradients(model, feed.fn(), loss, -1);  // all
    CHECK(feed.next_index == 3);
    check_close(w.grad(), analytic(3));

    // More batches asked for than there are: uses what there is.
    feed.next_index = 0;
    accumulate_gradients(model, feed.fn(), loss, 10);
    check_close(w.grad(), analytic(3));
  }

  TEST_CASE("accumulate_gradients with cross-entropy, unreached parameters and errors") {
    nn::Model model = nn::build_model("flatten linear(3) relu linear(2)", {2}, 5);
    auto params = model.named_parameters();  // 1.weight 1.bias 3.weight 3.bias
    REQUIRE(params.size() == 4);
    Tensor W = params[0].second->value, b = params[1].second->value;
    Rng rng(12);
    Feeder feed;
    feed.batches.push_back({randn({4, 2}, rng), Tensor::from_vector_i32({0, 2, 1, 1}, {4})});

    // A loss that reads only the first linear layer (3 classes): the last layer is unreached
    // and gets zero gradients. dL/dlogits = (softmax - onehot) / N.
    LossFn loss = [&](const Tensor& x, const Tensor& y) {
      Tensor h = (*model.net->layers[1])((*model.net->layers[0])(x));
      return cross_entropy(h, y);
    };
    accumulate_gradients(model, feed.fn(), loss, 1);
    std::vector<float> X = feed.batches[0].x.to_vector(), Wv = W.to_vector(), bv = b.to_vector();
    std::vector<int32_t> Y = feed.batches[0].y.to_vector_i32();
    std::vector<double> gw(6, 0.0), gb(3, 0.0);
    for (int n = 0; n < 4; ++n) {
      double z[3], mx = -1e30, den = 0.0;
      for (int o = 0; o < 3; ++o) {
        z[o] = bv[o] + Wv[o * 2] * X[n * 2] + Wv[o * 2 + 1] * X[n * 2 + 1];
        mx = std::max(mx, z[o]);
      }
      for (int o = 0; o < 3; ++o) den += std::exp(z[o] - mx);
      for (int o = 0; o < 3; ++o) {
        double d = (std::exp(z[o] - mx) / den - (Y[n] == o)) / 4.0;
        gb[o] += d;
        for (int i = 0; i < 2; ++i) gw[o * 2 + i] += d * X[n * 2 + i];
      }
    }
    check_close(params[0].second->grad(), gw);
    check_close(params[1].second->grad(), gb);
    for (int i : {2, 3}) {
      Tensor g = params[i].second->grad();
      REQUIRE(g.defined());
      for (float v : g.to_vector()) CHECK(v == 0.0f);
    }

    feed.next_index = 0;
    CHECK(error_of([&] { accumulate_gradients(model, feed.fn(), loss, 0); }) != "");
    feed.next_index = 1;  // exhausted
    CHECK(error_of([&] { accumulate_gradients(model, feed.fn(), loss, 1); }).find("no batches") !=
          std::string::npos);
    feed.next_index = 0;
    LossFn no_grad = [&](const Tensor& x, const Tensor& y) {
      NoGradGuard g;
      return loss(x, y);
    };
    CHECK(error_of([&] { accumulate_gradients(model, feed.fn(), no_grad, 1); }).find("grad mode") !=
          std::string::npos);
  }

  TEST_CASE("Taylor scores of a linear layer: |mean(a * r)| per neuron, both variants") {
    // L = sum(r * a) for the linear output a, so dL/da = r exactly.
    nn::Model model = nn::build_model("flatten linear(3)", {2}, 9);
    Tensor W = model.named_parameters()[0].second->value;  // (3, 2)
    Tensor b = model.named_parameters()[1].second->value;  // (3)
    Rng rng(13);
    Feeder feed;
    for (int64_t n : {2, 3}) feed.batches.push_back({randn({n, 2}, rng), randn({n, 3}, rng)});
    LossFn loss = [&](const Tensor& x, const Tensor& r) { return sum(mul(model.forward(x), r)); };

    std::vector<double> ref(3, 0.0), paper(3, 0.0);
    std::vector<float> Wv = W.to_vector(), bv = b.to_vector();
    int64_t examples = 0;
    for (const Batch& B : feed.batches) {
      int64_t N = B.x.size(0);
      std::vector<float> X = B.x.to_vector(), R = B.y.to_vector();
      for (int64_t n = 0; n < N; ++n)
        for (int k = 0; k < 3; ++k) {
          double a = bv[k] + Wv[k * 2] * X[n * 2] + Wv[k * 2 + 1] * X[n * 2 + 1];
          ref[k] += a * R[n * 3 + k] / double(N);   // batch mean, summed over batches
          paper[k] += std::fabs(a * R[n * 3 + k]);  // per example, averaged at the end
        }
      examples += N;
    }
    for (double& p : paper) p /= double(examples);

    auto scores = taylor_filter_scores(model, feed.fn(), loss, -1);
    REQUIRE(scores.size() == 1);
    REQUIRE(scores.count("1.weight"));
    check_close(scores["1.weight"], normalised(ref));
    CHECK(l2(scores["1.weight"]) == doctest::Approx(1.0));

    feed.next_index = 0;
    scores = taylor_filter_scores(model, feed.fn(), loss, -1, TaylorVariant::Paper);
    check_close(scores["1.weight"], normalised(paper));
    CHECK(l2(scores["1.weight"]) == doctest::Approx(1.0));

    // batches limits how many are used.
    feed.next_index = 0;
    taylor_filter_scores(model, feed.fn(), loss, 1);
    CHECK(feed.next_index == 1);
  }

  TEST_CASE("Taylor scores of a conv layer and the linear layer after it") {
    // conv(2,2) on (1,3,3) -> a1 (N,2,2,2); relu; flatten -> 8; linear(3) -> a2 (N,3).
    // L = sum(r * a2): dL/da2 = r, dL/da1[n,c,p,q] = [a1 > 0] sum_o r[n,o] W2[o, c*4+p*2+q].
    nn::Model model = nn::build_model("conv(2,2) relu flatten linear(3)", {1, 3, 3}, 21);
    auto params = model.named_parameters();  // 0.weight 0.bias 3.weight 3.bias
    REQUIRE(params.size() == 4);
    std::vector<float> W1 = params[0].second->value.to_vector();  // (2, 1, 2, 2)
    std::vector<float> b1 = params[1].second->value.to_vector();  // (2)
    std::vector<float> W2 = params[2].second->value.to_vector();  // (3, 8)
    std::vector<float> b2 = params[3].second->value.to_vector();  // (3)
    Rng rng(14);
    Feeder feed;
    for (int64_t n : {3, 2}) feed.batches.push_back({randn({n, 1, 3, 3}, rng), randn({n, 3}, rng)});
    LossFn loss = [&](const Tensor& x, const Tensor& r) { return sum(mul(model.forward(x), r)); };

    std::vector<double> ref1(2, 0.0), paper1(2, 0.0), ref2(3, 0.0), paper2(3, 0.0);
    int64_t examples = 0;
    for (const Batch& B : feed.batches) {
      int64_t N = B.x.size(0);
      std::vector<float> X = B.x.to_vector(), R = B.y.to_vector();
      for (int64_t n = 0; n < N; ++n) {
        double a1[8], h[8];  // (2, 2, 2) per example
        for (int c = 0; c < 2; ++c)
          for (int p = 0; p < 2; ++p)
            for (int q = 0; q < 2; ++q) {
              double s = b1[c];
              for (int r = 0; r < 2; ++r)
                for (int t = 0; t < 2; ++t)
                  s += W1[c * 4 + r * 2 + t] * X[n * 9 + (p + r) * 3 + q + t];
              a1[c * 4 + p * 2 + q] = s;
              h[c * 4 + p * 2 + q] = s > 0 ? s : 0;
            }
        for (int c = 0; c < 2; ++c) {
          double per_example = 0.0;  // sum over the 4 positions of a1 * g1
          for (int j = 0; j < 4; ++j) {
            int i = c * 4 + j;
            double g = 0.0;
            if (a1[i] > 0)
              for (int o = 0; o < 3; ++o) g += R[n * 3 + o] * W2[o * 8 + i];
            per_example += a1[i] * g;
          }
          ref1[c] += per_example / double(N * 4);
          paper1[c] += std::fabs(per_example / 4.0);
        }
        for (int o = 0; o < 3; ++o) {
          double a2 = b2[o];
          for (int i = 0; i < 8; ++i) a2 += W2[o * 8 + i] * h[i];
          ref2[o] += a2 * R[n * 3 + o] / double(N);
          paper2[o] += std::fabs(a2 * R[n * 3 + o]);
        }
      }
      examples += N;
    }
    for (double& p : paper1) p /= double(examples);
    for (double& p : paper2) p /= double(examples);

    auto ref = taylor_filter_scores(model, feed.fn(), loss, 2);
    REQUIRE(ref.size() == 2);
    check_close(ref.at("0.weight"), normalised(ref1));
    check_close(ref.at("3.weight"), normalised(ref2));
    feed.next_index = 0;
    auto paper = taylor_filter_scores(model, feed.fn(), loss, 2, TaylorVariant::Paper);
    check_close(paper.at("0.weight"), normalised(paper1));
    check_close(paper.at("3.weight"), normalised(paper2));
    for (auto* s : {&ref, &paper})
      for (auto& [name, t] : *s) CHECK(l2(t) == doctest::Approx(1.0));
    // The variants really differ here (signs cancel in the batch mean but not per example).
    CHECK(ref.at("3.weight").to_vector() != paper.at("3.weight").to_vector());

    // Afterwards: no hooks left (a forward does not retain grads) and grads are cleared.
    Tensor x = feed.batches[0].x;
    CHECK_FALSE(layer_records(model, 0, x));
    CHECK_FALSE(layer_records(model, 3, x));
    for (auto& [name, p] : model.named_parameters()) CHECK_MESSAGE(!p->grad().defined(), name);
  }

  TEST_CASE("Taylor removes its hooks and clears grads when the loss throws") {
    nn::Model model = nn::build_model("conv(2,2) relu flatten linear(3)", {1, 3, 3}, 22);
    Rng rng(15);
    Feeder feed;
    for (int i = 0; i < 3; ++i)
      feed.batches.push_back({randn({2, 1, 3, 3}, rng), randn({2, 3}, rng)});
    int calls = 0;
    LossFn loss = [&](const Tensor& x, const Tensor& r) {
      Tensor l = sum(mul(model.forward(x), r));
      if (++calls == 2) throw Error("boom");
      return l;
    };
    CHECK(error_of([&] { taylor_filter_scores(model, feed.fn(), loss, -1); }) == "boom");
    CHECK_FALSE(layer_records(model, 0, feed.batches[0].x));
    CHECK_FALSE(layer_records(model, 3, feed.batches[0].x));
    for (auto& [name, p] : model.named_parameters()) CHECK_MESSAGE(!p->grad().defined(), name);

    // A loss that never runs the model with grad on is reported, not scored as zeros.
    feed.next_index = 0;
    LossFn detached = [&](const Tensor& x, const Tensor& r) {
      Tensor out;
      {
        NoGradGuard g;
        out = model.forward(x);
      }
      return sum(mul(out, r));
    };
    CHECK(error_of([&] { taylor_filter_scores(model, feed.fn(), detached, 1); }) != "");
    CHECK_FALSE(layer_records(model, 0, feed.batches[0].x));
    feed.next_index = 3;
    CHECK(error_of([&] { taylor_filter_scores(model, feed.fn(), loss, 1); }).find("no batches") !=
          std::string::npos);
  }
}
