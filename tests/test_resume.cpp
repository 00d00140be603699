// Crash-safe checkpoint writes and resuming training: a writer killed with SIGKILL leaves the
// previous file intact; a run stopped at any step and resumed from its checkpoint ends with
// weights bit-identical to the uninterrupted run (Adam + cosine, SGD + momentum, masked
// models, mid-epoch, a run killed while writing a checkpoint every step); bad resumes give one
// line. Friedman #1 is generated in process, so these need no dataset on disk.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/safetensors.h"
#include "kernels/cpu/threads.h"
#include "nn/checkpoint.h"
#include "tests/cli_test_util.h"
#include "train/train_state.h"

namespace fs = std::filesystem;
using namespace sprig;
using sprig::testing::count_lines;
using sprig::testing::last_line;
using sprig::testing::Result;
using sprig::testing::run;

static fs::path temp_dir() {
  return sprig::testing::temp_dir("test_resume");
}

static std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Bitwise equality of every parameter (and mask) of two models with the same spec.
static void require_same_weights(const nn::Model& a, const nn::Model& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    REQUIRE(pa[i].first == pb[i].first);
    const Tensor &x = pa[i].second->value, &y = pb[i].second->value;
    REQUIRE(x.shape() == y.shape());
    CHECK(std::memcmp(x.data(), y.data(), size_t(x.numel()) * sizeof(float)) == 0);
    REQUIRE(bool(pa[i].second->mask) == bool(pb[i].second->mask));
    if (pa[i].second->mask)
      CHECK(std::memcmp(pa[i].second->mask->keep.data_as<uint8_t>(),
                        pb[i].second->mask->keep.data_as<uint8_t>(), size_t(x.numel())) == 0);
  }
}

static bool any_weight_differs(const nn::Model& a, const nn::Model& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    if (pa[i].second->value.to_vector() != pb[i].second->value.to_vector()) return true;
  return false;
}

// ---- crash-safe writes ---------------------------------------------------------------------

TEST_CASE("a checkpoint writer killed with SIGKILL leaves the previous file byte-identical") {
  fs::path dir = temp_dir();
  std::string path = (dir / "ck.safetensors").string();
  nn::Model small = nn::build_model("linear(4) relu linear(2)", {8}, 1);
  nn::save_checkpoint(path, small, {{"created_by", "test"}});
  const std::string before = read_bytes(path);
  // 128 MB of weights: writing and fsync'ing them takes long enough to be killed midway.
  nn::Model big = nn::build_model("linear(4096)", {8192}, 2);

  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      nn::save_checkpoint(path, big);
    } catch (...) {
    }
    _exit(0);
  }
  // Kill once the temp file has grown past 1 MB, i.e. while the data is being written.
  std::string tmp = path + ".tmp." + std::to_string(child);
  bool writing = false;
  for (int i = 0; i < 20000 && !writing; ++i) {
    struct stat st;
    writing = ::stat(tmp.c_str(), &st) == 0 && st.st_size > (1 << 20);
    if (!writing) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE_MESSAGE(writing, "the child never started writing ", tmp);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  // Killed before the rename: the half-written temp file is still there ...
  REQUIRE_MESSAGE(fs::exists(tmp), "the save finished before the kill; the test proved nothing");
  // ... and the checkpoint is the old one, byte for byte, and loads.
  CHECK(read_bytes(path) == before);
  nn::Checkpoint ck = nn::load_checkpoint(path);
  CHECK(ck.model.spec == small.spec);
  require_same_weights(ck.model, small);

  // The leftover does not disturb the next save, which replaces the file completely.
  nn::Model next = nn::build_model("linear(3)", {5}, 3);
  nn::save_checkpoint(path, next);
  CHECK(nn::load_checkpoint(path).model.spec == next.spec);
  CHECK(fs::exists(tmp));  // another process's leftover is never touched by a save
  fs::remove(tmp);
}

TEST_CASE("a stale temp file with this process's own name is truncated, not appended to") {
  fs::path dir = temp_dir();
  std::string path = (dir / "stale.safetensors").string();
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary);
    f << std::string(1 << 20, 'x');  // longer than the checkpoint that follows
  }
  nn::Model m = nn::build_model("linear(2)", {3}, 4);
  nn::save_checkpoint(path, m);
  CHECK_FALSE(fs::exists(tmp));
  require_same_weights(nn::load_checkpoint(path).model, m);
}

// ---- resuming through the library ----------------------------------------------------------

namespace {
struct Setup {
  std::string spec = "linear(32) relu linear(16) relu linear(1)";
  train::OptimizerConfig optim;
  train::LrSchedule schedule = train::LrSchedule::Constant;
  int epochs = 4;
  bool masked = false;
  // The recipe flags of ResNet training; they need images (below) for augment and BatchNorm
  // in the spec for bn_l1.
  int step_size = 0, warmup_epochs = 0;
  std::vector<int> milestones;
  double gamma = 0.1;
  bool images = false, augment = false;
  float bn_l1 = 0.0f;
};

struct Trained {
  nn::Model model;
  std::unique_ptr<nn::Optimizer> opt;
};

const train::DataSource& friedman() {
  static train::DataSource src = [] {
    train::DataSource s = train::load_data_source("friedman1", "", 0);
    s.data.train = data::take(s.data.train, 640);  // 20 steps of 32 per epoch
    s.data.test = data::take(s.data.test, 200);
    return s;
  }();
  return src;
}

// 160 random 8x8 one-channel images in 10 classes (5 steps of 32 per epoch), normalised so a
// black pixel is -1.
const train::DataSource& images() {
  static train::DataSource src = [] {
    train::DataSource s;
    s.name = "images";
    s.input_shape = {1, 8, 8};
    s.black = {-1.0f};
    Rng rng(21);
    for (data::Dataset* d : {&s.data.train, &s.data.test}) {
      const int64_t n = d == &s.data.train ? 160 : 40;
      d->images = Tensor::uniform({n, 1, 8, 8}, -1.0f, 1.0f, rng);
      d->labels = Tensor::empty({n}, DType::I32);
      for (int64_t i = 0; i < n; ++i) d->labels.data_as<int32_t>()[i] = int32_t(rng.below(10));
    }
    return s;
  }();
  return src;
}

const train::DataSource& data_of(const Setup& s) {
  return s.images ? images() : friedman();
}

train::FitConfig fit_config(const Setup& s) {
  train::FitConfig fc;
  fc.epochs = s.epochs;
  fc.batch_size = 32;
  fc.seed = 7;
  fc.lr_schedule = s.schedule;
  fc.lr_step_size = s.step_size;
  fc.lr_milestones = s.milestones;
  fc.lr_gamma = s.gamma;
  fc.warmup_epochs = s.warmup_epochs;
  fc.augment = s.augment;
  fc.augment_fill = data_of(s).black;
  fc.bn_l1 = s.bn_l1;
  return fc;
}

Trained start(const Setup& s) {
  Trained t{nn::build_model(s.spec, data_of(s).input_shape, 5), nullptr};
  if (s.masked) {  // a fixed half of each weight matrix pruned, as sprig prune leaves it
    Rng rng(11);
    for (auto& [name, p] : t.model.named_parameters()) {
      if (p->value.dim() != 2) continue;
      std::vector<float> keep(size_t(p->numel()));
      for (auto& k : keep) k = rng.uniform() < 0.5f ? 1.0f : 0.0f;
      Tensor m = Tensor::empty(p->value.shape(), DType::U8);
      for (size_t i = 0; i < keep.size(); ++i) m.data_as<uint8_t>()[i] = uint8_t(keep[i]);
      p->set_mask(m, nn::Granularity::Element);
    }
  }
  t.opt = train::make_optimizer(s.optim, t.model.parameters());
  return t;
}

const char* schedule_name(train::LrSchedule k) {
  switch (k) {
    case train::LrSchedule::Cosine:
      return "cosine";
    case train::LrSchedule::Step:
      return "step";
    case train::LrSchedule::MultiStep:
      return "multistep";
    case train::LrSchedule::Constant:
      break;
  }
  return "constant";
}

// Trains uninterrupted, and in two parts through a checkpoint file; both must agree exactly.
void check_resume(const Setup& s, int64_t stop_at, const std::string& path) {
  cpu::set_num_threads(2);
  const train::DataSource& src = data_of(s);
  Trained whole = start(s);
  train::fit(whole.model, *whole.opt, src.data.train, src.data.test, src.task, fit_config(s));

  Trained first = start(s);
  train::FitConfig fc = fit_config(s);
  fc.stop_at_step = stop_at;
  train::FitPosition pos;
  auto h = train::fit(first.model, *first.opt, src.data.train, src.data.test, src.task, fc, pos);
  REQUIRE(pos.global_step == stop_at);
  train::TrainState st;  // what sprig train would record for this run
  st.config.model = s.spec;
  st.config.optim = s.optim;
  st.config.epochs = s.epochs;
  st.config.batch_size = 32;
  st.config.seed = 7;
  st.config.lr = {schedule_name(s.schedule), s.step_size, s.milestones, s.gamma, s.warmup_epochs};
  st.config.augment = s.augment;
  st.config.bn_l1 = s.bn_l1;
  st.position = pos;
  st.optimizer_steps = first.opt->steps;
  st.history = h;
  train::save_training_checkpoint(path, first.model, st);
  // The interrupted model really is behind the finished one.
  CHECK(any_weight_differs(first.model, whole.model));

  train::ResumePoint rp = train::load_training_checkpoint(path);
  CHECK(rp.state.position.global_step == stop_at);
  CHECK(rp.state.position.epoch == pos.epoch);
  CHECK(rp.state.position.step_in_epoch == pos.step_in_epoch);
  CHECK(rp.state.position.epoch_loss_sum == pos.epoch_loss_sum);
  CHECK(rp.state.history.size() == h.size());
  nn::Model model = rp.checkpoint.model;
  auto opt = train::make_optimizer(s.optim, model.parameters());
  train::restore_optimizer(*opt, rp, path);
  CHECK(opt->steps == first.opt->steps);
  train::FitPosition at = rp.state.position;
  auto rest = train::fit(model, *opt, src.data.train, src.data.test, src.task, fit_config(s), at);
  CHECK(at.epoch == s.epochs);
  CHECK(int(h.size() + rest.size()) == s.epochs);
  require_same_weights(model, whole.model);

  // Control: the optimizer state matters, so dropping it shows up in the weights.
  nn::Model bare = nn::load_checkpoint(path).model;
  auto fresh = train::make_optimizer(s.optim, bare.parameters());
  fresh->steps = first.opt->steps;
  train::FitPosition again = rp.state.position;
  train::fit(bare, *fresh, src.data.train, src.data.test, src.task, fit_config(s), again);
  CHECK(any_weight_differs(bare, whole.model));
}
}  // namespace

TEST_CASE("resume through a checkpoint is bit-identical to an uninterrupted run") {
  fs::path dir = temp_dir();
  Setup adam;
  adam.optim = {"adam", 3e-3f};
  adam.schedule = train::LrSchedule::Cosine;
  SUBCASE("adam, cosine lr, at an epoch boundary") {
    check_resume(adam, 40, (dir / "adam.safetensors").string());
  }
  SUBCASE("adam, cosine lr, mid-epoch") {
    check_resume(adam, 47, (dir / "adam_mid.safetensors").string());
  }
  Setup sgd;
  sgd.optim = {"sgd", 0.01f, 0.9f};
  SUBCASE("sgd with momentum, at an epoch boundary") {
    check_resume(sgd, 20, (dir / "sgd.safetensors").string());
  }
  SUBCASE("sgd with nesterov momentum and weight decay, mid-epoch") {
    Setup s = sgd;
    s.optim.nesterov = true;
    s.optim.weight_decay = 1e-3f;
    check_resume(s, 33, (dir / "sgd_mid.safetensors").string());
  }
  SUBCASE("masked model: the masks and the zeros survive") {
    Setup m = adam;
    m.optim.name = "adamw";
    m.optim.weight_decay = 1e-2f;
    m.masked = true;
    std::string path = (dir / "masked.safetensors").string();
    check_resume(m, 30, path);
    nn::Checkpoint ck = nn::load_checkpoint(path);
    int masked = 0;
    for (auto& [name, p] : ck.model.named_parameters()) {
      if (!p->mask) continue;
      ++masked;
      const uint8_t* keep = p->mask->keep.data_as<uint8_t>();
      for (int64_t i = 0; i < p->numel(); ++i) {
        if (keep[i]) continue;
        REQUIRE(p->value.data()[i] == 0.0f);
        for (auto& [key, buf] : ck.optimizer_state.at(name)) REQUIRE(buf.data()[i] == 0.0f);
      }
    }
    CHECK(masked == 3);
  }
}

TEST_CASE("resume is bit-identical with step / multistep schedules, warm-up, augment, bn-l1") {
  fs::path dir = temp_dir();
  Setup s;
  s.spec = "conv(4,3,pad=1) bn relu flatten linear(10)";
  s.images = true;
  s.augment = true;
  s.optim = {"sgd", 0.05f, 0.9f, 5e-4f};
  s.warmup_epochs = 1;
  s.bn_l1 = 1e-3f;
  SUBCASE("multistep with warm-up, stopped inside the warm-up") {
    s.schedule = train::LrSchedule::MultiStep;
    s.milestones = {2, 3};
    s.gamma = 0.2;
    check_resume(s, 3, (dir / "multistep.safetensors").string());
  }
  SUBCASE("step with warm-up, stopped mid-epoch after a decay") {
    s.schedule = train::LrSchedule::Step;
    s.step_size = 2;
    check_resume(s, 12, (dir / "step.safetensors").string());
  }
  SUBCASE("adam, cosine after the warm-up, at an epoch boundary") {
    s.optim = {"adam", 3e-3f};
    s.schedule = train::LrSchedule::Cosine;
    check_resume(s, 10, (dir / "cosine.safetensors").string());
  }
}

TEST_CASE("the training state is written only beside its optimizer buffers") {
  fs::path dir = temp_dir();
  nn::Model m = nn::build_model("linear(2)", {3}, 4);
  auto opt = train::make_optimizer({"adam", 1e-3f}, m.parameters());
  train::TrainState st;
  train::save_training_checkpoint((dir / "t.safetensors").string(), m, st);
  nn::Checkpoint ck = nn::load_checkpoint((dir / "t.safetensors").string());
  REQUIRE_FALSE(ck.train_state.empty());
  // What sprig prune does: copy the metadata into a plain checkpoint. The state is dropped.
  nn::save_checkpoint((dir / "p.safetensors").string(), ck.model, ck.metadata);
  nn::Checkpoint pruned = nn::load_checkpoint((dir / "p.safetensors").string());
  CHECK(pruned.train_state.empty());
  CHECK(pruned.optimizer_state.empty());
  CHECK_THROWS_WITH_AS(train::load_training_checkpoint((dir / "p.safetensors").string()),
                       doctest::Contains("holds no training state"), Error);
  CHECK_THROWS_WITH_AS(train::parse_train_state("{\"version\": 1}", "x.safetensors"),
                       doctest::Contains("x.safetensors: metadata 'train_state' is invalid: no "
                                         "'config'"),
                       Error);
  CHECK_THROWS_WITH_AS(train::parse_train_state("[1", "x.safetensors"),
                       doctest::Contains("not valid JSON"), Error);
}

TEST_CASE("the recipe fields round-trip, and files from before them get what those runs did") {
  train::TrainState st;
  st.config.lr = {"multistep", 0, {3, 7}, 0.25, 2};
  st.config.augment = true;
  st.config.bn_l1 = 3e-5f;
  st.config.optim.bn_weight_decay = false;
  train::TrainState back = train::parse_train_state(train::train_state_to_json(st), "x");
  CHECK(back.config.lr.name == "multistep");
  CHECK(back.config.lr.milestones == std::vector<int>{3, 7});
  CHECK(back.config.lr.gamma == 0.25);
  CHECK(back.config.lr.warmup_epochs == 2);
  CHECK(back.config.augment);
  CHECK(back.config.bn_l1 == 3e-5f);
  CHECK_FALSE(back.config.optim.bn_weight_decay);

  nlohmann::json old = nlohmann::json::parse(train::train_state_to_json(train::TrainState{}));
  for (const char* key :
       {"lr_step_size", "lr_milestones", "lr_gamma", "warmup_epochs", "augment", "bn_l1"})
    REQUIRE(old["config"].erase(key) == 1);
  REQUIRE(old["config"]["optimizer"].erase("bn_weight_decay") == 1);
  train::TrainState was = train::parse_train_state(old.dump(), "old.safetensors");
  CHECK(was.config.lr.name == "constant");
  CHECK(was.config.lr.milestones.empty());
  CHECK(was.config.lr.gamma == 0.1);
  CHECK(was.config.lr.warmup_epochs == 0);
  CHECK_FALSE(was.config.augment);
  CHECK(was.config.bn_l1 == 0.0f);
  CHECK(was.config.optim.bn_weight_decay);  // the optimizer decayed BatchNorm then
}

// ---- resuming through the sprig binary -----------------------------------------------------

static const std::string kFriedman =
    "train --dataset friedman1 --model 'linear(32) relu linear(1)' --limit-train 640 "
    "--batch-size 32 --seed 3 --threads 2 --quiet ";

static nn::Model trained(const std::string& args, const std::string& out) {
  Result r = run(kFriedman + args + " --out " + out);
  REQUIRE_MESSAGE(r.code == 0, r.out);
  return nn::load_checkpoint(out).model;
}

TEST_CASE("sprig train --resume: bit-identical to the uninterrupted run") {
  fs::path dir = temp_dir();
  auto p = [&](const char* name) { return (dir / name).string(); };
  SUBCASE("adam with cosine lr, stopped at an epoch boundary and mid-epoch") {
    const std::string cfg = "--optimizer adam --lr 3e-3 --lr-schedule cosine --epochs 4";
    nn::Model whole = trained(cfg, p("whole.safetensors"));
    for (int stop : {40, 27}) {
      CAPTURE(stop);
      Result s = run(kFriedman + cfg + " --stop-at-step " + std::to_string(stop) +
                     " --json --out " + p("part.safetensors"));
      REQUIRE_MESSAGE(s.code == 0, s.out);
      auto js = nlohmann::json::parse(last_line(s.out));
      CHECK(js["global_step"] == stop);
      CHECK(js["finished"] == false);
      // Only the checkpoint and --resume: no other flag is needed.
      Result r = run("train --resume " + p("part.safetensors") + " --quiet --json");
      REQUIRE_MESSAGE(r.code == 0, r.out);
      auto jr = nlohmann::json::parse(last_line(r.out));
      CHECK(jr["finished"] == true);
      CHECK(jr["global_step"] == 80);
      CHECK(jr["test_mse_per_epoch"].size() == 4);
      CHECK(jr["optimizer"] == "adam");
      require_same_weights(nn::load_checkpoint(p("part.safetensors")).model, whole);
    }
  }
  SUBCASE("sgd with momentum: a finished run extended with --epochs") {
    const std::string cfg = "--optimizer sgd --lr 0.01 --momentum 0.9";
    nn::Model whole = trained(cfg + " --epochs 4", p("sgd4.safetensors"));
    trained(cfg + " --epochs 2", p("sgd2.safetensors"));
    // Repeating a flag with the checkpoint's value is fine; --out may name another file.
    Result r = run("train --resume " + p("sgd2.safetensors") +
                   " --epochs 4 --optimizer sgd --quiet --out " + p("sgd2to4.safetensors"));
    REQUIRE_MESSAGE(r.code == 0, r.out);
    require_same_weights(nn::load_checkpoint(p("sgd2to4.safetensors")).model, whole);
    CHECK(any_weight_differs(nn::load_checkpoint(p("sgd2.safetensors")).model, whole));
  }
}

namespace {
// A fake CIFAR-10 directory in the real binary format: 32 random records per training file
// (160 training samples) and 32 test records.
void write_fake_cifar10(const fs::path& dir) {
  fs::create_directories(dir);
  Rng rng(8);
  auto write = [&](const std::string& name) {
    std::string bytes;
    for (int r = 0; r < 32; ++r) {
      bytes.push_back(char(rng.below(10)));
      for (int k = 0; k < 3072; ++k) bytes.push_back(char(rng.below(256)));
    }
    std::ofstream f(dir / name, std::ios::binary);
    f << bytes;
    REQUIRE(f.good());
  };
  for (int i = 1; i <= 5; ++i) write("data_batch_" + std::to_string(i) + ".bin");
  write("test_batch.bin");
}
}  // namespace

TEST_CASE("sprig train --resume on cifar10 with the ResNet recipe flags: bit-identical") {
  fs::path dir = temp_dir();
  const std::string data = (dir / "cifar").string();
  write_fake_cifar10(data);
  auto p = [&](const char* name) { return (dir / name).string(); };
  const std::string base = "train --dataset cifar10 --data-dir " + data +
                           " --model 'conv(4,3,stride=4) bn relu flatten linear(10)' "
                           "--batch-size 32 --epochs 3 --seed 4 --threads 2 --quiet "
                           "--optimizer sgd --lr 0.05 --momentum 0.9 --weight-decay 5e-4 ";
  const std::string recipe =
      "--lr-schedule multistep --lr-milestones 1,2 --lr-gamma 0.5 --warmup-epochs 1 --augment "
      "--bn-l1 1e-3";
  Result w = run(base + recipe + " --json --out " + p("whole.safetensors"));
  REQUIRE_MESSAGE(w.code == 0, w.out);
  auto jw = nlohmann::json::parse(last_line(w.out));
  CHECK(jw["train_samples"] == 160);
  CHECK(jw["global_step"] == 15);
  CHECK(jw["augment"] == true);
  nn::Model whole = nn::load_checkpoint(p("whole.safetensors")).model;
  for (int stop : {7, 10}) {
    CAPTURE(stop);
    Result s = run(base + recipe + " --stop-at-step " + std::to_string(stop) + " --out " +
                   p("part.safetensors"));
    REQUIRE_MESSAGE(s.code == 0, s.out);
    Result r = run("train --resume " + p("part.safetensors") + " --quiet --json");
    REQUIRE_MESSAGE(r.code == 0, r.out);
    CHECK(nlohmann::json::parse(last_line(r.out))["finished"] == true);
    require_same_weights(nn::load_checkpoint(p("part.safetensors")).model, whole);
  }
  // Each recipe flag changes the run, so the agreement above is not vacuous.
  for (const std::string& other :
       {std::string("--lr-schedule multistep --lr-milestones 1,2 --lr-gamma 0.5 --warmup-epochs 1 "
                    "--bn-l1 1e-3"),
        std::string("--lr-schedule multistep --lr-milestones 1,2 --lr-gamma 0.5 --augment "
                    "--bn-l1 1e-3"),
        std::string("--lr-schedule multistep --lr-milestones 1,2 --lr-gamma 0.5 --warmup-epochs 1 "
                    "--augment")}) {
    CAPTURE(other);
    Result o = run(base + other + " --out " + p("other.safetensors"));
    REQUIRE_MESSAGE(o.code == 0, o.out);
    CHECK(any_weight_differs(nn::load_checkpoint(p("other.safetensors")).model, whole));
  }
  // prune fine-tunes through the same loop: --augment and the schedule flags reach it.
  std::map<bool, nn::Model> pruned;
  for (bool augment : {false, true}) {
    const std::string out = p(augment ? "pruned_aug.safetensors" : "pruned.safetensors");
    Result pr = run("prune --in " + p("whole.safetensors") + " --data-dir " + data +
                    " --amount 0.5 --finetune-epochs 2 --optimizer sgd --lr 0.05 --lr-schedule "
                    "step --lr-step-size 1 --warmup-epochs 1 --threads 2 --quiet --out " +
                    out + (augment ? " --augment" : ""));
    REQUIRE_MESSAGE(pr.code == 0, pr.out);
    pruned[augment] = nn::load_checkpoint(out).model;
  }
  CHECK(any_weight_differs(pruned[false], pruned[true]));
  // A resumed run keeps its recipe: changing it is a conflict.
  Result c = run("train --resume " + p("whole.safetensors") + " --warmup-epochs 2");
  CHECK(c.code != 0);
  CHECK_MESSAGE(c.out.find("--warmup-epochs 2 conflicts with") != std::string::npos, c.out);
}

TEST_CASE("kill -9 during a run that checkpoints every step, then resume from the file") {
  fs::path dir = temp_dir();
  std::string out = (dir / "killed.safetensors").string();
  const std::string cfg = "--optimizer adam --lr 3e-3 --lr-schedule cosine --epochs 400";
  nn::Model whole = trained(cfg, (dir / "unkilled.safetensors").string());

  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::string cmd = std::string("exec ") + SPRIG_BINARY + " " + kFriedman + cfg +
                      " --save-every 1 --checkpoint-every-epoch --out " + out + " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  // 8,000 steps, each followed by an fsync'ed checkpoint: busy for seconds (or at least
  // hundreds of milliseconds where fsync is free), so still running when it is killed.
  for (int i = 0; i < 20000 && !fs::exists(out); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE_MESSAGE(WIFSIGNALED(status), "the run ended before it was killed (status ", status, ")");

  // Whatever step it was killed at, the file on disk is a complete, resumable checkpoint.
  train::ResumePoint rp = train::load_training_checkpoint(out);
  MESSAGE("killed after global step ", rp.state.position.global_step);
  CHECK(rp.state.position.global_step > 0);
  CHECK(rp.state.position.global_step < 8000);
  Result r = run("train --resume " + out + " --quiet --json");
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(nlohmann::json::parse(last_line(r.out))["finished"] == true);
  require_same_weights(nn::load_checkpoint(out).model, whole);
  for (auto& e : fs::directory_iterator(dir))  // the killed writer's temp file, if any
    if (e.path().string().rfind(out + ".tmp.", 0) == 0) fs::remove(e.path());
}

TEST_CASE("bad resumes: one line naming the problem, files untouched") {
  fs::path dir = temp_dir();
  std::string ck = (dir / "ok.safetensors").string();
  trained("--epochs 2", ck);
  const std::string before = read_bytes(ck);
  std::string plain = (dir / "plain.safetensors").string();
  nn::save_checkpoint(plain, nn::build_model("linear(1)", {10}, 0),
                      {{"created_by", "sprig prune"}});
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {
           Case{"--resume /no/such/run.safetensors", "/no/such/run.safetensors"},
           Case{"--resume " + plain, "holds no training state"},
           Case{"--resume " + plain, "sprig prune"},
           Case{"--resume " + ck + " --lr 0.5", "--lr 0.5 conflicts with"},
           Case{"--resume " + ck + " --optimizer sgd", "--optimizer sgd conflicts"},
           Case{"--resume " + ck + " --model mlp", "--model 'mlp' conflicts"},
           Case{"--resume " + ck + " --seed 9", "--seed 9 conflicts"},
           Case{"--resume " + ck + " --batch-size 8", "--batch-size 8 conflicts"},
           Case{"--resume " + ck + " --epochs 1", "--epochs 1 is fewer than the 2 epochs"},
           Case{"--epochs 1 --save-every 5", "--save-every"},
           Case{"--epochs 1 --stop-at-step 5", "--stop-at-step needs --out"},
       }) {
    CAPTURE(c.args);
    Result r = run("train " + c.args);
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK_MESSAGE(r.out.find(c.expect) != std::string::npos, r.out);
  }
  CHECK(read_bytes(ck) == before);
  // The model given as its spec is the same model, so it is no conflict.
  Result same = run("train --resume " + ck + " --model 'linear(32) relu linear(1)' --quiet");
  CHECK_MESSAGE(same.code == 0, same.out);
}

namespace {
// Copies a training checkpoint with its train_state JSON edited (and optionally one tensor or
// metadata key left out), as someone editing the file's header would.
void tamper(const std::string& from, const std::string& to,
            const std::function<void(nlohmann::json&)>& edit, const std::string& drop_tensor = "",
            const std::string& drop_meta = "") {
  TensorFile f = load_safetensors(from);
  nlohmann::json st = nlohmann::json::parse(f.metadata.at("train_state"));
  edit(st);
  f.metadata["train_state"] = st.dump();
  if (!drop_meta.empty()) REQUIRE(f.metadata.erase(drop_meta) == 1);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : f.tensors)
    if (name != drop_tensor) tensors.push_back({name, t});
  REQUIRE(tensors.size() + (drop_tensor.empty() ? 0 : 1) == f.tensors.size());
  save_safetensors(to, tensors, f.metadata);
}
}  // namespace

TEST_CASE("a tampered train_state is refused: one line naming what disagrees with the file") {
  fs::path dir = temp_dir();
  auto p = [&](const char* name) { return (dir / name).string(); };
  // Adam stopped mid-epoch 2 (20 steps an epoch), and SGD with momentum with a rewind snapshot.
  Result a = run(kFriedman + "--epochs 2 --optimizer adam --stop-at-step 27 --out " +
                 p("adam.safetensors"));
  REQUIRE_MESSAGE(a.code == 0, a.out);
  Result b = run(kFriedman + "--epochs 2 --optimizer sgd --momentum 0.9 --rewind-step 5 --out " +
                 p("sgd.safetensors"));
  REQUIRE_MESSAGE(b.code == 0, b.out);
  // Untouched copies resume.
  tamper(p("adam.safetensors"), p("same.safetensors"), [](nlohmann::json&) {});
  CHECK(train::load_training_checkpoint(p("same.safetensors")).state.position.global_step == 27);
  // The spec spelled differently, or as it is stored, is the same model.
  tamper(p("adam.safetensors"), p("spelled.safetensors"), [](nlohmann::json& j) {
    j["config"]["model"] = "dense( 32 ) ReLU linear(out=1, bias=1)";
  });
  CHECK_NOTHROW(train::load_training_checkpoint(p("spelled.safetensors")));

  struct Case {
    std::string name, from;
    std::function<void(nlohmann::json&)> edit;
    std::string expect, drop_tensor = "", drop_meta = "";
  };
  using J = nlohmann::json;
  const std::string adam = p("adam.safetensors"), sgd = p("sgd.safetensors");
  const std::string disagrees = "metadata 'train_state' disagrees with the checkpoint: ";
  const std::vector<Case> cases = {
      {"another zoo model", adam, [](J& j) { j["config"]["model"] = "mlp"; },
       disagrees + "config.model \"mlp\" is not the model it holds, \"linear(32) relu linear(1)\""},
      {"one layer more", adam,
       [](J& j) { j["config"]["model"] = "linear(32) relu linear(32) relu linear(1)"; },
       "config.model \"linear(32) relu linear(32) relu linear(1)\" is not the model it holds"},
      {"a model too big to build", adam, [](J& j) { j["config"]["model"] = "linear(25000000)"; },
       "config.model \"linear(25000000)\" is not the model it holds"},
      {"another optimizer than the metadata", adam,
       [](J& j) { j["config"]["optimizer"]["name"] = "adamw"; },
       disagrees + "config.optimizer.name \"adamw\" differs from metadata 'optimizer' \"adam\""},
      {"another optimizer than the buffers", adam,
       [](J& j) {
         j["config"]["optimizer"]["name"] = "sgd";
         j["config"]["optimizer"]["momentum"] = 0.9;
       },
       disagrees + "it holds optimizer tensor \"optim.0.bias.exp_avg\", which sgd with momentum "
                   "(config.optimizer) does not keep",
       "", "optimizer"},
      {"momentum dropped", sgd, [](J& j) { j["config"]["optimizer"]["momentum"] = 0.0; },
       "optimizer tensor \"optim.0.bias.momentum_buffer\", which sgd without momentum "
       "(config.optimizer) does not keep"},
      {"a buffer missing", adam, [](J&) {},
       disagrees + "optimizer tensor \"optim.2.weight.exp_avg_sq\" is missing, which adam "
                   "(config.optimizer) keeps for every parameter after 27 steps",
       "optim.2.weight.exp_avg_sq"},
      {"buffers before the first step", adam,
       [](J& j) {
         j["epoch"] = 0;
         j["history"] = J::array();
         j["step_in_epoch"] = 0;
         j["global_step"] = 0;
         j["optimizer_steps"] = 0;
         j["epoch_seen"] = 0;
         j["epoch_loss_sum"] = 0.0;
       },
       "but optimizer_steps is 0 (no step has made it)"},
      {"Adam's step count", adam, [](J& j) { j["optimizer_steps"] = 1; },
       "train_state.optimizer_steps 1 differs from global_step 27"},
      {"another dataset", adam, [](J& j) { j["config"]["dataset"] = "fashion-mnist"; },
       disagrees + "config.dataset \"fashion-mnist\" differs from metadata 'dataset' "
                   "\"friedman1\""},
      {"another seed", adam, [](J& j) { j["config"]["seed"] = 4; },
       "config.seed \"4\" differs from metadata 'seed' \"3\""},
      {"fewer epochs", adam, [](J& j) { j["config"]["epochs"] = 3; },
       "config.epochs \"3\" differs from metadata 'epochs' \"2\""},
      {"a rewind step without its snapshot", adam, [](J& j) { j["config"]["rewind_step"] = 5; },
       "config.rewind_step is 5 and the run is at step 27, but it holds 0 rewind tensors for 4 "
       "parameters"},
      {"a snapshot without its rewind step", sgd, [](J& j) { j["config"]["rewind_step"] = -1; },
       "it holds rewind weights, but config.rewind_step is -1", "", "rewind_step"},
      {"a learning rate no flag allows", adam, [](J& j) { j["config"]["optimizer"]["lr"] = 1e30; },
       "train_state.config.optimizer.lr must be a number from 0 to 1000, got 1e+30"},
      {"threads", adam, [](J& j) { j["config"]["threads"] = 100000; },
       "train_state.config.threads must be an integer from 0 to 1024, got 100000"},
      {"a milestone that is no integer", adam,
       [](J& j) {
         j["config"]["lr_schedule"] = "multistep";
         j["config"]["lr_milestones"] = {1e300};
       },
       "train_state.config.lr_milestones holds 1e+300, not an epoch"},
      {"a position past the run", adam, [](J& j) { j["epoch"] = 5; },
       "train_state.epoch must be an integer from 0 to 2, got 5"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string bad = p("bad.safetensors");
    tamper(c.from, bad, c.edit, c.drop_tensor, c.drop_meta);
    CHECK_THROWS_WITH_AS(train::load_training_checkpoint(bad), doctest::Contains(c.expect.c_str()),
                         Error);
    const std::string before = read_bytes(bad);
    Result r = run("train --resume " + bad + " --quiet");
    CHECK(r.code != 0);
    CHECK(count_lines(r.out) == 1);
    CHECK_MESSAGE(r.out.find(c.expect) != std::string::npos, r.out);
    CHECK(read_bytes(bad) == before);
  }
}

TEST_CASE("a run whose weights overflow stops before anything is saved") {
  // Finite but huge momentum: one SGD step makes the weights infinite, and the loss of that
  // step (computed before it) does not show it.
  fs::path dir = temp_dir();
  nn::Model m = nn::build_model("linear(4) relu linear(1)", friedman().input_shape, 1);
  auto opt = train::make_optimizer({"sgd", 10.0f, 0.9f}, m.parameters());
  for (auto& p : m.parameters())
    p->state["momentum_buffer"] = Tensor::full(p->value.shape(), 3e38f);
  train::FitConfig fc;
  fc.batch_size = 32;
  fc.stop_at_step = 1;
  int saved = 0;
  fc.checkpoint_every_steps = 1;
  fc.checkpoint = [&](const train::FitPosition&, const std::vector<train::EpochStats>&) {
    ++saved;
  };
  train::FitPosition pos;
  CHECK_THROWS_WITH_AS(
      train::fit(m, *opt, friedman().data.train, friedman().data.test, friedman().task, fc, pos),
      doctest::Contains("training diverged: parameter '0.weight' is not finite "
                        "after global step 1"),
      Error);
  CHECK(saved == 0);
}
