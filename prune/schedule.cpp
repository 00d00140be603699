#include "prune/schedule.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>

namespace sprig::prune {

// ---- Polynomial decay ----------------------------------------------------------------------

static void check_sparsity(double s, const char* field) {
  SPRIG_CHECK(std::isfinite(s) && s >= 0.0 && s < 1.0, "polynomial decay: ", field,
              " must be in [0, 1), got ", s);
}

void PolynomialDecay::validate() const {
  check_sparsity(initial_sparsity, "initial_sparsity");
  check_sparsity(final_sparsity, "final_sparsity");
  SPRIG_CHECK(final_sparsity >= initial_sparsity,
              "polynomial decay: final_sparsity must be >= initial_sparsity, got final_sparsity ",
              final_sparsity, " < initial_sparsity ", initial_sparsity);
  SPRIG_CHECK(begin_step >= 0, "polynomial decay: begin_step must be >= 0, got ", begin_step);
  SPRIG_CHECK(end_step > begin_step, "polynomial decay: end_step must be > begin_step (",
              begin_step, "), got ", end_step);
  SPRIG_CHECK(frequency > 0, "polynomial decay: frequency must be > 0, got ", frequency);
  SPRIG_CHECK(std::isfinite(power) && power > 0.0, "polynomial decay: power must be > 0, got ",
              power);
}

double PolynomialDecay::sparsity_at(int64_t step) const {
  validate();
  double p = double(step - begin_step) / double(end_step - begin_step);
  p = std::min(1.0, std::max(0.0, p));
  return final_sparsity + (initial_sparsity - final_sparsity) * std::pow(1.0 - p, power);
}

bool PolynomialDecay::should_prune(int64_t step) const {
  validate();
  // step >= begin_step here, so % is TF's floormod.
  return step >= begin_step && step <= end_step && (step - begin_step) % frequency == 0;
}

// ---- Iterative -----------------------------------------------------------------------------

std::vector<double> iterative_targets(double final_sparsity, int steps) {
  SPRIG_CHECK(steps >= 1, "iterative schedule: steps must be >= 1, got ", steps);
  SPRIG_CHECK(std::isfinite(final_sparsity) && final_sparsity >= 0.0 && final_sparsity < 1.0,
              "iterative schedule: final sparsity must be in [0, 1), got ", final_sparsity);
  std::vector<double> targets(steps);
  for (int k = 1; k <= steps; ++k)
    targets[k - 1] = 1.0 - std::pow(1.0 - final_sparsity, double(k) / double(steps));
  targets.back() = final_sparsity;  // exact, whatever pow rounds to
  return targets;
}

// Whole-string number parsing: "0.5x", "" and "nan" are errors, not 0.5, 0 and NaN.
static bool parse_double(const std::string& s, double* out) {
  if (s.empty() || std::isspace((unsigned char)s[0])) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

static bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty() || !(std::isdigit((unsigned char)s[0]) || s[0] == '-')) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

static std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    parts.push_back(
        s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

std::vector<double> parse_iterative(const std::string& spec, double final_sparsity) {
  const char* forms =
      "expected a number of steps such as 4 or cumulative targets such as "
      "0.5,0.75,0.875";
  int64_t steps = 0;
  if (parse_int(spec, &steps)) {
    SPRIG_CHECK(steps >= 1 && steps <= 1000, "iterative schedule: steps must be in [1, 1000], got ",
                spec);
    return iterative_targets(final_sparsity, int(steps));
  }
  SPRIG_CHECK(!spec.empty(), "iterative schedule: empty, ", forms);
  std::vector<double> targets;
  for (const std::string& item : split_commas(spec)) {
    double v = 0.0;
    SPRIG_CHECK(parse_double(item, &v), "iterative schedule: '", item, "' in '", spec,
                "' is not a number; ", forms);
    SPRIG_CHECK(v >= 0.0 && v < 1.0, "iterative schedule: target ", item, " in '", spec,
                "' is outside [0, 1)");
    SPRIG_CHECK(targets.empty() || v >= targets.back(), "iterative schedule: target ", item,
                " in '", spec, "' is below the one before it (", targets.back(),
                "); targets are cumulative and must not decrease");
    targets.push_back(v);
  }
  return targets;
}

// ---- Command-line form ---------------------------------------------------------------------

static const char* kScheduleForms =
    "accepted: oneshot, iterative:STEPS, iterative:s1,s2,..., agp:BEGIN,END,FREQ";

ScheduleSpec parse_schedule(const std::string& s, double final_sparsity) {
  SPRIG_CHECK(std::isfinite(final_sparsity) && final_sparsity >= 0.0 && final_sparsity < 1.0,
              "schedule '", s, "': final sparsity must be in [0, 1), got ", final_sparsity);
  size_t colon = s.find(':');
  std::string kind = s.substr(0, colon);
  std::string args = colon == std::string::npos ? "" : s.substr(colon + 1);
  bool has_args = colon != std::string::npos;

  ScheduleSpec out;
  if (kind == "oneshot") {
    SPRIG_CHECK(!has_args, "schedule '", s, "': oneshot takes no arguments; ", kScheduleForms);
    out.kind = ScheduleSpec::OneShot;
    out.targets = {final_sparsity};
    return out;
  }
  if (kind == "iterative") {
    SPRIG_CHECK(has_args && !args.empty(), "schedule '", s,
                "': iterative needs STEPS or targets, e.g. iterative:4 or iterative:0.5,0.75; ",
                kScheduleForms);
    out.kind = ScheduleSpec::Iterative;
    try {
      out.targets = parse_iterative(args, final_sparsity);
    } catch (const Error& e) {
      throw Error("schedule '" + s + "': " + e.what());
    }
    return out;
  }
  if (kind == "agp") {
    std::vector<std::string> parts = split_commas(args);
    SPRIG_CHECK(has_args && parts.size() == 3, "schedule '", s,
                "': agp needs BEGIN,END,FREQ (training steps), e.g. agp:0,2000,100; ",
                kScheduleForms);
    int64_t v[3];
    const char* names[3] = {"BEGIN", "END", "FREQ"};
    for (int i = 0; i < 3; ++i)
      SPRIG_CHECK(parse_int(parts[i], &v[i]), "schedule '", s, "': agp ", names[i], " '", parts[i],
                  "' is not an integer; ", kScheduleForms);
    out.kind = ScheduleSpec::Polynomial;
    out.agp.initial_sparsity = 0.0;
    out.agp.final_sparsity = final_sparsity;
    out.agp.begin_step = v[0];
    out.agp.end_step = v[1];
    out.agp.frequency = v[2];
    out.agp.power = 3.0;
    try {
      out.agp.validate();
    } catch (const Error& e) {
      throw Error("schedule '" + s + "': " + e.what());
    }
    return out;
  }
  throw Error("unknown schedule '" + s + "'; " + kScheduleForms);
}

// ---- Lottery-ticket rewinding --------------------------------------------------------------

WeightSnapshot snapshot_weights(const nn::Model& model) {
  WeightSnapshot snap;
  for (auto& [name, p] : model.named_parameters()) snap.values[name] = p->value.clone();
  return snap;
}

void rewind_weights(nn::Model& model, const WeightSnapshot& snapshot, nn::Optimizer* optimizer) {
  auto params = model.named_parameters();
  // Check everything before touching anything, so a mismatch leaves the model as it was.
  std::set<std::string> names;
  for (auto& [name, p] : params) {
    names.insert(name);
    auto it = snapshot.values.find(name);
    SPRIG_CHECK(it != snapshot.values.end(), "rewind: the snapshot has no parameter '", name,
                "' (was it taken from another model?)");
    SPRIG_CHECK(it->second.shape() == p->value.shape() && it->second.dtype() == p->value.dtype(),
                "rewind: parameter '", name, "' is ", p->value.str(), " but the snapshot holds ",
                it->second.str());
  }
  for (auto& kv : snapshot.values)
    SPRIG_CHECK(names.count(kv.first), "rewind: the snapshot's parameter '", kv.first,
                "' is not in the model (was it taken from another model?)");

  for (auto& [name, p] : params) {
    p->value.copy_(snapshot.values.at(name));
    p->state.clear();  // momentum from the pruned run would push the rewound weights around
    p->apply_mask();
  }
  if (optimizer) optimizer->steps = 0;
}

}  // namespace sprig::prune
