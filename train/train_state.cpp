#include "train/train_state.h"

#include <nlohmann/json.hpp>
#include <set>

#include "engine/text.h"

namespace sprig::train {

using Json = nlohmann::json;

static constexpr int kTrainStateVersion = 1;

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
// Reads fields of one JSON object, naming the missing or mistyped one in the error.
struct Reader {
  const Json& obj;
  std::string where;  // e.g. "train_state.config"

  bool has(const char* key) const { return obj.find(key) != obj.end(); }
  const Json& field(const char* key) const {
    auto it = obj.find(key);
    SPRIG_CHECK(it != obj.end(), "no '", key, "' in ", where);
    return *it;
  }
  template <typename T>
  T get(const char* key) const {
    const Json& v = field(key);
    try {
      return v.get<T>();
    } catch (const Json::exception&) {
      throw Error(detail::concat(where, ".", key, " has the wrong type (", v.type_name(), ")"));
    }
  }
  int64_t integer(const char* key, int64_t lo) const {
    const Json& v = field(key);
    SPRIG_CHECK(v.is_number_integer() && v.get<int64_t>() >= lo, where, ".", key,
                " must be an integer >= ", lo, ", got ", v.dump());
    return v.get<int64_t>();
  }
  double number(const char* key) const {
    const Json& v = field(key);
    SPRIG_CHECK(v.is_number(), where, ".", key, " must be a number, got ", v.dump());
    return v.get<double>();
  }
};
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
    int64_t version = r.integer("version", 0);
    SPRIG_CHECK(version == kTrainStateVersion, "version ", version, " is not supported (expected ",
                kTrainStateVersion, ")");
    const Json& cj = r.field("config");
    SPRIG_CHECK(cj.is_object(), "train_state.config is not an object");
    Reader c{cj, "train_state.config"};
    TrainConfig& cfg = s.config;
    cfg.model = c.get<std::string>("model");
    cfg.dataset = c.get<std::string>("dataset");
    cfg.data_dir = unescape_bytes(c.get<std::string>("data_dir"));
    cfg.lr.name = c.get<std::string>("lr_schedule");
    // Absent in files written before these existed: the defaults are what those runs did.
    if (c.has("lr_step_size")) cfg.lr.step_size = int(c.integer("lr_step_size", 0));
    if (c.has("lr_milestones")) cfg.lr.milestones = c.get<std::vector<int>>("lr_milestones");
    if (c.has("lr_gamma")) cfg.lr.gamma = c.number("lr_gamma");
    if (c.has("warmup_epochs")) cfg.lr.warmup_epochs = int(c.integer("warmup_epochs", 0));
    if (c.has("augment")) cfg.augment = c.get<bool>("augment");
    if (c.has("bn_l1")) cfg.bn_l1 = float(c.number("bn_l1"));
    cfg.epochs = int(c.integer("epochs", 0));
    cfg.batch_size = c.integer("batch_size", 1);
    cfg.limit_train = c.integer("limit_train", -1);
    cfg.limit_test = c.integer("limit_test", -1);  // absent in older files: all
    cfg.rewind_step = c.integer("rewind_step", -1);
    cfg.seed = c.get<uint64_t>("seed");
    cfg.threads = int(c.integer("threads", 0));
    const Json& oj = c.field("optimizer");
    SPRIG_CHECK(oj.is_object(), "train_state.config.optimizer is not an object");
    Reader o{oj, "train_state.config.optimizer"};
    cfg.optim.name = o.get<std::string>("name");
    cfg.optim.lr = float(o.number("lr"));
    cfg.optim.momentum = float(o.number("momentum"));
    cfg.optim.weight_decay = float(o.number("weight_decay"));
    cfg.optim.nesterov = o.get<bool>("nesterov");
    // Files from before the key decayed every parameter, BatchNorm included.
    cfg.optim.bn_weight_decay = o.has("bn_weight_decay") ? o.get<bool>("bn_weight_decay") : true;

    FitPosition& p = s.position;
    p.epoch = int(r.integer("epoch", 0));
    p.step_in_epoch = r.integer("step_in_epoch", 0);
    p.global_step = r.integer("global_step", 0);
    p.epoch_loss_sum = r.number("epoch_loss_sum");
    p.epoch_seen = r.integer("epoch_seen", 0);
    s.optimizer_steps = r.integer("optimizer_steps", 0);
    const Json& hj = r.field("history");
    SPRIG_CHECK(hj.is_array(), "train_state.history is not an array");
    for (const Json& ej : hj) {
      SPRIG_CHECK(ej.is_object(), "train_state.history holds a non-object");
      Reader h{ej, "train_state.history[]"};
      EpochStats e;
      e.epoch = int(h.integer("epoch", 1));
      e.train_loss = h.number("train_loss");
      e.seconds = h.number("seconds");
      e.test.loss = h.number("test_loss");
      e.test.accuracy = h.number("test_accuracy");
      e.test.samples = h.integer("test_samples", 0);
      s.history.push_back(e);
    }
    SPRIG_CHECK(int(s.history.size()) == p.epoch, "train_state.history has ", s.history.size(),
                " epochs but the position is after epoch ", p.epoch);
  } catch (const Error& e) {
    throw Error(path + ": metadata 'train_state' is invalid: " + e.what());
  }
  return s;
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
