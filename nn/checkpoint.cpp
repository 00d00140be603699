#include "nn/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "engine/safetensors.h"

namespace sprig::nn {

static std::string shape_to_csv(const Shape& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out;
}

static Shape csv_to_shape(const std::string& path, const std::string& csv) {
  Shape s;
  std::stringstream ss(csv);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      long long v = std::stoll(part, &used);
      SPRIG_CHECK(used == part.size() && v > 0, "");
      s.push_back(v);
    } catch (...) {
      throw Error(path + ": metadata input_shape '" + csv + "' is not a list of positive integers");
    }
  }
  SPRIG_CHECK(!s.empty(), path, ": metadata input_shape is empty");
  return s;
}

// A NaN or infinite weight poisons every output; it comes from a diverged run or a damaged
// file, so refuse it at load rather than print NaN metrics later. The same for what a resumed
// run or a rewind copies into the weights: optimizer state and rewind snapshots.
static void check_finite(const std::string& path, const std::string& name, const Tensor& t,
                         const char* what = "weights") {
  const float* v = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    SPRIG_CHECK(std::isfinite(v[i]), path, ": tensor '", name, "' holds ", v[i], " at element ", i,
                " of ", to_string(t.shape()), " (", what, " must be finite)");
}

// parse_granularity also reads the names checkpoints were saved with before "filter", "channel"
// and "nm" (output_channel, input_channel, n:m). Its own error speaks of the command line, so
// say which file holds the bad name instead.
static Granularity mask_granularity(const std::string& path, const std::string& g) {
  try {
    return parse_granularity(g);
  } catch (const Error&) {
    throw Error(path + ": unknown mask granularity '" + g + "'");
  }
}

void save_checkpoint(const std::string& path, const Model& model,
                     const std::map<std::string, std::string>& extra,
                     const std::map<std::string, Tensor>& rewind, const std::string& train_state) {
  std::map<std::string, std::string> meta = extra;
  meta.erase(kTrainStateKey);
  if (!train_state.empty()) meta[kTrainStateKey] = train_state;
  meta["format"] = kCheckpointFormat;
  meta["spec"] = model.spec;
  meta["input_shape"] = shape_to_csv(model.input_shape);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, p] : model.named_parameters()) {
    tensors.push_back({name, p->value.detach()});
    if (p->mask) {
      tensors.push_back({name + ".mask", p->mask->keep});
      meta["mask." + name] = granularity_name(p->mask->granularity);
    }
  }
  for (auto& [name, b] : model.named_buffers()) tensors.push_back({name, *b});
  for (auto& [name, t] : rewind) tensors.push_back({kRewindPrefix + name, t});
  if (!train_state.empty())
    for (auto& [name, p] : model.named_parameters())
      for (auto& [key, t] : p->state) {
        SPRIG_CHECK(key.find('.') == std::string::npos, "save_checkpoint: optimizer state key '",
                    key, "' of ", name, " contains '.'");
        tensors.push_back({kOptimPrefix + name + "." + key, t});
      }
  save_safetensors(path, tensors, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  TensorFile file = load_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = file.metadata.find(key);
    SPRIG_CHECK(it != file.metadata.end(), path, ": not a sprig checkpoint (no '", key,
                "' in the safetensors metadata)");
    return it->second;
  };
  SPRIG_CHECK(meta("format") == kCheckpointFormat, path, ": checkpoint format '", meta("format"),
              "' is not supported (expected ", kCheckpointFormat, ")");
  Checkpoint ck;
  // Outside the try: these errors already name the file.
  const std::string& spec = meta("spec");
  const Shape input_shape = csv_to_shape(path, meta("input_shape"));
  // The spec cannot need more values than the file holds: checked layer by layer before the
  // model allocates them. The slack of 2^24 values leaves small mismatches to the checks
  // below, which name the tensor.
  int64_t file_values = 0;
  for (auto& [name, t] : file.tensors) file_values += t.numel();
  SpecLimits limits;
  limits.max_parameters = std::min(limits.max_parameters, file_values + (int64_t(1) << 24));
  limits.source = "the file holds only " + std::to_string(file_values);
  try {
    ck.model = build_model(spec, input_shape, 0, limits);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  ck.metadata = file.metadata;

  std::set<std::string> used;
  for (auto& [name, p] : ck.model.named_parameters()) {
    const Tensor* t = file.find(name);
    SPRIG_CHECK(t, path, ": missing tensor '", name, "' required by the spec");
    SPRIG_CHECK(t->dtype() == DType::F32 && t->shape() == p->value.shape(), path, ": tensor '",
                name, "' is ", dtype_name(t->dtype()), " ", to_string(t->shape()),
                " but the spec needs float32 ", to_string(p->value.shape()));
    check_finite(path, name, *t);
    p->value.copy_(*t);
    used.insert(name);
    if (const Tensor* m = file.find(name + ".mask")) {
      SPRIG_CHECK(m->dtype() == DType::U8 && m->shape() == p->value.shape(), path, ": mask '", name,
                  ".mask' is ", dtype_name(m->dtype()), " ", to_string(m->shape()),
                  " but must be uint8 ", to_string(p->value.shape()));
      const uint8_t* keep = m->data_as<uint8_t>();
      for (int64_t i = 0; i < m->numel(); ++i)
        SPRIG_CHECK(keep[i] <= 1, path, ": mask '", name, ".mask' holds ", int(keep[i]),
                    " at element ", i, " (a mask is 0 or 1)");
      auto g = file.metadata.find("mask." + name);
      p->set_mask(m->clone(), g == file.metadata.end() ? Granularity::Element
                                                       : mask_granularity(path, g->second));
      used.insert(name + ".mask");
    }
  }
  for (auto& [name, b] : ck.model.named_buffers()) {
    const Tensor* t = file.find(name);
    SPRIG_CHECK(t, path, ": missing tensor '", name, "' required by the spec");
    SPRIG_CHECK(t->dtype() == DType::F32 && t->shape() == b->shape(), path, ": tensor '", name,
                "' is ", dtype_name(t->dtype()), " ", to_string(t->shape()),
                " but the spec needs float32 ", to_string(b->shape()));
    check_finite(path, name, *t);
    const float* v = t->data_as<float>();
    if (name.size() >= 11 && name.compare(name.size() - 11, 11, "running_var") == 0)
      for (int64_t i = 0; i < t->numel(); ++i)
        SPRIG_CHECK(v[i] >= 0, path, ": tensor '", name, "' holds ", v[i], " at element ", i,
                    " (a variance is never negative)");
    b->copy_(*t);
    used.insert(name);
  }
  const std::string prefix = kRewindPrefix;
  for (auto& [name, t] : file.tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    std::string param = name.substr(prefix.size());
    const Tensor* value = file.find(param);
    SPRIG_CHECK(
        value && used.count(param) && t.shape() == value->shape() && t.dtype() == DType::F32, path,
        ": rewind tensor '", name, "' does not match a parameter of the model");
    check_finite(path, name, t, "rewind weights");
    ck.rewind[param] = t;
    used.insert(name);
  }
  // Parameter names hold dots ("0.weight"), state keys do not: split at the last dot.
  const std::string optim = kOptimPrefix;
  for (auto& [name, t] : file.tensors) {
    if (name.rfind(optim, 0) != 0) continue;
    size_t dot = name.find_last_of('.');
    std::string param = dot > optim.size() ? name.substr(optim.size(), dot - optim.size()) : "";
    const Tensor* value = file.find(param);
    SPRIG_CHECK(value && used.count(param) && t.shape() == value->shape() &&
                    t.dtype() == DType::F32 && dot + 1 < name.size(),
                path, ": optimizer tensor '", name, "' (", dtype_name(t.dtype()), " ",
                to_string(t.shape()), ") does not match a parameter of the model");
    const std::string key = name.substr(dot + 1);
    check_finite(path, name, t, "optimizer state");
    // Adam's second moment is a running mean of squares: a negative one makes sqrt() NaN.
    if (key == "exp_avg_sq") {
      const float* v = t.data_as<float>();
      for (int64_t i = 0; i < t.numel(); ++i)
        SPRIG_CHECK(v[i] >= 0.0f, path, ": tensor '", name, "' holds ", v[i], " at element ", i,
                    " (a mean of squared gradients is never negative)");
    }
    ck.optimizer_state[param][key] = t;
    used.insert(name);
  }
  auto ts = file.metadata.find(kTrainStateKey);
  if (ts != file.metadata.end()) ck.train_state = ts->second;
  for (auto& [name, t] : file.tensors)
    SPRIG_CHECK(used.count(name), path, ": unexpected tensor '", name,
                "' (not a parameter of spec '", ck.model.spec, "')");
  return ck;
}

}  // namespace sprig::nn
