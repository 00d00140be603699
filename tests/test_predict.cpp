// sprig predict: outputs for an input batch from a sprig checkpoint or from bare weights with
// PyTorch-style names plus --model; mismatches are one-line errors naming tensor and shapes.
// (The cross-check against PyTorch itself is tests/torch_interchange.py.)
#include <doctest/doctest.h>

#include <cstring>

#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "nn/checkpoint.h"
#include "tests/cli_test_util.h"

namespace fs = std::filesystem;
using namespace sprig;
using sprig::testing::count_lines;
using sprig::testing::Result;
using sprig::testing::run;

TEST_CASE("predict: checkpoint or bare weights give the model's own outputs") {
  fs::path dir = sprig::testing::temp_dir("test_predict");
  auto p = [&](const char* name) { return (dir / name).string(); };
  const std::string spec = "conv(4,3,pad=1) relu maxpool(2) flatten linear(5)";
  nn::Model m = nn::build_model(spec, {2, 6, 6}, 3);
  Rng rng(9);
  Tensor x = Tensor::uniform({7, 2, 6, 6}, -1.0f, 1.0f, rng);  // (N, C, H, W)
  Tensor want;
  {
    NoGradGuard g;
    want = m.forward(x);  // (7, 5)
  }
  nn::save_checkpoint(p("ck.safetensors"), m);
  std::vector<std::pair<std::string, Tensor>> bare;
  for (auto& [name, param] : m.named_parameters()) bare.push_back({name, param->value.detach()});
  save_safetensors(p("bare.safetensors"), bare);  // no metadata, as PyTorch would write it
  save_safetensors(p("x.safetensors"), {{"input", x}});

  for (std::string args :
       {"--in " + p("ck.safetensors"), "--in " + p("bare.safetensors") + " --model '" + spec +
                                           "' --input-shape 2,6,6 --batch-size 3"}) {
    CAPTURE(args);
    fs::remove(p("y.safetensors"));
    Result r =
        run("predict " + args + " --input " + p("x.safetensors") + " --out " + p("y.safetensors"));
    REQUIRE_MESSAGE(r.code == 0, r.out);
    TensorFile y = load_safetensors(p("y.safetensors"));
    const Tensor& got = y.at("logits");
    REQUIRE(got.shape() == want.shape());
    // Same kernels, same order: identical, whatever the batch split.
    CHECK(std::memcmp(got.data(), want.data(), size_t(want.numel()) * sizeof(float)) == 0);
  }

  save_safetensors(p("wrong_name.safetensors"), {{"x", x}});
  save_safetensors(p("wrong_shape.safetensors"), {{"input", Tensor::zeros({7, 1, 6, 6})}});
  std::vector<std::pair<std::string, Tensor>> odd = bare;
  odd[0].second = Tensor::zeros({4, 2, 5, 5});
  save_safetensors(p("odd.safetensors"), odd);
  std::vector<std::pair<std::string, Tensor>> extra = bare;
  extra.push_back({"running_mean", Tensor::zeros({4})});
  save_safetensors(p("extra.safetensors"), extra);
  const std::string x_arg = " --input " + p("x.safetensors") + " --out " + p("z.safetensors");
  const std::string model = " --model '" + spec + "' --input-shape 2,6,6";
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {
           Case{"--in " + p("bare.safetensors") + x_arg, "give --model"},
           Case{"--in " + p("odd.safetensors") + model + x_arg,
                "tensor '0.weight' in " + p("odd.safetensors") +
                    " is float32 (4, 2, 5, 5) but model '" + spec + "' needs float32 (4, 2, 3, 3)"},
           Case{"--in " + p("extra.safetensors") + model + x_arg, "'running_mean'"},
           Case{"--in " + p("ck.safetensors") + " --model cnn2" + x_arg, "--model 'cnn2'"},
           Case{"--in " + p("ck.safetensors") + " --input " + p("wrong_name.safetensors") +
                    " --out " + p("z.safetensors"),
                "no tensor named 'input'"},
           Case{"--in " + p("ck.safetensors") + " --input " + p("wrong_shape.safetensors") +
                    " --out " + p("z.safetensors"),
                "(7, 1, 6, 6) but the model takes float32 (7, 2, 6, 6) (samples of (2, 6, 6))"},
           Case{"--in /no/such.safetensors" + x_arg, "/no/such.safetensors"},
       }) {
    CAPTURE(c.args);
    Result r = run("predict " + c.args);
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK_MESSAGE(r.out.find(c.expect) != std::string::npos, r.out);
    CHECK_FALSE(fs::exists(p("z.safetensors")));
  }
  CHECK(run("predict --help").code == 0);
}
