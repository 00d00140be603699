// Residual networks: the spec language's blocks and names, the ResNet zoo against
// pytorch_resnet_cifar10's numbers, BatchNorm's training and evaluation modes, its running
// statistics in checkpoints, and the summary tree.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/safetensors.h"
#include "nn/checkpoint.h"
#include "nn/summary.h"

using namespace sprig;
namespace fs = std::filesystem;

namespace {

std::string spec_error(const std::string& spec, const Shape& in = {3, 8, 8}) {
  try {
    nn::build_model(spec, in, 0);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

bool has_name(const nn::Model& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return true;
  for (auto& [n, b] : m.named_buffers())
    if (n == name) return true;
  return false;
}

nn::BatchNorm& first_bn(const nn::Model& m) {
  return dynamic_cast<nn::BatchNorm&>(*m.net->layers[1]);
}

}  // namespace

TEST_SUITE("resnet") {
  TEST_CASE("zoo ResNets have pytorch_resnet_cifar10's parameter counts") {
    // From bench/torch_resnet.py (the PyTorch twin), 3- and 1-channel inputs.
    struct Case {
      const char* name;
      int64_t rgb, gray;
    };
    for (const Case& c : {Case{"resnet20", 269722, 269434}, Case{"resnet32", 464154, 463866},
                          Case{"resnet56", 853018, 852730}, Case{"resnet20b", 272474, 272186}}) {
      CAPTURE(c.name);
      CHECK(nn::build_model(c.name, {3, 32, 32}, 0).num_parameters() == c.rgb);
      CHECK(nn::build_model(c.name, {1, 28, 28}, 0).num_parameters() == c.gray);
    }
    CHECK(nn::build_model("resnet20", {3, 32, 32}, 0).output_shape() == Shape{10});
    CHECK(nn::build_model("resnet56", {1, 28, 28}, 0).output_shape() == Shape{10});
  }

  TEST_CASE("parameters and buffers are named as PyTorch's state_dict") {
    nn::Model a = nn::build_model("resnet20", {3, 32, 32}, 0);
    for (const char* n :
         {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
          "layer1.0.conv1.weight", "layer1.2.bn2.running_var", "layer2.0.conv1.weight",
          "layer3.2.conv2.weight", "linear.weight", "linear.bias"})
      CHECK_MESSAGE(has_name(a, n), n);
    CHECK_FALSE(has_name(a, "layer2.0.shortcut.0.weight"));  // option A has no weights
    nn::Model b = nn::build_model("resnet20b", {3, 32, 32}, 0);
    for (const char* n : {"layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.weight",
                          "layer3.0.shortcut.1.running_mean"})
      CHECK_MESSAGE(has_name(b, n), n);
    CHECK_FALSE(has_name(b, "layer1.0.shortcut.0.weight"));  // identity where shapes agree
    // BatchNorm scales and shifts are marked for the training recipes; nothing else is.
    for (auto& [n, p] : b.named_parameters())
      CHECK_MESSAGE(p->norm_affine == (n.find("bn") != std::string::npos ||
                                       n.find("shortcut.1") != std::string::npos),
                    n);
  }

  TEST_CASE("specs with blocks and names round-trip through their canonical form") {
    for (const char* name : {"resnet20", "resnet20b", "resnet56"}) {
      nn::Model a = nn::build_model(name, {3, 32, 32}, 4);
      nn::Model b = nn::build_model(a.spec, {3, 32, 32}, 4);
      CHECK(a.spec == b.spec);
      CHECK(a.spec == nn::zoo_spec(name));
      auto pa = a.named_parameters(), pb = b.named_parameters();
      REQUIRE(pa.size() == pb.size());
      for (size_t i = 0; i < pa.size(); ++i) {
        CHECK(pa[i].first == pb[i].first);
        CHECK(pa[i].second->value.to_vector() == pb[i].second->value.to_vector());
      }
    }
    nn::Model m = nn::build_model(
        "stem : conv(4,3,pad=1) bn relu  seq[ res[ conv(4,3,pad=1) bn relu c2:conv(4,3,pad=1) ] "
        "res(relu=0)[avgpool(2) | shortcut(4, stride=2)] ] gap flatten out:linear(3)",
        {2, 6, 6}, 0);
    CHECK(m.spec ==
          "stem:conv(4,3,pad=1) bn relu seq[res[conv(4,3,pad=1) bn relu c2:conv(4,3,pad=1)] "
          "res(relu=0)[avgpool(2) | shortcut(4,stride=2)]] gap flatten out:linear(3)");
    CHECK(has_name(m, "stem.weight"));
    CHECK(has_name(m, "3.0.c2.weight"));
    CHECK(has_name(m, "3.0.1.running_mean"));
    CHECK(has_name(m, "out.bias"));
    CHECK(m.output_shape() == Shape{3});
  }

  TEST_CASE("bad block specs name the problem") {
    CHECK(spec_error("res[conv(8,3,pad=1)]").find("identity shortcut passes (3, 8, 8)") !=
          std::string::npos);
    CHECK(spec_error("res[conv(8,3,pad=1) | conv(4,1)]").find("shortcut gives (4, 8, 8)") !=
          std::string::npos);
    CHECK(spec_error("res[]").find("body branch is empty") != std::string::npos);
    CHECK(spec_error("res[relu | relu | relu]").find("at most one shortcut") != std::string::npos);
    CHECK(spec_error("seq[relu | relu]").find("one branch") != std::string::npos);
    CHECK(spec_error("res[relu").find("missing ']'") != std::string::npos);
    CHECK(spec_error("relu ]").find("unexpected ']'") != std::string::npos);
    CHECK(spec_error("relu | relu").find("unexpected '|'") != std::string::npos);
    CHECK(spec_error("res").find("needs its layers in brackets") != std::string::npos);
    CHECK(spec_error("conv(8,3)[relu]").find("takes no [...] block") != std::string::npos);
    CHECK(spec_error("a:relu a:relu").find("name 'a' is used twice") != std::string::npos);
    CHECK(spec_error("relu 0:relu").find("is a number") != std::string::npos);
    CHECK(spec_error("res[shortcut:relu]").find("may not be named 'shortcut'") !=
          std::string::npos);
    CHECK(spec_error("res(relu=2)[relu]").find("relu must be 0 or 1") != std::string::npos);
    CHECK(spec_error("conv1:").find("expected a layer after 'conv1:'") != std::string::npos);
    CHECK(spec_error("flatten bn gap").find("gap expects (C, H, W)") != std::string::npos);
    CHECK(spec_error("shortcut(2)").find("C <= 2") != std::string::npos);
    std::string deep;
    for (int i = 0; i < 40; ++i) deep += "seq[";
    deep += "relu";
    for (int i = 0; i < 40; ++i) deep += "]";
    CHECK(spec_error(deep).find("nested more than") != std::string::npos);
    // Every error is one line that names the spec and the character.
    CHECK(spec_error("res[conv(8,3,pad=1)]").rfind("model spec '", 0) == 0);
  }

  TEST_CASE("BatchNorm: batch statistics and running-statistic updates in training mode") {
    nn::Model m = nn::build_model("conv(2,1,bias=0) bn", {1, 1, 2}, 0);
    auto& conv = dynamic_cast<nn::Conv2d&>(*m.net->layers[0]);
    conv.weight->value.copy_(Tensor::from_vector({1.0f, -1.0f}, {2, 1, 1, 1}));
    // Channel 0 sees 1, 2, 3, 6 over the batch; channel 1 their negatives.
    Tensor x = Tensor::from_vector({1, 2, 3, 6}, {2, 1, 1, 2});
    m.net->train();
    Tensor y = m.forward(x);
    const double mean = 3.0, var = (4 + 1 + 0 + 9) / 4.0, invstd = 1.0 / std::sqrt(var + 1e-5);
    auto yv = y.to_vector();  // (2, 2, 1, 2)
    CHECK(yv[0] == doctest::Approx((1 - mean) * invstd).epsilon(1e-6));
    CHECK(yv[2] == doctest::Approx((-1 + mean) * invstd).epsilon(1e-6));
    CHECK(yv[5] == doctest::Approx((6 - mean) * invstd).epsilon(1e-6));
    auto& bn = first_bn(m);
    // running = 0.9 running + 0.1 batch, with the unbiased variance 14 / 3.
    auto rm = bn.running_mean.to_vector(), rv = bn.running_var.to_vector();
    CHECK(rm[0] == doctest::Approx(0.3).epsilon(1e-6));
    CHECK(rm[1] == doctest::Approx(-0.3).epsilon(1e-6));
    CHECK(rv[0] == doctest::Approx(0.9 + 0.1 * 14.0 / 3.0).epsilon(1e-6));
    CHECK(rv[1] == doctest::Approx(0.9 + 0.1 * 14.0 / 3.0).epsilon(1e-6));

    // Evaluation mode uses the running statistics and leaves them alone.
    m.net->eval();
    auto ye = m.forward(x).to_vector();
    CHECK(ye[0] == doctest::Approx((1 - 0.3) / std::sqrt(rv[0] + 1e-5)).epsilon(1e-6));
    CHECK(bn.running_mean.to_vector() == rm);
    CHECK(bn.running_var.to_vector() == rv);
    // A batch of one value per channel cannot be normalised in training mode; in evaluation
    // mode it can.
    Tensor one = Tensor::from_vector({1}, {1, 1, 1, 1});
    nn::Model m1 = nn::build_model("conv(2,1) bn", {1, 1, 1}, 0);
    m1.net->eval();
    CHECK_NOTHROW(m1.forward(one));
    m1.net->train();
    CHECK_THROWS_WITH_AS(m1.forward(one), doctest::Contains("more than one value per channel"),
                         Error);
  }

  TEST_CASE("train() and eval() reach BatchNorm inside residual blocks") {
    nn::Model m = nn::build_model("resnet20b", {1, 8, 8}, 0);
    m.net->eval();
    int bns = 0;
    std::function<void(const nn::Module&)> walk = [&](const nn::Module& mod) {
      if (dynamic_cast<const nn::BatchNorm*>(&mod)) {
        CHECK_FALSE(mod.is_training());
        ++bns;
      }
      for (auto& [n, c] : mod.children()) walk(*c);
    };
    walk(*m.net);
    CHECK(bns == 1 + 3 * 3 * 2 + 2);  // stem, two per block, two option-B shortcuts
    // Evaluation output does not depend on the batch it is in.
    Rng rng(3);
    Tensor x = Tensor::uniform({4, 1, 8, 8}, -1, 1, rng);
    NoGradGuard ng;
    auto all = m.forward(x).to_vector();
    Tensor first = Tensor::from_vector(std::vector<float>(x.data(), x.data() + 64), {1, 1, 8, 8});
    auto alone = m.forward(first).to_vector();
    for (int i = 0; i < 10; ++i) CHECK(alone[i] == doctest::Approx(all[i]).epsilon(1e-5));
  }

  TEST_CASE("checkpoints keep the running statistics; bad ones are refused by name") {
    fs::path dir = fs::temp_directory_path() / ("sprig_test_resnet_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    nn::Model m = nn::build_model("resnet20", {1, 8, 8}, 2);
    Rng rng(1);
    m.forward(Tensor::uniform({4, 1, 8, 8}, -1, 1, rng));  // moves the running statistics
    const std::string path = (dir / "r.safetensors").string();
    nn::save_checkpoint(path, m);
    nn::Checkpoint ck = nn::load_checkpoint(path);
    auto a = m.named_buffers(), b = ck.model.named_buffers();
    REQUIRE(a.size() == b.size());
    REQUIRE(a.size() == 2 * 19);
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].first == b[i].first);
      CHECK(a[i].second->to_vector() == b[i].second->to_vector());
    }
    CHECK(a[0].second->to_vector() != std::vector<float>(16, 0.0f));

    TensorFile tf = load_safetensors(path);
    auto edit = [&](const std::string& name, const Tensor& value) {
      auto tensors = tf.tensors;
      for (auto it = tensors.begin(); it != tensors.end(); ++it)
        if (it->first == name) {
          if (value.defined())
            it->second = value;
          else
            tensors.erase(it);
          break;
        }
      std::string bad = (dir / "bad.safetensors").string();
      save_safetensors(bad, tensors, tf.metadata);
      return bad;
    };
    std::vector<float> neg(16, 1.0f);
    neg[5] = -0.5f;
    CHECK_THROWS_WITH_AS(
        nn::load_checkpoint(edit("bn1.running_var", Tensor::from_vector(neg, {16}))),
        doctest::Contains("'bn1.running_var' holds -0.5 at element 5"), Error);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(edit("layer1.1.bn2.running_mean", Tensor())),
                         doctest::Contains("missing tensor 'layer1.1.bn2.running_mean'"), Error);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(edit("bn1.running_mean", Tensor::zeros({15}))),
                         doctest::Contains("'bn1.running_mean' is float32 (15)"), Error);
    fs::remove_all(dir);
  }

  TEST_CASE("summary shows the tree with totals over the leaves") {
    nn::Model m = nn::build_model("resnet20", {3, 32, 32}, 0);
    nn::ModelSummary s = nn::summarize(m);
    CHECK(s.params == 269722);
    // Convolutions and the classifier: 40,551,040 multiply-adds, plus the 10 bias adds.
    CHECK(s.flops == 2 * 40551040LL + 10);
    bool saw_block = false, saw_conv = false;
    for (auto& l : s.layers) {
      if (l.name == "layer2.0") {
        saw_block = true;
        CHECK(l.container);
        CHECK(l.depth == 1);
        CHECK(l.output_shape == Shape{32, 16, 16});
        CHECK(l.params == 32 * 16 * 9 + 32 * 32 * 9 + 4 * 32);
      }
      if (l.name == "layer2.0.shortcut.0") {
        CHECK(l.spec == "shortcut(32,stride=2)");
        CHECK(l.depth == 3);
      }
      if (l.name == "layer3.2.conv2") {
        saw_conv = true;
        CHECK(l.flops == 8 * 8 * 64 * 2 * 64 * 9);
      }
    }
    CHECK(saw_block);
    CHECK(saw_conv);
    std::string text = nn::format_summary(s);
    CHECK(text.find("269,722") != std::string::npos);
    CHECK(text.find("    conv1") != std::string::npos);  // indented under its block
  }
}
