#include "train/train_state.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/text.h"

namespace sprig::train {

using Json = nlohmann::json;

static constexpr int kTrainStateVersion = 1;

void apply_train_config(const TrainConfig& cfg, const nn::Model& model, FitConfig& fc) {
  fc.batch_size = cfg.batch_size;
  fc.seed = cfg.seed;
  if (cfg.bn_l1 > 0.0f) {
    bool has_bn = false;
    for (auto& p : model.parameters()) has_bn |= p->norm_affine;
    SPRIG_CHECK(has_bn, "--bn-l1 penalises BatchNorm scales, but ", cfg.model,
                " has no BatchNorm layer");
  }
  fc.bn_l1 = cfg.bn_l1;
}

std::string train_state_to_json(const TrainState& s) {
  const TrainConfig& c = s.config;
  // Floats go through double, which JSON prints with enough digits to round-trip exactly.
  Json optim = {{"name", c.optim.name},
                {"lr", double(c.optim.lr)},
                {"momentum", double(c.optim.momentum)},
                {"weight_decay", double(c.optim.weight_decay)},
                {"nesterov", c.optim.nesterov},
                {"bn_weight_decay", c.optim.bn_weight_decay}};
  Json config = {{"model", c.model},
                 {"dataset", c.dataset},
                 {"data_dir", printable(c.data_dir)},  // JSON is UTF-8; a path is bytes
                 {"lr_schedule", c.lr.name},
                 {"lr_step_size", c.lr.step_size},
                 {"lr_milestones", c.lr.milestones},
                 {"lr_gamma", c.lr.gamma},
                 {"warmup_epochs", c.lr.warmup_epochs},
                 {"augment", c.augment},
                 {"bn_l1", double(c.bn_l1)},
                 {"epochs", c.epochs},
                 {"batch_size", c.batch_size},
                 {"limit_train", c.limit_train},
                 {"limit_test", c.limit_test},
                 {"rewind_step", c.rewind_step},
                 {"optimizer", optim},
                 {"seed", c.seed},
                 {"threads", c.threads}};
  Json history = Json::array();
  for (const EpochStats& e : s.history)
    history.push_back({{"epoch", e.epoch},
                       {"train_loss", e.train_loss},
                       {"seconds", e.seconds},
                       {"test_loss", e.test.loss},
                       {"test_accuracy", e.test.accuracy},
                       {"test_samples", e.test.samples}});
  const FitPosition& p = s.position;
  Json j = {{"version", kTrainStateVersion},
            {"config", config},
            {"epoch", p.epoch},
            {"step_in_epoch", p.step_in_epoch},
            {"global_step", p.global_step},
            {"epoch_loss_sum", p.epoch_loss_sum},
            {"epoch_seen", p.epoch_seen},
            {"optimizer_steps", s.optimizer_steps},
            {"history", history}};
  return j.dump();
}

namespace {
// A value for a message: scalars as JSON (strings quoted and escaped, so the message stays one
// line; invalid UTF-8 replaced; long ones cut), containers by their type only.
std::string brief(const Json& v) {
  if (v.is_structured()) return std::string("a JSON ") + v.type_name();
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

std::string quoted(const std::string& s) {
  return brief(Json(s));
}

// Reads fields of one JSON object, naming the missing, mistyped or out-of-range one in the error.
// The ranges are those of the sprig train flags, so a file holds only what a run could.
struct Reader {
  const Json& obj;
  std::string where;  // e.g. "train_state.config"

  bool has(const char* key) const { return obj.find(key) != obj.end(); }
  const Json& field(const char* key) const {
    auto it = obj.find(key);
    SPRIG_CHECK(it != obj.end(), "no '", key, "' in ", where);
    return *it;
  }
  std::string string(const char* key) const {
    const Json& v = field(key);
    SPRIG_CHECK(v.is_string(), where, ".", key, " must be a string, got ", brief(v));
    return v.get<std::string>();
  }
  bool boolean(const char* key) const {
    const Json& v = field(key);
    SPRIG_CHECK(v.is_boolean(), where, ".", key, " must be true or false, got ", brief(v));
    return v.get<bool>();
  }
  static bool integer_in(const Json& v, int64_t lo, int64_t hi) {
    if (v.is_number_unsigned()) return v.get<uint64_t>() <= uint64_t(hi);
    return v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  }
  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const Json& v = field(key);
    SPRIG_CHECK(integer_in(v, lo, hi), where, ".", key, " must be an integer from ", lo, " to ", hi,
                ", got ", brief(v));
    return v.get<int64_t>();
  }
  uint64_t unsigned_integer(const char* key) const {
    const Json& v = field(key);
    SPRIG_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), where,
                ".", key, " must be an integer in [0, 2^64), got ", brief(v));
    return v.get<uint64_t>();
  }
  // A finite number in [lo, hi] (a parser may read 1e999 as infinity).
  double number(const char* key, double lo, double hi) const {
    const Json& v = field(key);
    SPRIG_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= lo &&
                    v.get<double>() <= hi,
                where, ".", key, " must be a number from ", lo, " to ", hi, ", got ", brief(v));
    return v.get<double>();
  }
};

using namespace limits;
constexpr double kHuge = 1e300;                  // "any finite number" for the ranges below
constexpr int64_t kMaxSteps = int64_t(1) << 62;  // steps and samples of a run
}  // namespace

TrainState parse_train_state(const std::string& text, const std::string& path) {
  TrainState s;
  try {
    Json j;
    try {
      j = Json::parse(text);
    } catch (const Json::exception& e) {
      throw Error(std::string("not valid JSON: ") + e.what());
    }
    SPRIG_CHECK(j.is_object(), "it is a JSON ", j.type_name(), ", not an object");
    Reader r{j, "train_state"};
    const Json& vj = r.field("version");
    SPRIG_CHECK(vj.is_number_integer() && vj == kTrainStateVersion, "version ", brief(vj),
                " is not supported (expected ", kTrainStateVersion, ")");
    const Json& cj = r.field("config");
    SPRIG_CHECK(cj.is_object(), "train_state.config is not an object");
    Reader c{cj, "train_state.config"};
    TrainConfig& cfg = s.config;
    cfg.model = c.string("model");
    SPRIG_CHECK(!cfg.model.empty(), "train_state.config.model is empty");
    cfg.dataset = c.string("dataset");
    const auto& datasets = dataset_names();
    SPRIG_CHECK(std::find(datasets.begin(), datasets.end(), cfg.dataset) != datasets.end(),
                "train_state.config.dataset ", quoted(cfg.dataset),
                " is not a dataset sprig knows");
    cfg.data_dir = unescape_bytes(c.string("data_dir"));  // stored printable()
    cfg.lr.name = c.string("lr_schedule");
    // Absent in files written before these existed: the defaults are what those runs did.
    if (c.has("lr_step_size")) cfg.lr.step_size = int(c.integer("lr_step_size", 0, kMaxSchedule));
    if (c.has("lr_milestones")) {
      const Json& mj = c.field("lr_milestones");
      SPRIG_CHECK(mj.is_array() && mj.size() <= size_t(kMaxEpochs),
                  "train_state.config.lr_milestones must be a list of epochs, got ", brief(mj));
      for (const Json& m : mj) {
        SPRIG_CHECK(Reader::integer_in(m, 1, kMaxEpochs), "train_state.config.lr_milestones holds ",
                    brief(m), ", not an epoch");
        cfg.lr.milestones.push_back(m.get<int>());
      }
    }
    if (c.has("lr_gamma")) cfg.lr.gamma = c.number("lr_gamma", -kHuge, kHuge);
    if (c.has("warmup_epochs"))
      cfg.lr.warmup_epochs = int(c.integer("warmup_epochs", 0, kMaxSchedule));
    if (c.has("augment")) cfg.augment = c.boolean("augment");
    if (c.has("bn_l1")) cfg.bn_l1 = float(c.number("bn_l1", 0.0, 1.0));
    cfg.epochs = int(c.integer("epochs", 0, kMaxEpochs));
    cfg.batch_size = c.integer("batch_size", 1, kMaxBatch);
    cfg.limit_train = c.integer("limit_train", -1, kMaxCount);
    if (c.has("limit_test")) cfg.limit_test = c.integer("limit_test", -1, kMaxCount);
    cfg.rewind_step = c.integer("rewind_step", -1, kMaxCount);
    cfg.seed = c.unsigned_integer("seed");
    cfg.threads = int(c.integer("threads", 0, kMaxThreads));
    // The schedule's own rules (the flags' messages name what is wrong).
    FitConfig fc;
    fc.epochs = cfg.epochs;
    apply_lr_schedule(cfg.lr, fc);
    const Json& oj = c.field("optimizer");
    SPRIG_CHECK(oj.is_object(), "train_state.config.optimizer is not an object");
    Reader o{oj, "train_state.config.optimizer"};
    cfg.optim.name = o.string("name");
    SPRIG_CHECK(cfg.optim.name == "sgd" || cfg.optim.name == "adam" || cfg.optim.name == "adamw",
                "train_state.config.optimizer.name ", quoted(cfg.optim.name),
                " is not sgd, adam or adamw");
    cfg.optim.lr = float(o.number("lr", 0.0, kMaxLr));
    cfg.optim.momentum = float(o.number("momentum", 0.0, 1.0));
    cfg.optim.weight_decay = float(o.number("weight_decay", 0.0, 1.0));
    cfg.optim.nesterov = o.boolean("nesterov");
    // Files from before the key decayed every parameter, BatchNorm included.
    cfg.optim.bn_weight_decay = o.has("bn_weight_decay") ? o.boolean("bn_weight_decay") : true;

    FitPosition& p = s.position;
    p.epoch = int(r.integer("epoch", 0, cfg.epochs));
    p.step_in_epoch = r.integer("step_in_epoch", 0, kMaxCount);
    p.global_step = r.integer("global_step", 0, kMaxSteps);
    p.epoch_loss_sum = r.number("epoch_loss_sum", 0.0, kHuge);
    p.epoch_seen = r.integer("epoch_seen", 0, kMaxSteps);
    s.optimizer_steps = r.integer("optimizer_steps", 0, kMaxSteps);
    // What fit() leaves: a run past its last epoch is at that epoch's end; every step takes
    // one optimizer step and 1 to batch_size samples; an epoch boundary starts from zero.
    SPRIG_CHECK(p.step_in_epoch == 0 || p.epoch < cfg.epochs, "train_state is at step ",
                p.step_in_epoch, " of epoch ", p.epoch + 1, ", but the run has ", cfg.epochs,
                " epochs");
    SPRIG_CHECK(p.global_step >= p.step_in_epoch + p.epoch, "train_state.global_step ",
                p.global_step, " is fewer than the steps of epoch ", p.epoch, " step ",
                p.step_in_epoch);
    SPRIG_CHECK(s.optimizer_steps == p.global_step, "train_state.optimizer_steps ",
                s.optimizer_steps, " differs from global_step ", p.global_step,
                " (the run takes one optimizer step per step)");
    SPRIG_CHECK(p.epoch_seen >= p.step_in_epoch && p.epoch_seen <= p.step_in_epoch * cfg.batch_size,
                "train_state.epoch_seen ", p.epoch_seen, " is not what ", p.step_in_epoch,
                " steps of batch size ", cfg.batch_size, " see");
    SPRIG_CHECK(p.epoch_seen > 0 || p.epoch_loss_sum == 0.0, "train_state.epoch_loss_sum ",
                p.epoch_loss_sum, " is not 0 though no sample of the epoch was seen");
    const Json& hj = r.field("history");
    SPRIG_CHECK(hj.is_array(), "train_state.history is not an array");
    SPRIG_CHECK(int64_t(hj.size()) == p.epoch, "train_state.history has ", hj.size(),
                " epochs but the position is after epoch ", p.epoch);
    for (const Json& ej : hj) {
      SPRIG_CHECK(ej.is_object(), "train_state.history holds a non-object");
      Reader h{ej, "train_state.history[" + std::to_string(s.history.size()) + "]"};
      EpochStats e;
      e.epoch = int(h.integer("epoch", 1, kMaxEpochs));
      SPRIG_CHECK(e.epoch == int(s.history.size()) + 1, h.where, " is epoch ", e.epoch,
                  ", expected ", s.history.size() + 1);
      e.train_loss = h.number("train_loss", 0.0, kHuge);
      e.seconds = h.number("seconds", 0.0, kHuge);
      e.test.loss = h.number("test_loss", 0.0, kHuge);
      e.test.accuracy = h.number("test_accuracy", 0.0, 1.0);
      e.test.samples = h.integer("test_samples", 0, kMaxSteps);
      s.history.push_back(e);
    }
  } catch (const Error& e) {
    throw Error(path + ": metadata 'train_state' is invalid: " + e.what());
  }
  return s;
}

void check_train_state(const TrainState& s, const nn::Checkpoint& ck, const std::string& path) {
  const TrainConfig& cfg = s.config;
  auto disagree = [&](const std::string& what) {
    throw Error(path + ": metadata 'train_state' disagrees with the checkpoint: " + what);
  };
  // The model: the name or spec the run was given must build to the spec the file holds (a
  // zoo name and its spec, or two spellings of one spec, are the same model). The build may
  // hold no more than the file's model, so a tampered spec cannot demand gigabytes.
  const nn::Model& model = ck.model;
  if (cfg.model != model.spec) {
    int64_t budget = 0;
    for (auto& [name, p] : model.named_parameters()) budget += p->numel();
    for (auto& [name, b] : model.named_buffers()) budget += b->numel();
    bool same = false;
    try {
      nn::SpecLimits limits;
      limits.max_parameters = budget;
      limits.source = "the checkpoint's model holds only " + std::to_string(budget);
      same = nn::build_model(cfg.model, model.input_shape, 0, limits).spec == model.spec;
    } catch (const Error&) {
    }
    if (!same)
      disagree("config.model " + quoted(cfg.model) + " is not the model it holds, " +
               quoted(model.spec));
  }
  // What sprig train also writes as plain metadata (absent in files saved by other code).
  auto meta = [&](const char* key, const std::string& want, const char* field) {
    auto it = ck.metadata.find(key);
    if (it != ck.metadata.end() && it->second != want)
      disagree(std::string(field) + " " + quoted(want) + " differs from metadata '" + key + "' " +
               quoted(it->second));
  };
  meta("optimizer", cfg.optim.name, "config.optimizer.name");
  meta("dataset", cfg.dataset, "config.dataset");
  meta("seed", std::to_string(cfg.seed), "config.seed");
  meta("epochs", std::to_string(cfg.epochs), "config.epochs");
  if (cfg.rewind_step >= 0)
    meta("rewind_step", std::to_string(cfg.rewind_step), "config.rewind_step");
  else if (ck.metadata.count("rewind_step"))
    disagree("config.rewind_step is -1 (none), but metadata 'rewind_step' is " +
             quoted(ck.metadata.at("rewind_step")));

  // The optimizer buffers: exactly those the named optimizer keeps, for every parameter once
  // it has taken a step, and none before.
  const std::string& opt = cfg.optim.name;
  std::set<std::string> keeps;
  if (opt == "adam" || opt == "adamw")
    keeps = {"exp_avg", "exp_avg_sq"};
  else if (cfg.optim.momentum != 0.0f)
    keeps = {"momentum_buffer"};
  const std::string kind = opt == "sgd" ? (keeps.empty() ? "sgd without momentum"
                                                         : "sgd with "
                                                           "momentum")
                                        : opt;
  for (auto& [param, bufs] : ck.optimizer_state)
    for (auto& [key, t] : bufs) {
      if (!keeps.count(key))
        disagree("it holds optimizer tensor " +
                 quoted(std::string(nn::kOptimPrefix) + param + "." + key) + ", which " + kind +
                 " (config.optimizer) does not keep");
      if (s.optimizer_steps == 0)
        disagree("it holds optimizer tensor " +
                 quoted(std::string(nn::kOptimPrefix) + param + "." + key) +
                 ", but optimizer_steps is 0 (no step has made it)");
    }
  if (s.optimizer_steps > 0)
    for (auto& [param, p] : model.named_parameters())
      for (const std::string& key : keeps) {
        auto it = ck.optimizer_state.find(param);
        if (it == ck.optimizer_state.end() || !it->second.count(key))
          disagree("optimizer tensor " + quoted(std::string(nn::kOptimPrefix) + param + "." + key) +
                   " is missing, which " + kind +
                   " (config.optimizer) keeps for every parameter after " +
                   std::to_string(s.optimizer_steps) + " steps");
      }

  // The rewind snapshot: taken once the run reaches config.rewind_step, of every parameter.
  const bool rewound = cfg.rewind_step >= 0 && s.position.global_step >= cfg.rewind_step;
  if (!rewound && !ck.rewind.empty())
    disagree("it holds rewind weights, but config.rewind_step is " +
             std::to_string(cfg.rewind_step) + " and the run is at step " +
             std::to_string(s.position.global_step));
  if (rewound && ck.rewind.size() != model.named_parameters().size())
    disagree("config.rewind_step is " + std::to_string(cfg.rewind_step) +
             " and the run is at step " + std::to_string(s.position.global_step) +
             ", but it holds " + std::to_string(ck.rewind.size()) + " rewind tensors for " +
             std::to_string(model.named_parameters().size()) + " parameters");
}

void save_training_checkpoint(const std::string& path, const nn::Model& model,
                              const TrainState& state,
                              const std::map<std::string, std::string>& extra,
                              const std::map<std::string, Tensor>& rewind) {
  nn::save_checkpoint(path, model, extra, rewind, train_state_to_json(state));
}

ResumePoint load_training_checkpoint(const std::string& path) {
  ResumePoint r;
  r.checkpoint = nn::load_checkpoint(path);
  auto created = r.checkpoint.metadata.find("created_by");
  SPRIG_CHECK(!r.checkpoint.train_state.empty(), path,
              " holds no training state, so it cannot be resumed (it was written by ",
              created == r.checkpoint.metadata.end() ? "an older sprig" : created->second,
              "; only checkpoints from sprig train --out can be)");
  r.state = parse_train_state(r.checkpoint.train_state, path);
  check_train_state(r.state, r.checkpoint, path);
  return r;
}

void restore_optimizer(nn::Optimizer& opt, const ResumePoint& r, const std::string& path) {
  std::set<std::string> allowed;
  if (opt.name() == "sgd")
    allowed = {"momentum_buffer"};
  else
    allowed = {"exp_avg", "exp_avg_sq"};
  std::set<std::string> known;
  for (auto& p : opt.params) {
    known.insert(p->name);
    auto it = r.checkpoint.optimizer_state.find(p->name);
    p->state.clear();
    if (it == r.checkpoint.optimizer_state.end()) continue;
    for (auto& [key, t] : it->second) {
      SPRIG_CHECK(allowed.count(key), path, ": optimizer tensor 'optim.", p->name, ".", key,
                  "' is not state of ", opt.name());
      p->state[key] = t;
    }
    p->apply_mask();  // the file's buffers are masked already; a mask wins over a stray value
  }
  for (auto& kv : r.checkpoint.optimizer_state)
    SPRIG_CHECK(known.count(kv.first), path, ": optimizer state for '", kv.first,
                "', which the optimizer does not train");
  opt.steps = r.state.optimizer_steps;
}

}  // namespace sprig::train
