// Sparse packing: packed inference models compute what the dense masked model computes (every
// forced format and the auto plan; unstructured, block, 2:4 and shrunk models), packed files
// round-trip, corrupt packed files give a sprig::Error naming the problem, and the size report.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "infer/fold.h"
#include "infer/pack.h"
#include "infer/pack_internal.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/threads.h"
#include "prune/prune.h"
#include "prune/shrink.h"
#include "tests/pack_test_util.h"

using namespace sprig;
using namespace sprig::test::pack;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("sprig_test_pack_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

const char* kConv =
    "conv(4,3,pad=1) relu maxpool(2) conv(8,3,pad=1) relu flatten linear(16) relu "
    "linear(10)";

// Packs m every way and checks each against the dense masked model at batches 1 and 5.
void check_all_formats(const nn::Model& m) {
  NoGradGuard no_grad;
  for (int64_t batch : {1, 5}) {
    Tensor x = random_input(m, batch, 3);
    Tensor want = m.forward(x);
    for (auto f : {infer::PackFormat::Dense, infer::PackFormat::Csr, infer::PackFormat::Bsr,
                   infer::PackFormat::Nm, infer::PackFormat::Auto})
      for (bool shrink : {false, true}) {
        infer::PackOptions o;
        o.format = f;
        o.batch = batch;
        o.repeats = 1;
        o.shrink = shrink;
        infer::InferenceModel im = infer::pack_model(m, o);
        CAPTURE(infer::pack_format_name(f));
        CAPTURE(shrink);
        CAPTURE(batch);
        CHECK(rel_diff(want, im.forward(x)) <= 1e-5);
        for (auto& l : im.layers) CHECK(!l.reason.empty());
        // A dense Linear runs from its packed W^T (run_dense_linear); every other layer has none.
        for (auto& l : im.layers) {
          const bool dense_linear = l.kind == infer::PackFormat::Dense && !l.conv;
          CHECK(l.weight_packed.panels.empty() == !dense_linear);
          CHECK(l.weight_packed.K == (dense_linear ? l.cols : 0));
          CHECK(l.weight_packed.N == (dense_linear ? l.rows : 0));
          // A dense conv holds its weight packed for the kernel Auto picks for it (none for
          // im2col + gemm); every other layer holds none.
          const auto* conv = dynamic_cast<const nn::Conv2d*>(l.module);
          const bool dense_conv = l.kind == infer::PackFormat::Dense && conv;
          const Conv2dShape s =
              conv ? infer::detail::conv_shape(*conv, 1, l.in_shape[1], l.in_shape[2])
                   : Conv2dShape{};
          const cpu::ConvForward kernel =
              dense_conv ? cpu::conv2d_forward_kernel(s) : cpu::ConvForward::Auto;
          CHECK(l.conv_kernel == kernel);
          const int64_t floats = kernel == cpu::ConvForward::Direct     ? l.rows * l.cols
                                 : kernel == cpu::ConvForward::Winograd ? 16 * s.K * s.C
                                                                        : 0;
          CHECK(int64_t(l.conv_packed_w.size()) == floats);
        }
        if (f == infer::PackFormat::Csr)
          for (auto& l : im.layers) CHECK(l.kind == infer::PackFormat::Csr);
        if (f == infer::PackFormat::Auto)
          for (auto& l : im.layers) CHECK(l.times.size() >= 2);
      }
  }
}

}  // namespace

TEST_CASE("packed mlp equals the dense masked model: unstructured, block, 2:4") {
  check_all_formats(pruned("mlp", {1, 28, 28}, prune::Granularity::Element, 0.9));
  nn::Model block = pruned("mlp", {1, 28, 28}, prune::Granularity::Block, 0.75);
  check_all_formats(block);
  nn::Model nm = pruned("mlp", {1, 28, 28}, prune::Granularity::NM, 0.0);
  check_all_formats(nm);

  // The structure is found: BSR for the 2x4 blocks, N:M 2:4 (or sparser) for the 2:4 masks.
  infer::PackOptions o;
  o.format = infer::PackFormat::Bsr;
  o.shrink = false;
  for (auto& l : infer::pack_model(block, o).layers) {
    CHECK(l.kind == infer::PackFormat::Bsr);
    CHECK(l.format() == "bsr 2x4");
  }
  o.format = infer::PackFormat::Nm;
  for (auto& l : infer::pack_model(nm, o).layers) {
    CHECK(l.kind == infer::PackFormat::Nm);
    CHECK(l.sparse.n * 2 <= l.sparse.m);
  }
  // Forced nm on unstructured zeros falls back to csr and says so.
  auto un = infer::pack_model(pruned("mlp", {1, 28, 28}, prune::Granularity::Element, 0.5), o);
  CHECK(un.layers[0].kind == infer::PackFormat::Csr);
  CHECK(un.layers[0].reason.find("not N:M") != std::string::npos);
}

TEST_CASE("chained csr layers (transposed activations, fused ReLU) equal the dense model") {
  // Forced csr: consecutive Linear + ReLU layers run csr_linear_ex with the activations kept
  // (features, N) between them, at batches of one panel, ragged panels and more panels than
  // threads, on 1 and 2 threads. The conv model chains its two Linear layers after flatten.
  NoGradGuard no_grad;
  const int before = cpu::num_threads();
  for (const char* spec : {"mlp", kConv}) {
    nn::Model m = pruned(spec, std::string(spec) == "mlp" ? Shape{1, 28, 28} : Shape{1, 12, 12},
                         prune::Granularity::Element, 0.92);
    infer::PackOptions o;
    o.format = infer::PackFormat::Csr;
    o.shrink = false;
    infer::InferenceModel im = infer::pack_model(m, o);
    for (int64_t batch : {4, 64, 130, 256}) {
      Tensor x = random_input(m, batch, 5);
      Tensor want = m.forward(x);
      for (int t : {1, 2}) {
        cpu::set_num_threads(t);
        CAPTURE(spec);
        CAPTURE(batch);
        CAPTURE(t);
        Tensor got = im.forward(x);
        CHECK(got.shape() == want.shape());
        CHECK(rel_diff(want, got) <= 1e-5);
      }
    }
  }
  cpu::set_num_threads(before);
}

TEST_CASE("packed conv model equals the dense masked model, and shrunk models too") {
  check_all_formats(pruned(kConv, {1, 12, 12}, prune::Granularity::Element, 0.8));
  check_all_formats(pruned(kConv, {1, 12, 12}, prune::Granularity::Block, 0.5));
  check_all_formats(pruned(kConv, {1, 12, 12}, prune::Granularity::NM, 0.0));
  // Filter pruning: shrink removes filters, the plan records it and still computes the same.
  nn::Model f = pruned(kConv, {1, 12, 12}, prune::Granularity::Filter, 0.5);
  check_all_formats(f);
  infer::PackOptions o;
  o.format = infer::PackFormat::Dense;
  infer::InferenceModel im = infer::pack_model(f, o);
  CHECK(im.model.spec != f.spec);
  CHECK(im.source_spec == f.spec);
  CHECK(im.layers[0].shrunk);
  CHECK(im.layers[0].format() == "shrunk-dense");
  CHECK(im.layers[0].rows == 2);
  CHECK(im.layers[0].rows_before == 4);
  // An already shrunk checkpoint packs as it is.
  nn::Model g = prune::copy_model(f);
  prune::shrink(g);
  check_all_formats(g);
}

TEST_CASE("fold_batchnorm merges conv-bn and linear-bn pairs and keeps eval outputs and zeros") {
  nn::Model m =
      pruned("bn conv(4,3,pad=1) bn relu conv(6,3,stride=2,bias=0) bn flatten linear(5) bn",
             {2, 7, 7}, prune::Granularity::Element, 0.5);
  randomize_batchnorms(m);
  nn::Model f = prune::copy_model(m);
  f.net->eval();
  CHECK(infer::fold_batchnorm(f) == 3);
  // The leading bn follows no conv / linear and stays; the others are gone.
  CHECK(f.spec == "bn conv(4,3,pad=1) relu conv(6,3,stride=2) flatten linear(5)");
  CHECK(nn::build_model(f.spec, f.input_shape, 0).num_parameters() == f.num_parameters());
  for (auto& [name, p] : f.named_parameters())
    if (p->mask) {  // every pruned weight is still exactly zero
      const uint8_t* keep = p->mask->keep.data_as<uint8_t>();
      const float* v = p->value.data();
      for (int64_t i = 0; i < p->numel(); ++i)
        if (!keep[i]) REQUIRE(v[i] == 0.0f);
    }
  NoGradGuard no_grad;
  Tensor x = random_input(m, 4, 5);
  CHECK(rel_diff(m.forward(x), f.forward(x)) <= 1e-5);
}

TEST_CASE("packed residual networks (BN folded, residual adds) equal the dense model") {
  // resnet20: option-A shortcuts; resnet20b: 1x1 conv + BN shortcuts. Tiny inputs keep it quick.
  for (const char* zoo : {"resnet20", "resnet20b"}) {
    CAPTURE(zoo);
    nn::Model m = pruned(nn::zoo_spec(zoo), {3, 8, 8}, prune::Granularity::Element, 0.9);
    randomize_batchnorms(m);
    check_all_formats(m);
    infer::PackOptions o;
    o.format = infer::PackFormat::Csr;
    infer::InferenceModel im = infer::pack_model(m, o);
    CHECK(im.model.spec.find("bn") == std::string::npos);  // every BatchNorm folded
    CHECK(im.layers.size() == (std::string(zoo) == "resnet20" ? 20u : 22u));
    CHECK(im.layers[1].name == "layer1.0.conv1");
    // The bound: logits within 1e-4 of the dense model's, and the packed file. Each
    // block's last conv adds the shortcut (and the ReLU) in its stores; at 17 samples the CSR
    // convs take 16 samples to a vector.
    NoGradGuard no_grad;
    for (int64_t batch : {3, 17}) {
      Tensor xb = random_input(m, batch, 4);
      std::vector<float> want = m.forward(xb).to_vector(), got = im.forward(xb).to_vector();
      for (size_t i = 0; i < want.size(); ++i) CHECK(std::fabs(want[i] - got[i]) <= 1e-4);
    }
    Tensor x = random_input(m, 3, 4);
    std::string path = (temp_dir() / "res.safetensors").string();
    infer::save_packed(path, im);
    infer::PackedFile pf = infer::load_packed(path);
    CHECK(rel_diff(im.forward(x), pf.model.forward(x)) == 0.0);
    // Every CSR conv has its tap offsets made once, when packed and when loaded; the same ones.
    for (size_t i = 0; i < im.layers.size(); ++i) {
      const infer::PackedLayer &l = im.layers[i], &loaded = pf.model.layers[i];
      CAPTURE(l.name);
      REQUIRE(l.conv_offsets.defined() == l.conv);
      REQUIRE(loaded.conv_offsets.defined() == l.conv);
      if (!l.conv) continue;
      CHECK(l.conv_offsets.numel() == l.sparse.stored());
      CHECK(loaded.conv_offsets.to_vector_i32() == l.conv_offsets.to_vector_i32());
    }
    // A dense pack's direct and Winograd convs have their weights packed again when loaded, the
    // same way.
    o.format = infer::PackFormat::Dense;
    infer::InferenceModel dense = infer::pack_model(m, o);
    infer::save_packed(path, dense);
    infer::PackedFile dense_pf = infer::load_packed(path);
    size_t packed_layers = 0;
    for (size_t i = 0; i < dense.layers.size(); ++i) {
      packed_layers += !dense.layers[i].conv_packed_w.empty();
      CHECK(dense_pf.model.layers[i].conv_kernel == dense.layers[i].conv_kernel);
      CHECK(dense_pf.model.layers[i].conv_packed_w == dense.layers[i].conv_packed_w);
    }
    // Every 3x3 conv of 16-64 channels, where this CPU has the direct kernel; no 1x1 shortcut.
    const bool has_direct = cpu::conv2d_direct_suits({1, 16, 8, 8, 16, 3, 3, 1, 1, 1});
    CHECK(packed_layers >= (has_direct ? 18u : 0u));
    CHECK(rel_diff(dense.forward(x), dense_pf.model.forward(x)) == 0.0);
  }
  // Filter pruning across the residual streams: shrink removes channels, outputs unchanged.
  nn::Model f = pruned(nn::zoo_spec("resnet20b"), {3, 8, 8}, prune::Granularity::Filter, 0.3);
  randomize_batchnorms(f);
  check_all_formats(f);
}

TEST_CASE("CSR convs hand each other activations in sample lanes and give the dense outputs") {
  // From 16 samples a shard, CSR convs run 16 samples to a vector and the executor keeps their
  // activations in those lanes: between convs (a wider padding than the lanes' border converts),
  // across residual blocks (identity and option-A shortcuts, relu=0, a body ending in a ReLU,
  // whose add is a pass of its own), and back where a pool or the classifier takes them.
  const int before = cpu::num_threads();
  const std::pair<std::string, Shape> cases[] = {
      {"conv(16,3,pad=1) relu conv(16,3,pad=1) relu conv(12,5,pad=2) relu "
       "conv(8,3,stride=2,pad=1) maxpool(2) flatten linear(10)",
       {3, 12, 12}},
      {"conv(16,3,pad=1) relu res[conv(16,3,pad=1) relu conv(16,3,pad=1)] "
       "res(relu=0)[conv(16,3,pad=1) relu conv(16,3,pad=1)] "
       "res[conv(16,3,pad=1) relu conv(16,3,pad=1) relu] "
       "res[conv(32,3,stride=2,pad=1) relu conv(32,3,pad=1) | shortcut(32,stride=2)] "
       "res[conv(32,3,pad=1) relu conv(32,3,pad=1)] gap flatten linear(10)",
       {3, 9, 9}},
  };
  for (const auto& [spec, in] : cases) {
    CAPTURE(spec);
    nn::Model m = pruned(spec, in, prune::Granularity::Element, 0.6);
    infer::PackOptions o;
    o.format = infer::PackFormat::Csr;
    infer::InferenceModel im = infer::pack_model(m, o);
    NoGradGuard no_grad;
    for (int threads : {1, 2})
      for (int64_t batch : {16, 17, 40}) {
        CAPTURE(threads);
        CAPTURE(batch);
        cpu::set_num_threads(threads);
        Tensor x = random_input(m, batch, 6);
        std::vector<float> want = m.forward(x).to_vector(), got = im.forward(x).to_vector();
        REQUIRE(want.size() == got.size());
        for (size_t i = 0; i < want.size(); ++i) CHECK(std::fabs(want[i] - got[i]) <= 1e-4);
      }
  }
  cpu::set_num_threads(before);
}

TEST_CASE("forward computes what one thread does under every schedule and thread count") {
  // 40 samples: 20 per thread on 2 threads, 13-14 on 3 (each thread runs the whole model on
  // its shard); 1 thread, or 2 with too few samples each, runs unsplit. A dense, a CSR and a
  // residual model.
  const int before = cpu::num_threads();
  struct Case {
    std::string spec;
    Shape in;
    infer::PackFormat format;
  };
  const Case cases[] = {
      {"flatten linear(24) relu linear(10)", {1, 6, 6}, infer::PackFormat::Dense},
      {"conv(4,3,pad=1) relu maxpool(2) flatten linear(10)", {2, 8, 8}, infer::PackFormat::Csr},
      {nn::zoo_spec("resnet20"), {3, 8, 8}, infer::PackFormat::Csr},
  };
  for (const Case& c : cases) {
    CAPTURE(c.spec);
    nn::Model m = pruned(c.spec, c.in, prune::Granularity::Element, 0.8);
    infer::PackOptions o;
    o.format = c.format;
    infer::InferenceModel im = infer::pack_model(m, o);
    for (int64_t batch : {40, 7}) {
      CAPTURE(batch);
      Tensor x = random_input(m, batch, 9);
      cpu::set_num_threads(1);
      const Tensor one = im.forward(x);
      // Every schedule on 1-3 threads: whole shards, micro-batches of 16 and of 3 (the last
      // piece shorter) claimed by the threads, and no shards with the kernels splitting their
      // work, with and without pieces.
      for (bool split : {true, false})
        for (int64_t piece : {0, 16, 3})
          for (int threads : {1, 2, 3}) {
            CAPTURE(split);
            CAPTURE(piece);
            CAPTURE(threads);
            im.split_samples = split;
            im.micro_batch = piece;
            cpu::set_num_threads(threads);
            const Tensor y = im.forward(x);
            CHECK(y.shape() == one.shape());
            CHECK(rel_diff(y, one) <= 1e-6);
          }
      im.split_samples = true;
      im.micro_batch = 0;
    }
  }
  cpu::set_num_threads(before);
}

TEST_CASE("the plan times the schedules that can differ and keeps the one it names") {
  NoGradGuard no_grad;
  // A small model at batch 8: no shard is worth cutting, nothing is timed.
  nn::Model small =
      pruned("flatten linear(24) relu linear(10)", {1, 6, 6}, prune::Granularity::Element, 0.8);
  infer::PackOptions o;
  o.repeats = 1;
  o.batch = 8;
  infer::InferenceModel im = infer::pack_model(small, o);
  CHECK(im.micro_batch == 0);
  CHECK(im.schedule_reason.empty());
  // 16 x 64 x 64 floats (256 KiB) a sample: pieces of 16, against shards of 40 at batch 40 on
  // one thread. Whichever the plan keeps, it says what it measured, and the forward is the same.
  const int before = cpu::num_threads();
  cpu::set_num_threads(1);
  nn::Model wide = pruned("conv(16,3,pad=1) relu flatten linear(4)", {1, 64, 64},
                          prune::Granularity::Element, 0.5);
  o.batch = 40;
  infer::InferenceModel plan = infer::pack_model(wide, o);
  CHECK(plan.schedule_reason.find("micro-batches of 16 samples") != std::string::npos);
  CHECK(plan.schedule_reason.find("whole shards of 40") != std::string::npos);
  CHECK(plan.schedule_reason.find("kernels split") == std::string::npos);  // one thread
  CHECK((plan.micro_batch == 0 || plan.micro_batch == 16));
  const Tensor x = random_input(wide, 40, 3);
  const Tensor y = plan.forward(x);
  plan.micro_batch = plan.micro_batch ? 0 : 16;
  CHECK(rel_diff(plan.forward(x), y) <= 1e-6);
  // On 2 threads the plan also times one shard with the kernels splitting their work, and
  // keeps what it says it kept.
  cpu::set_num_threads(2);
  o.batch = 64;
  infer::InferenceModel two = infer::pack_model(small, o);
  CHECK(two.schedule_reason.find("whole shards of 32") != std::string::npos);
  CHECK(two.schedule_reason.find("kernels split") != std::string::npos);
  CHECK(two.micro_batch == 0);
  const bool kept_split = two.schedule_reason.find(": kernels split") != std::string::npos;
  CHECK(two.split_samples == !kept_split);
  cpu::set_num_threads(before);
}

TEST_CASE("packed file round trip: same layers, same outputs, dense weights restored") {
  fs::path dir = temp_dir();
  nn::Model m = pruned(kConv, {1, 12, 12}, prune::Granularity::Element, 0.7);
  nn::Model nm = pruned("flatten linear(24) relu linear(6)", {1, 5, 7}, prune::Granularity::NM, 0);
  nn::Model blk =
      pruned("flatten linear(24) relu linear(6)", {1, 5, 7}, prune::Granularity::Block, 0.5);
  for (auto f : {infer::PackFormat::Dense, infer::PackFormat::Csr, infer::PackFormat::Bsr,
                 infer::PackFormat::Nm, infer::PackFormat::Auto})
    for (const nn::Model* model : {&m, &nm, &blk}) {
      infer::PackOptions o;
      o.format = f;
      o.repeats = 1;
      infer::InferenceModel im = infer::pack_model(*model, o);
      im.split_samples = model != &m;  // both values travel through the file
      std::string path = (dir / "rt.safetensors").string();
      infer::save_packed(path, im, {{"dataset", "fashion-mnist"}});
      infer::PackedFile pf = infer::load_packed(path);
      CAPTURE(infer::pack_format_name(f));
      CHECK(pf.metadata.at("dataset") == "fashion-mnist");
      CHECK(pf.model.model.spec == im.model.spec);
      CHECK(pf.model.source_spec == model->spec);
      CHECK(pf.model.micro_batch == im.micro_batch);
      CHECK(pf.model.split_samples == im.split_samples);
      REQUIRE(pf.model.layers.size() == im.layers.size());
      for (size_t i = 0; i < im.layers.size(); ++i) {
        CHECK(pf.model.layers[i].format() == im.layers[i].format());
        CHECK(pf.model.layers[i].reason == im.layers[i].reason);
        CHECK(pf.model.layers[i].times.size() == im.layers[i].times.size());
        CHECK(pf.model.layers[i].nonzero == im.layers[i].nonzero);
        CHECK(pf.model.layers[i].weight_packed.panels == im.layers[i].weight_packed.panels);
      }
      // Unpacked dense weights are exactly the packed model's weights.
      auto a = im.model.named_parameters(), b = pf.model.model.named_parameters();
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i)
        CHECK(a[i].second->value.to_vector() == b[i].second->value.to_vector());
      Tensor x = random_input(*model, 3, 9);
      NoGradGuard no_grad;
      CHECK(rel_diff(model->forward(x), pf.model.forward(x)) <= 1e-5);
      CHECK(rel_diff(im.forward(x), pf.model.forward(x)) == 0.0);
    }
}

TEST_CASE("a layer with no nonzero weights packs, saves and loads") {
  fs::path dir = temp_dir();
  nn::Model m = nn::build_model("flatten linear(8) relu linear(3)", {1, 2, 5}, 1);
  m.named_parameters()[2].second->value.zero_();  // 3.weight: all zero, bias kept
  for (auto f : {infer::PackFormat::Csr, infer::PackFormat::Bsr, infer::PackFormat::Auto}) {
    infer::PackOptions o;
    o.format = f;
    o.repeats = 1;
    o.shrink = false;
    infer::InferenceModel im = infer::pack_model(m, o);
    std::string path = (dir / "empty.safetensors").string();
    infer::save_packed(path, im);
    infer::PackedFile pf = infer::load_packed(path);
    Tensor x = random_input(m, 2, 4);
    NoGradGuard no_grad;
    CHECK(rel_diff(m.forward(x), pf.model.forward(x)) <= 1e-5);
    CHECK(pf.model.layers[1].nonzero == 0);
  }
}

TEST_CASE("corrupt packed files: a sprig::Error naming the file and the problem") {
  fs::path dir = temp_dir();
  nn::Model m = pruned("flatten linear(24) relu linear(6)", {1, 5, 7}, prune::Granularity::NM, 0);
  auto save = [&](infer::PackFormat f, const std::string& name) {
    infer::PackOptions o;
    o.format = f;
    o.shrink = false;
    std::string path = (dir / name).string();
    infer::save_packed(path, infer::pack_model(m, o));
    return path;
  };
  std::string csr = save(infer::PackFormat::Csr, "csr.safetensors");
  std::string bsr = save(infer::PackFormat::Bsr, "bsr.safetensors");
  std::string nm = save(infer::PackFormat::Nm, "nm.safetensors");
  std::string dense = save(infer::PackFormat::Dense, "dense.safetensors");
  using T = std::vector<std::pair<std::string, Tensor>>;
  using M = std::map<std::string, std::string>;

  // Truncated: load_safetensors finds it before anything is read.
  {
    std::ifstream in(csr, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string cut = csr + ".cut";
    std::ofstream(cut, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() - 9));
    CHECK_THROWS_WITH_AS(infer::load_packed(cut), doctest::Contains(cut.c_str()), Error);
  }
  expect_corrupt(
      csr,
      [](T& t, M&) {
        uint8_t* c = tensor(t, "1.weight.csr.col").data_as<uint8_t>();
        c[2] = 0xff, c[3] = 0x7f;  // column 32767 of 35
      },
      "out of range");
  expect_corrupt(
      csr,
      [](T& t, M&) {
        int32_t* p = tensor(t, "1.weight.csr.row_ptr").data_as<int32_t>();
        std::swap(p[3], p[5]);
      },
      "not monotone");
  expect_corrupt(
      csr,
      [](T& t, M&) {
        uint8_t* c = tensor(t, "1.weight.csr.col").data_as<uint8_t>();
        std::swap(c[0], c[2]);  // the first row's first two columns out of order
      },
      "not increasing");
  expect_corrupt(
      csr,
      [](T& t, M&) {
        Tensor& v = tensor(t, "1.weight.csr.values");
        v = Tensor::zeros({v.numel() - 1});
      },
      "ends at");
  expect_corrupt(
      csr, [](T& t, M&) { tensor(t, "1.weight.csr.col") = Tensor::zeros({3}, DType::U8); },
      "1.weight.csr.col");
  expect_corrupt(
      csr, [](T& t, M&) { tensor(t, "3.bias") = Tensor::zeros({7}); }, "3.bias");
  expect_corrupt(
      csr,
      [](T& t, M&) {
        t.push_back({"extra", Tensor::zeros({1})});
      },
      "unexpected tensor");
  expect_corrupt(
      csr, [](T& t, M&) { t.erase(t.begin()); }, "missing tensor");
  expect_corrupt(
      csr, [](T&, M& m) { m["format"] = "sprig-packed-9"; }, "sprig-packed-9");
  expect_corrupt(
      csr, [](T&, M& m) { m.erase("spec"); }, "'spec'");
  expect_corrupt(
      csr, [](T&, M& m) { m["spec"] = "flatten linear(25) relu linear(6)"; }, "must be");
  expect_corrupt(
      csr, [](T&, M& m) { m["pack.1"] = "zip"; }, "'zip'");
  expect_corrupt(
      csr, [](T&, M& m) { m["pack.7"] = "csr"; }, "pack.7");
  expect_corrupt(
      csr, [](T&, M& m) { m["input_shape"] = "1,x"; }, "input_shape");
  expect_corrupt(
      csr, [](T&, M& m) { m["micro_batch"] = "-4"; }, "micro_batch '-4'");
  expect_corrupt(
      csr, [](T&, M& m) { m["split_samples"] = "yes"; }, "split_samples 'yes'");
  expect_corrupt(
      csr, [](T&, M& m) { m["times.1"] = "dense=fast"; }, "times.1");
  expect_corrupt(
      bsr, [](T& t, M&) { tensor(t, "1.weight.bsr.block_col").data_as<int32_t>()[0] = 1000; },
      "out of range");
  expect_corrupt(
      bsr, [](T&, M& m) { m["pack.1"] = "bsr 0x4"; }, "bsr 0x4");
  expect_corrupt(
      bsr,
      [](T& t, M&) {
        int32_t* p = tensor(t, "1.weight.bsr.block_row_ptr").data_as<int32_t>();
        p[0] = 1;
      },
      "start at 0");
  expect_corrupt(
      nm, [](T& t, M&) { tensor(t, "1.weight.nm.index").data_as<uint8_t>()[0] = 9; },
      "outside its group");
  expect_corrupt(
      nm,
      [](T& t, M&) {
        // Row 0, group 0: both stored values at the same position.
        uint8_t* i = tensor(t, "1.weight.nm.index").data_as<uint8_t>();
        float* v = tensor(t, "1.weight.nm.values").data();
        v[0] = v[1] = 1.0f;
        i[1] = i[0];
      },
      "repeats position");
  expect_corrupt(
      nm, [](T&, M& m) { m["pack.1"] = "nm 2:999"; }, "nm 2:999");
  expect_corrupt(
      dense,
      [](T& t, M&) {
        tensor(t, "1.weight") = Tensor::zeros({24, 36});
      },
      "1.weight");
  // A checkpoint is not a packed model.
  CHECK_THROWS_WITH_AS(infer::load_packed("/no/such/file.safetensors"),
                       doctest::Contains("/no/such/file.safetensors"), Error);
}

TEST_CASE("size report of a tiny model, checked by hand") {
  fs::path dir = temp_dir();
  // flatten linear(2) on (1, 1, 3): weight (2, 3), bias (2): 8 float32 = 32 bytes.
  nn::Model m = nn::build_model("flatten linear(2)", {1, 1, 3}, 0);
  auto params = m.named_parameters();
  params[0].second->value.copy_(Tensor::from_vector({1, 0, 0, 0, 0, 2}, {2, 3}));
  params[1].second->value.copy_(Tensor::from_vector({0.5f, -0.5f}, {2}));
  infer::PackOptions o;
  o.format = infer::PackFormat::Csr;
  infer::InferenceModel im = infer::pack_model(m, o);
  REQUIRE(im.layers[0].sparse.stored() == 2);
  std::string path = (dir / "tiny.safetensors").string();
  infer::save_packed(path, im);
  infer::SizeReport r = infer::size_report(m, path);
  CHECK(r.dense_bytes == 32);
  // A safetensors file is 8 bytes of header length, the header, then the data.
  auto data_bytes = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    return int64_t(fs::file_size(p)) - 8 - int64_t(n);
  };
  // Packed data: values 2 x 4 + row_ptr 3 x 4 + columns 2 x 2 + bias 2 x 4 = 32 bytes.
  CHECK(data_bytes(path) == 32);
  CHECK(r.packed_bytes == int64_t(fs::file_size(path)));
  // The dense file: the same parameters as a plain safetensors file; gzip is zlib's compress2.
  std::string ref = (dir / "tiny_dense.safetensors").string();
  save_safetensors(ref,
                   {{"1.weight", params[0].second->value}, {"1.bias", params[1].second->value}},
                   {{"spec", m.spec}});
  CHECK(data_bytes(ref) == 32);
  CHECK(r.dense_file_bytes == int64_t(fs::file_size(ref)));
  std::ifstream f(ref, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  uLongf z = compressBound(uLong(bytes.size()));
  std::vector<Bytef> buf(z);
  REQUIRE(compress2(buf.data(), &z, reinterpret_cast<const Bytef*>(bytes.data()),
                    uLong(bytes.size()), Z_DEFAULT_COMPRESSION) == Z_OK);
  CHECK(r.dense_gzip_bytes == int64_t(z));
  CHECK(r.ratio() == doctest::Approx(double(r.packed_bytes) / double(r.dense_file_bytes)));
}

TEST_CASE("the plan keeps the smaller weight unless another candidate is 5% faster or more") {
  using infer::CandidateTime;
  using infer::detail::best_against_runner_up;
  using infer::detail::smallest_within_noise;
  const std::vector<size_t> bytes = {313600, 47600, 52000};  // dense, csr, bsr
  // csr 3% slower than dense: within noise, and 6.6x smaller.
  std::vector<CandidateTime> t = {{"dense", 0.0040}, {"csr", 0.00412}, {"bsr 1x4", 0.0050}};
  CHECK(smallest_within_noise(t, bytes) == 1);
  CHECK(best_against_runner_up(t, 1) == "csr 0.0041 ms, within 5% of dense 0.0040 ms and smaller");
  // csr 10% slower: dense is kept.
  t[1].ms = 0.0044;
  CHECK(smallest_within_noise(t, bytes) == 0);
  CHECK(best_against_runner_up(t, 0) == "dense 0.0040 ms < csr 0.0044 ms");
  // The fastest is kept where it is also the smallest, and the smaller of two ties wins.
  t = {{"dense", 0.0050}, {"csr", 0.0030}, {"bsr 1x4", 0.0030}};
  CHECK(smallest_within_noise(t, bytes) == 1);
  CHECK(smallest_within_noise(t, {313600, 52000, 47600}) == 2);
}
