// `mpirun ... sprig train` end to end (label mpi): a data-parallel run against one process,
// resuming under another number of ranks, and ranks that fail or die. SPRIG_MPIEXEC is the
// launcher CMake found.
#include <doctest/doctest.h>

#include <cmath>
#include <regex>

#include "nn/checkpoint.h"
#include "tests/cli_test_util.h"
#include "tests/dist_test_util.h"

using namespace sprig;
namespace fs = std::filesystem;

namespace {
const std::string kMpirun = std::string(SPRIG_MPIEXEC) + " --oversubscribe --allow-run-as-root";
// 6,432 samples: 100 steps of 64 and a last batch of 32 per epoch.
const std::string kTrain = std::string(SPRIG_BINARY) +
                           " train --model mlp --optimizer sgd --lr 0.002 --limit-train 6432 "
                           "--limit-test 500 --batch-size 64 --threads 1 --seed 4";

double max_relative_difference(const std::string& a_path, const std::string& b_path) {
  return testing::max_relative_difference(nn::load_checkpoint(a_path).model,
                                          nn::load_checkpoint(b_path).model);
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("mpirun -np 2 sprig train, resumed on 3 ranks, ends with one process's weights") {
  const fs::path dir = testing::temp_dir("test_cli_mpi");
  const std::string single = (dir / "single.safetensors").string(),
                    dist = (dir / "dist.safetensors").string();
  testing::Outcome one = testing::run_shell(kTrain + " --epochs 2 --out " + single);
  REQUIRE_MESSAGE(one.code == 0, one.err);
  // Stopped mid-epoch 2 on two ranks, continued on three.
  testing::Outcome two = testing::run_shell(kMpirun + " -np 2 " + kTrain +
                                            " --epochs 2 --stop-at-step 150 --check-replicas "
                                            "--out " +
                                            dist);
  REQUIRE_MESSAGE(two.code == 0, two.err);
  CHECK(two.out.find("2 ranks x 1 threads") != std::string::npos);
  CHECK(count(two.out, "stopped at global step 150") == 1);  // rank 0 alone prints
  testing::Outcome three =
      testing::run_shell(kMpirun + " -np 3 " + std::string(SPRIG_BINARY) + " train --resume " +
                         dist + " --check-replicas --json");
  REQUIRE_MESSAGE(three.code == 0, three.err);
  CHECK(count(three.out, "\"ranks\":3") == 1);
  const double diff = max_relative_difference(single, dist);
  MESSAGE("2 then 3 ranks against one process after 201 steps: ", diff);
  CHECK(diff <= 1e-5);
  CHECK(diff > 0.0);  // other sums, other roundings: a copy of the file would be 0
  fs::remove_all(dir);
}

TEST_CASE("a rank that fails ends every rank with its error instead of a hang") {
  // Rank 1 cannot read its data while rank 0 waits for it in the first collective.
  testing::Outcome o =
      testing::run_shell("timeout 120 " + kMpirun + " -np 1 " + kTrain + " --epochs 1 : -np 1 " +
                         kTrain + " --epochs 1 --data-dir /nonexistent/sprig");
  CHECK(o.code != 0);
  CHECK(o.code != 124);  // not the timeout
  CHECK_MESSAGE(o.err.find("sprig: error on rank 1 of 2:") != std::string::npos, o.err);
  CHECK(o.err.find("/nonexistent/sprig") != std::string::npos);
}

TEST_CASE("a rank killed during training ends the job instead of a hang") {
  const fs::path dir = testing::temp_dir("test_cli_mpi_kill");
  const std::string out = (dir / "killed.safetensors").string();
  // Rank 1 (the newest process with this --out) is killed once training is under way.
  testing::Outcome o = testing::run_shell(
      "( timeout 120 " + kMpirun + " -np 2 " + kTrain + " --epochs 100 --out " + out +
      " ; echo \"exit $?\" ) & sleep 3; pkill -KILL -n -f 'sprig train.*" + out + "'; wait");
  CHECK_MESSAGE(o.out.find("exit ") != std::string::npos, o.out);
  CHECK(o.out.find("exit 0") == std::string::npos);
  CHECK(o.out.find("exit 124") == std::string::npos);  // not the timeout
  CHECK_FALSE(fs::exists(out));                        // no half-written checkpoint either
  fs::remove_all(dir);
}

TEST_CASE("commands that are not data-parallel refuse to run under mpirun") {
  testing::Outcome o = testing::run_shell("timeout 120 " + kMpirun + " -np 2 " +
                                          std::string(SPRIG_BINARY) + " summary --model mlp");
  CHECK(o.code != 0);
  CHECK(o.code != 124);
  CHECK_MESSAGE(
      o.err.find("sprig summary runs as one process: start it without mpirun") != std::string::npos,
      o.err);
}

// The printed tables of `sprig <args>` run alone and on 2 and 3 ranks are the same, but for the
// line ends `seconds` matches (wall-clock times; each must end with the line's newline, which
// stays). Returns the single process's output.
static std::string check_same_tables(const std::string& args, const std::regex& seconds) {
  auto strip = [&](const std::string& out) { return std::regex_replace(out, seconds, "\n"); };
  testing::Outcome one = testing::run_shell(std::string(SPRIG_BINARY) + args);
  REQUIRE_MESSAGE(one.code == 0, one.err);
  for (int np : {2, 3}) {
    CAPTURE(np);
    testing::Outcome many = testing::run_shell(kMpirun + " -np " + std::to_string(np) + " " +
                                               std::string(SPRIG_BINARY) + args);
    REQUIRE_MESSAGE(many.code == 0, many.err);
    CHECK(strip(many.out) == strip(one.out));
  }
  return one.out;
}

TEST_CASE(
    "sprig experiment gradual-vs-instant spread over 2 and 3 ranks prints one process's tables") {
  const fs::path dir = testing::temp_dir("test_cli_mpi_sweep");
  // 2 seeds x 2 sparsities x 2 step counts: 2 pretrained models and 8 trials.
  const std::string args =
      " experiment gradual-vs-instant --seeds 2 --sparsities 0.8,0.9 --steps 1,2 --epochs 1 "
      "--pretrain-epochs 1 --train-samples 2000 --test-samples 500 --eval-samples 200 "
      "--threads 1 --local-store " +
      (dir / "mlruns").string() + " --report " + (dir / "report.html").string();
  // Every line but the trials' seconds.
  const std::string out = check_same_tables(args, std::regex("  [0-9.]+ s\n"));
  CHECK(count(out, ": dense model after") == 2);
  CHECK(count(out, "model sparsity") == 8);
  fs::remove_all(dir);
}

TEST_CASE(
    "sprig experiment l1-vs-fpgm spread over ranks, from a masked base, prints one "
    "process's table") {
  const fs::path dir = testing::temp_dir("test_cli_mpi_l1");
  const std::string base = (dir / "base.safetensors").string(),
                    masked = (dir / "masked.safetensors").string();
  const std::string sprig = SPRIG_BINARY;
  testing::Outcome made = testing::run_shell(
      sprig + " train --model cnn2 --epochs 1 --limit-train 1000 --limit-test 200 --threads 1 " +
      "--quiet --out " + base + " && " + sprig + " prune " + base +
      " --method magnitude --amount 0.3 --finetune-epochs 0 --limit-train 1000 --out " + masked);
  REQUIRE_MESSAGE(made.code == 0, made.err);
  // 4 variants: 2 per rank on 2 ranks, 2/1/1 on 3; the base's masks must reach every rank.
  const std::string out =
      check_same_tables(" experiment l1-vs-fpgm --base " + masked +
                            " --finetune-epochs 1 --amounts 0.5,0.75 --train-samples 1000 "
                            "--test-samples 300 --threads 1 --local-store " +
                            (dir / "mlruns").string() + " --report " + (dir / "r.html").string(),
                        std::regex("  [0-9.]+\n"));
  CHECK(count(out, "fine-tuning epoch ") == 4);
  fs::remove_all(dir);
}

TEST_CASE(
    "sprig experiment iterative spread over ranks: batches of 2 trials give one process's "
    "search") {
  const fs::path dir = testing::temp_dir("test_cli_mpi_search");
  const std::string out = check_same_tables(
      " experiment iterative --total-trials 5 --initial-trials 2 --trial-batch 2 "
      "--max-epochs 1 --prune-iterations 2 --train-samples 1000 --test-samples 300 "
      "--threads 1 --local-store " +
          (dir / "mlruns").string() + " --report " + (dir / "r.html").string(),
      std::regex("\\(?[0-9.]+ s\\)?\n|  [0-9.]+\n"));
  CHECK(count(out, "proposed 2 at a time") == 1);
  CHECK(count(out, "trial 5/5") == 1);
  fs::remove_all(dir);
}

TEST_CASE("mpirun -np 2 sprig prune: Taylor filter pruning removes one process's filters") {
  const fs::path dir = testing::temp_dir("test_cli_mpi_prune");
  const std::string base = (dir / "base.safetensors").string();
  testing::Outcome trained = testing::run_shell(std::string(SPRIG_BINARY) +
                                                " train --model cnn2 --epochs 1 --limit-train 3200 "
                                                "--limit-test 200 --threads 1 --quiet --out " +
                                                base);
  REQUIRE_MESSAGE(trained.code == 0, trained.err);
  // Scored on 10 batches of 64 (shards of 32 per rank), then one data-parallel fine-tuning epoch.
  const std::string prune =
      " prune " + base +
      " --method taylor --granularity filter --amount 0.5 --criterion-batches "
      "10 --finetune-epochs 1 --optimizer sgd --lr 0.001 --limit-train 3200 "
      "--threads 1 --json --out ";
  const std::string alone = (dir / "alone.safetensors").string(),
                    together = (dir / "together.safetensors").string();
  testing::Outcome one = testing::run_shell(std::string(SPRIG_BINARY) + prune + alone);
  REQUIRE_MESSAGE(one.code == 0, one.err);
  testing::Outcome two =
      testing::run_shell(kMpirun + " -np 2 " + std::string(SPRIG_BINARY) + prune + together);
  REQUIRE_MESSAGE(two.code == 0, two.err);
  CHECK(count(two.out, "\"sparsity\":") == 2);  // one JSON line (with a step inside): rank 0's
  CHECK(testing::check_same_masks(nn::load_checkpoint(alone).model,
                                  nn::load_checkpoint(together).model) > 0);
  CHECK(max_relative_difference(alone, together) <= 1e-5);
  fs::remove_all(dir);
}
