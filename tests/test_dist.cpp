// Data-parallel training and the communicator. CTest runs this suite under
// `mpirun -np 2` and `-np 3` (label mpi) and alone; every rank runs every case, in the same
// order, and checks the results it holds. Under one process the cases that need several
// ranks say so and check only what one rank can.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "datasets/mnist.h"
#include "dist/comm.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/cpu/threads.h"
#include "prune/prune.h"
#include "prune/shrink.h"
#include "tests/dist_test_util.h"
#include "tests/sanitized.h"
#include "train/data_parallel.h"
#include "train/prune_driver.h"
#include "train/trainer.h"

using namespace sprig;

namespace {
const dist::Comm& world() {
  return dist::Comm::world();
}

bool masked_values_are_zero(const nn::Model& m) {
  for (auto& p : m.parameters()) {
    if (!p->mask) continue;
    std::vector<float> v = p->value.to_vector();
    const uint8_t* keep = p->mask->keep.data_as<uint8_t>();
    for (size_t k = 0; k < v.size(); ++k)
      if (!keep[k] && v[k] != 0.0f) return false;
  }
  return true;
}

struct Data {
  data::Dataset train, test;
  Shape input;
};
const Data& fashion_mnist() {
  static Data d = [] {
    REQUIRE_MESSAGE(std::filesystem::exists(std::string(data::kFashionMnistDefaultDir) +
                                            "/train-images-idx3-ubyte.gz"),
                    "Fashion-MNIST missing: run scripts/setup.sh");
    train::DataSource src = train::load_data_source("fashion-mnist", "", 0);
    // 12,832 samples: 200 steps of 64 and a last batch of 32; 25 and one under the sanitizers
    // (tests/sanitized.h).
    const int64_t samples = testing::kSanitized ? 1632 : 12832;
    return Data{data::take(src.data.train, samples), data::take(src.data.test, 600),
                src.input_shape};
  }();
  return d;
}

struct Run {
  std::string model, optimizer;
  float lr, momentum;
};

// The model after one epoch (201 steps, 26 sanitized) from seed 5 with half of every weight masked,
// trained over comm's ranks (null: this process alone).
nn::Model train_once(const Run& r, const dist::Comm* comm, uint64_t* digest = nullptr,
                     train::EpochStats* stats = nullptr) {
  const Data& d = fashion_mnist();
  nn::Model model = nn::build_model(r.model, d.input, 5);
  for (auto& [name, p] : model.named_parameters())
    if (p->value.dim() > 1) prune::l1_unstructured(*p, 0.5);
  train::OptimizerConfig oc;
  oc.name = r.optimizer;
  oc.lr = r.lr;
  oc.momentum = r.momentum;
  auto opt = train::make_optimizer(oc, model.parameters());
  train::FitConfig fc;
  fc.epochs = 1;
  fc.batch_size = 64;
  fc.seed = 9;
  fc.comm = comm;
  fc.check_replicas = comm != nullptr && comm->size() > 1;
  auto history = train::fit(model, *opt, d.train, d.test, train::Task::Classification, fc);
  REQUIRE(history.size() == 1);
  if (stats) *stats = history[0];
  if (digest) {
    *digest = 0;
    for (auto& [name, h] : train::replica_digests(model, opt.get())) *digest = *digest * 31 + h;
  }
  return model;
}
}  // namespace

TEST_CASE("collectives: sums, broadcast and gather agree with what every rank contributed") {
  const dist::Comm& c = world();
  const int n = c.size(), r = c.rank();
  std::vector<float> f = {float(r + 1), 0.5f * float(r)};
  c.allreduce_sum(f.data(), 2);
  CHECK(f[0] == float(n * (n + 1) / 2));
  CHECK(f[1] == 0.5f * float(n * (n - 1) / 2));
  std::vector<double> d = {double(r), 1.0};
  c.allreduce_sum(d.data(), 2);
  CHECK(d[0] == double(n * (n - 1) / 2));
  CHECK(d[1] == double(n));
  std::vector<float> big(100000, float(r));  // several MPI messages' worth
  {
    dist::Request req = c.iallreduce_sum(big.data(), int64_t(big.size()));
    req.wait();
  }
  CHECK(big.front() == float(n * (n - 1) / 2));
  CHECK(big.back() == float(n * (n - 1) / 2));
  std::string s = r == 0 ? "from rank zero" : "";
  c.broadcast_string(s);
  CHECK(s == "from rank zero");
  int64_t v = 40 + r;
  c.broadcast_value(v);
  CHECK(v == 40);
  std::vector<std::string> all = c.allgather(std::string(size_t(r), 'x'));
  REQUIRE(int(all.size()) == n);
  for (int k = 0; k < n; ++k) CHECK(all[size_t(k)] == std::string(size_t(k), 'x'));
  c.barrier();
}

TEST_CASE("the gradient reducer gives every rank the whole batch's mean gradient") {
  const dist::Comm& c = world();
  const int n = c.size(), r = c.rank();
  // Three parameters in buckets of at most 64 bytes (so several buckets); `unused` is in no
  // graph and must keep no gradient. Rank k's loss is sum(w * (k + 1)) + sum(v * v) / (k + 1).
  auto w = std::make_shared<nn::Parameter>("w", Tensor::full({10}, 1.0f));
  auto v = std::make_shared<nn::Parameter>("v", Tensor::full({20}, 2.0f));
  auto unused = std::make_shared<nn::Parameter>("unused", Tensor::full({3}, 1.0f));
  for (auto& p : {w, v, unused}) p->value.set_requires_grad(true);
  train::GradientReducer reducer(c, {w, v, unused}, 64);
  CHECK(reducer.buckets() >= 3);
  // Shards of a batch of 7: rank k has n_k samples and back-propagates its share n_k / 7.
  auto shard = [&](int k) { return int64_t(7 * (k + 1) / n - 7 * k / n); };
  Tensor loss = add(sum(mul(w->value, Tensor::full({10}, float(r + 1)))),
                    scale(sum(mul(v->value, v->value)), 1.0f / float(r + 1)));
  reducer.backward(scale(loss, float(shard(r)) / 7.0f));
  double expect_w = 0.0, expect_v = 0.0;
  for (int k = 0; k < n; ++k) {
    expect_w += double(shard(k)) / 7.0 * double(k + 1);
    expect_v += double(shard(k)) / 7.0 * 4.0 / double(k + 1);  // d(v^2)/dv = 2v = 4
  }
  for (float g : w->grad().to_vector()) CHECK(g == doctest::Approx(expect_w).epsilon(1e-6));
  for (float g : v->grad().to_vector()) CHECK(g == doctest::Approx(expect_v).epsilon(1e-6));
  CHECK_FALSE(unused->grad().defined());
}

TEST_CASE("data-parallel training ends with one process's weights (an epoch, masks)") {
  cpu::set_num_threads(1);
  // Float sums in another order differ in the last bits, and a ReLU or max-pool whose input sits
  // on a tie can turn that into a visible step; how far that carries over 200 steps grows with
  // the learning rate (bench/RESULTS.md). These rates keep it well inside 1e-5.
  const std::vector<Run> runs = {{"mlp", "sgd", 0.002f, 0.0f},
                                 {"mlp", "adam", 1e-4f, 0.0f},
                                 {"cnn2", "sgd", 0.001f, 0.9f},
                                 {"cnn2", "adam", 3e-5f, 0.0f}};
  for (const Run& r : runs) {
    CAPTURE(r.model);
    CAPTURE(r.optimizer);
    train::EpochStats alone_stats, together_stats;
    nn::Model alone = train_once(r, nullptr, nullptr, &alone_stats);
    nn::Model together = train_once(r, &world(), nullptr, &together_stats);
    const double diff = testing::max_relative_difference(alone, together);
    // The epoch's loss is summed over every rank's shards, and evaluation over every rank's
    // batches: the numbers one process reports.
    CHECK(together_stats.train_loss == doctest::Approx(alone_stats.train_loss).epsilon(1e-5));
    CHECK(together_stats.test.samples == alone_stats.test.samples);
    CHECK(together_stats.test.loss == doctest::Approx(alone_stats.test.loss).epsilon(1e-5));
    CHECK(together_stats.test.accuracy == alone_stats.test.accuracy);
    MESSAGE(r.model, " ", r.optimizer, " on ", world().size(),
            " ranks: relative difference from one process ", diff);
    CHECK(diff <= 1e-5);
    CHECK(masked_values_are_zero(together));
    // And training moved the weights far more than that.
    CHECK(testing::max_relative_difference(nn::build_model(r.model, fashion_mnist().input, 5),
                                           alone) > 1e-3);
  }
}

TEST_CASE("two data-parallel runs on the same ranks are bit-identical") {
  cpu::set_num_threads(1);
  const Run r = {"cnn2", "adam", 1e-3f, 0.0f};
  uint64_t a = 0, b = 0;
  train_once(r, &world(), &a);
  train_once(r, &world(), &b);
  CHECK(a == b);
}

TEST_CASE("broadcast_model makes every rank rank 0's; check_replicas names a divergence") {
  const dist::Comm& c = world();
  nn::Model model = nn::build_model("mlp", {1, 28, 28}, uint64_t(100 + c.rank()));
  prune::l1_unstructured(*model.parameters()[0], 0.3);
  auto opt = train::make_optimizer({"adam", 1e-3f}, model.parameters());
  opt->steps = 7 + c.rank();
  train::broadcast_model(c, model, opt.get());
  nn::Model rank0 = nn::build_model("mlp", {1, 28, 28}, 100);
  prune::l1_unstructured(*rank0.parameters()[0], 0.3);
  CHECK(testing::max_relative_difference(rank0, model) == 0.0);
  CHECK(opt->steps == 7);
  CHECK_NOTHROW(train::check_replicas(c, model, opt.get(), "after the broadcast"));
  if (c.size() == 1) {
    MESSAGE("one process: nothing can diverge");
    return;
  }
  // Rank 1 alone nudges one weight of the second layer: every rank must fail, naming it.
  if (c.rank() == 1) model.parameters()[2]->value.data()[3] += 1e-6f;
  std::string error;
  try {
    train::check_replicas(c, model, opt.get(), "after epoch 4");
  } catch (const Error& e) {
    error = e.what();
  }
  CHECK(error.find("replicas diverged after epoch 4") != std::string::npos);
  CHECK(error.find("'3.weight'") != std::string::npos);
  CHECK(error.find("rank(s) 1 ") != std::string::npos);
}

TEST_CASE("models that differ in structure are refused before any bytes are copied") {
  const dist::Comm& c = world();
  if (c.size() == 1) {
    MESSAGE("one process: one structure");
    return;
  }
  nn::Model model = nn::build_model(c.rank() == 0 ? "mlp" : "lenet5", {1, 28, 28}, 1);
  std::string error;
  try {
    train::broadcast_model(c, model, nullptr);
  } catch (const Error& e) {
    error = e.what();
  }
  if (c.rank() > 0) CHECK(error.find("rank 1 holds parameters") != std::string::npos);
  CHECK_FALSE(error.empty());
}

TEST_CASE("distributed Taylor and gradient scoring pick exactly one process's filters") {
  cpu::set_num_threads(1);
  const Data& d = fashion_mnist();
  train::DataSource src;
  src.data.train = d.train;
  src.data.test = d.test;
  src.input_shape = d.input;
  // A model trained a little, so the scores are not those of random weights.
  nn::Model trained = nn::build_model("cnn2", d.input, 3);
  {
    auto opt = train::make_optimizer({"adam", 1e-3f}, trained.parameters());
    train::FitConfig fc;
    fc.epochs = 1;
    fc.stop_at_step = 30;
    train::fit(trained, *opt, d.train, data::Dataset{}, train::Task::Classification, fc);
  }
  for (auto variant : {prune::TaylorVariant::ReferenceCode, prune::TaylorVariant::Paper}) {
    for (auto criterion : {prune::Criterion::Taylor, prune::Criterion::Gradient}) {
      CAPTURE(int(variant));
      CAPTURE(prune::criterion_name(criterion));
      if (criterion == prune::Criterion::Gradient && variant == prune::TaylorVariant::Paper)
        continue;  // the variant is Taylor's only
      prune::PruneSpec spec;
      spec.criterion = criterion;
      spec.granularity = prune::Granularity::Filter;
      spec.amount = 0.5;
      nn::Model alone = prune::copy_model(trained), together = prune::copy_model(trained);
      // 7 batches of 64: every rank scores its shard of each.
      auto alone_scores =
          train::prepare_criterion(alone, src, spec, 7, 11, variant, dist::Comm::self());
      auto together_scores = train::prepare_criterion(together, src, spec, 7, 11, variant, world());
      REQUIRE(alone_scores.size() == together_scores.size());
      for (auto& [name, t] : alone_scores) {
        std::vector<float> a = t.to_vector(), b = together_scores.at(name).to_vector();
        for (size_t k = 0; k < a.size(); ++k)
          CHECK(b[k] == doctest::Approx(a[k]).epsilon(1e-5).scale(1e-6));
      }
      prune::prune_model(alone, spec, alone_scores);
      prune::prune_model(together, spec, together_scores);
      CHECK(testing::check_same_masks(alone, together) > 0);
    }
  }
}

TEST_CASE("with sync_bn a BatchNorm model trains as in one process; without it, it does not") {
  cpu::set_num_threads(1);
  const Data& d = fashion_mnist();
  // 50 steps of 64 and one of 32; 25 and one under the sanitizers (all fashion_mnist() holds).
  const data::Dataset train = data::take(d.train, testing::kSanitized ? 1632 : 3232);
  // BatchNorm after a conv (per channel over N x H x W) and after a linear layer (over N).
  const std::string spec =
      "conv(4,3,stride=2,pad=1,bias=0) bn relu maxpool(2) flatten linear(16) bn relu linear(10)";
  auto run = [&](const dist::Comm* comm, bool sync) {
    nn::Model model = nn::build_model(spec, d.input, 6);
    auto opt = train::make_optimizer({"sgd", 0.01f}, model.parameters());
    train::FitConfig fc;
    fc.epochs = 1;
    fc.seed = 2;
    fc.comm = comm;
    fc.sync_bn = sync;
    fc.check_replicas = comm != nullptr && comm->size() > 1;
    train::fit(model, *opt, train, d.test, train::Task::Classification, fc);
    return model;
  };
  // Buffers too: the running statistics.
  auto buffers_difference = [](const nn::Model& a, const nn::Model& b) {
    double worst = 0.0;
    auto ba = a.named_buffers(), bb = b.named_buffers();
    REQUIRE(ba.size() == bb.size());
    for (size_t i = 0; i < ba.size(); ++i) {
      std::vector<float> x = ba[i].second->to_vector(), y = bb[i].second->to_vector();
      for (size_t k = 0; k < x.size(); ++k)
        worst = std::max(worst, std::fabs(double(x[k]) - y[k]) / (std::fabs(double(x[k])) + 1e-3));
    }
    return worst;
  };
  nn::Model alone = run(nullptr, false);
  nn::Model synced = run(&world(), true);
  const double diff = testing::max_relative_difference(alone, synced);
  MESSAGE("sync_bn on ", world().size(), " ranks: weights ", diff, ", running statistics ",
          buffers_difference(alone, synced));
  CHECK(diff <= 1e-5);
  CHECK(buffers_difference(alone, synced) <= 1e-4);
  if (world().size() == 1) return;
  nn::Model per_rank = run(&world(), false);
  const double apart = testing::max_relative_difference(alone, per_rank);
  MESSAGE("per-rank statistics: weights ", apart);
  CHECK(apart > 1e-3);  // what sync_bn is for: without it the shards normalise differently
}
