#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>

#include "apps/commands.h"
#include "dist/comm.h"
#include "engine/backend.h"
#include "engine/rng.h"
#include "infer/pack.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"
#include "train/train_state.h"

namespace sprig::app {

const CLI::Validator FiniteNumber(
    [](std::string& value) -> std::string {
      try {
        size_t used = 0;
        double v = std::stod(value, &used);
        if (used == value.size() && std::isfinite(v)) return "";
      } catch (...) {
      }
      return "value " + value + " is not a finite number";
    },
    "FINITE");

const CLI::Validator FractionBelowOne(
    [](std::string& value) -> std::string {
      try {
        double v = std::stod(value);
        if (v >= 0.0 && v < 1.0) return "";
      } catch (...) {
      }
      return "value " + value + " is not in [0, 1)";
    },
    "[0, 1)");

// A path flag given as '' would read or write nothing ("train --out ''" trained and saved
// nothing, exit 0): refused at parse time.
const CLI::Validator NonEmptyPath(
    [](std::string& value) -> std::string { return value.empty() ? "an empty path" : ""; }, "PATH");

const CLI::Validator PackFormatName = [] {
  std::vector<std::string> names;
  for (infer::PackFormat f : infer::kPackFormats) names.push_back(infer::pack_format_name(f));
  return CLI::IsMember(names);
}();

CLI::Validator IntRange(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& value) -> std::string {
        const size_t digits_from = !value.empty() && value[0] == '-' ? 1 : 0;
        const bool whole = value.size() > digits_from && value.size() <= 20 &&
                           value.find_first_not_of("0123456789", digits_from) == std::string::npos;
        if (!whole) return "value " + value + " is not a whole number";
        errno = 0;
        const long long v = std::strtoll(value.c_str(), nullptr, 10);
        if (errno == 0 && v >= lo && v <= hi) return "";
        return "value " + value + " is not in [" + std::to_string(lo) + ", " + std::to_string(hi) +
               "]";
      },
      "INT in [" + std::to_string(lo) + " - " + std::to_string(hi) + "]");
}

// CLI11 reads "-1" and "1e23" into a uint64_t as 2^64 - 1: a seed is plain decimal digits.
const CLI::Validator SeedNumber(
    [](std::string& value) -> std::string {
      const bool digits = !value.empty() && value.size() <= 20 &&
                          value.find_first_not_of("0123456789") == std::string::npos;
      if (digits) try {
          std::stoull(value);
          return "";
        } catch (...) {
        }
      return "value " + value + " is not a seed (an integer in [0, 2^64))";
    },
    "SEED");

void zero_random_units(int64_t n, double fraction, Rng& rng,
                       const std::function<void(int64_t)>& prune_unit) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  int64_t k = std::llround(fraction * double(n));
  for (int64_t i = 0; i < k; ++i) {
    std::swap(order[size_t(i)], order[size_t(i + int64_t(rng.below(uint64_t(n - i))))]);
    prune_unit(order[size_t(i)]);
  }
}

std::pair<int64_t, int64_t> parse_block_flag(const std::string& s) {
  size_t x = s.find('x');
  try {
    if (x != std::string::npos) {
      size_t a = 0, b = 0;
      int64_t r = std::stoll(s.substr(0, x), &a), c = std::stoll(s.substr(x + 1), &b);
      if (a == x && b == s.size() - x - 1 && r > 0 && c > 0 && r <= 256 && c <= 256) return {r, c};
    }
  } catch (...) {
  }
  throw Error("--block must be ROWSxCOLS with sizes in 1..256 (e.g. 1x4 or 4x4), got '" + s + "'");
}

CLI::Validator dataset_validator() {
  return CLI::IsMember(train::dataset_names());
}

void add_checkpoint_data_flags(CLI::App& app, std::string& dataset, std::string& data_dir) {
  app.add_option("--dataset", dataset,
                 "fashion-mnist, mnist, cifar10 or friedman1 (default: the one the model was "
                 "trained on)")
      ->check(dataset_validator());
  app.add_option("--data-dir", data_dir,
                 "directory with the dataset's files (IDX files; CIFAR-10's data_batch_*.bin)")
      ->check(NonEmptyPath);
}

void add_lr_schedule_flags(CLI::App& app, train::LrScheduleConfig& c) {
  app.add_option("--lr-schedule", c.name,
                 "constant, cosine (decay to 0 over the run), step (x --lr-gamma every "
                 "--lr-step-size epochs) or multistep (x --lr-gamma at each of --lr-milestones)")
      ->check(CLI::IsMember({"constant", "cosine", "step", "multistep"}))
      ->capture_default_str();
  app.add_option("--lr-step-size", c.step_size, "step schedule: epochs between decays")
      ->check(IntRange(1, train::limits::kMaxSchedule));
  app.add_option("--lr-milestones", c.milestones,
                 "multistep schedule: increasing epochs at which the lr is multiplied by "
                 "--lr-gamma, e.g. 100,150")
      ->delimiter(',');
  app.add_option("--lr-gamma", c.gamma, "step / multistep: factor of each decay (> 0)")
      ->check(FiniteNumber)
      ->capture_default_str();
  app.add_option("--warmup-epochs", c.warmup_epochs,
                 "linear warm-up per step from ~0 to --lr over this many epochs, then the "
                 "schedule")
      ->check(IntRange(0, train::limits::kMaxSchedule));
}

void add_device_flag(CLI::App& app, std::string& device) {
  app.add_option(
         "--device", device,
         "where to compute: cpu, cuda or cuda:N (under mpirun, cuda is each rank's own GPU)")
      ->capture_default_str();
}

Device device_from_flag(const std::string& value) {
  try {
    Device d = parse_device(value);
    if (d.is_cpu()) return d;
    std::string why;
    const int gpus = cuda_device_count(&why);
    SPRIG_CHECK(gpus > 0, "CUDA is not available: ", why);
    // Under mpirun, plain "cuda" is this rank's GPU: the ranks on a machine take its GPUs in
    // turn (NCCL needs one GPU per rank).
    const dist::Comm& world = dist::Comm::world();
    if (value == "cuda" && world.size() > 1) d = Device::cuda(world.local_rank() % gpus);
    backend_for(d);  // checks the index and initialises the device now, not mid-run
    return d;
  } catch (const Error& e) {
    throw Error("--device " + value + ": " + e.what());
  }
}

void use_threads(int requested) {
  if (requested <= 0) return;
  const int cap = kMaxThreadsPerProcessor * std::max(1, cpu::num_processors());
  if (requested > cap) {
    std::fprintf(stderr, "sprig: warning: --threads %d on %d processors: using %d\n", requested,
                 cpu::num_processors(), cap);
    requested = cap;
  }
  cpu::set_num_threads(requested);
}

std::string or_list(const std::vector<CLI::App*>& commands) {
  std::string names;
  for (size_t i = 0; i < commands.size(); ++i)
    names += (i == 0 ? "" : i + 1 == commands.size() ? " or " : ", ") + commands[i]->get_name();
  return names;
}

void print_json_line(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

bool stdout_is_terminal() {
  return isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
}

std::vector<int64_t> parse_shape_flag(const std::string& flag, const std::string& value) {
  std::vector<int64_t> shape;
  std::stringstream ss(value);
  std::string part;
  while (std::getline(ss, part, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(part, &used);
    } catch (...) {
      used = 0;
    }
    SPRIG_CHECK(used == part.size() && used > 0 && v > 0, flag, " must be positive integers ",
                "separated by commas (e.g. 1,28,28), got '", value, "'");
    shape.push_back(v);
  }
  SPRIG_CHECK(!shape.empty(), flag, " is empty");
  return shape;
}

}  // namespace sprig::app
