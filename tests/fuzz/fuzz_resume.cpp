// libFuzzer target: `sprig train --resume` from a tampered training checkpoint. Three small
// training checkpoints are made in process (train_fuzz_util.h): linear(8) relu linear(1)
// stopped mid-epoch with Adam and a cosine schedule; the same at an epoch boundary with SGD,
// Nesterov momentum, weight decay and a rewind snapshot; a masked conv + BatchNorm model on
// images with AdamW, multistep + warm-up, augmentation and bn-l1, stopped mid-epoch. The input
// picks one and edits it; the file is rebuilt (a valid safetensors layout around the edited
// bytes), loaded with load_training_checkpoint and resumed for one step (resume_one_step).
// It must either raise sprig::Error or leave every weight and optimizer buffer finite (and
// pruned ones 0). Input: byte 0 picks the checkpoint, then edits until the input ends, each an
// op byte (op % 6) and its operands:
//   0 T O O L B...  write bytes B (L % 16 + 1 of them) into optimizer / rewind tensor T at
//                   byte offset O (16-bit little-endian, modulo the tensor's size)
//   1 T E E V       set element E of tensor T to special value V (NaN, Inf, 3e38, -1, ...)
//   2 P L C...      set JSON node P of the train_state to C (L % 32 characters) parsed as JSON,
//                   or as a string when it is not JSON
//   3 P             remove JSON node P of the train_state
//   4 O O L B...    overwrite the train_state text at offset O with bytes B (L % 8 + 1)
//   5 T             leave tensor T out of the file
// Expected failures are sprig::Error; anything else aborts the run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/train_fuzz_util.h"
#include "train/train_state.h"

namespace {

using Json = nlohmann::json;

struct Entry {
  std::string name;
  Json dtype, shape;
  std::string bytes;
  bool tamperable = false;  // optimizer state or rewind weights
};

struct Base {
  std::vector<Entry> entries;  // in data order, as the file has them
  Json metadata;
  std::string train_state;
  std::vector<std::string> nodes;  // JSON pointers of every node of train_state
  std::vector<size_t> tamperable;  // indices into entries
  bool images = false;
};

void list_nodes(const Json& j, const std::string& at, std::vector<std::string>& out) {
  if (!at.empty()) out.push_back(at);
  if (j.is_object())
    for (auto& [k, v] : j.items()) list_nodes(v, at + "/" + k, out);
  if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i) list_nodes(j[i], at + "/" + std::to_string(i), out);
}

Base split(const std::string& file, bool images) {
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  Json header = Json::parse(file.substr(8, n));
  const std::string data = file.substr(8 + n);
  Base b;
  b.images = images;
  b.metadata = header["__metadata__"];
  header.erase("__metadata__");
  for (auto& [name, t] : header.items()) {
    Entry e{name, t["dtype"], t["shape"], ""};
    size_t lo = t["data_offsets"][0], hi = t["data_offsets"][1];
    e.bytes = data.substr(lo, hi - lo);
    e.tamperable =
        name.rfind(sprig::nn::kOptimPrefix, 0) == 0 || name.rfind(sprig::nn::kRewindPrefix, 0) == 0;
    b.entries.push_back(e);
  }
  std::sort(b.entries.begin(), b.entries.end(), [&](const Entry& x, const Entry& y) {
    return header[x.name]["data_offsets"][0] < header[y.name]["data_offsets"][0];
  });
  for (size_t i = 0; i < b.entries.size(); ++i)
    if (b.entries[i].tamperable) b.tamperable.push_back(i);
  b.train_state = b.metadata[sprig::nn::kTrainStateKey].get<std::string>();
  list_nodes(Json::parse(b.train_state), "", b.nodes);
  return b;
}

const std::vector<Base>& bases() {
  static const std::vector<Base> all = [] {
    using sprig::fuzz::BaseRun;
    std::vector<Base> out;
    BaseRun flat;
    flat.cfg.model = "linear(8) relu linear(1)";
    flat.cfg.dataset = "friedman1";
    flat.cfg.batch_size = 16;
    flat.cfg.seed = 2;
    flat.cfg.threads = 1;

    BaseRun adam = flat;
    adam.cfg.epochs = 3;
    adam.cfg.optim = {"adam", 0.01f};
    adam.cfg.lr.name = "cosine";
    adam.stop_at = 6;
    out.push_back(split(sprig::fuzz::make_training_checkpoint(adam), false));

    BaseRun sgd = flat;
    sgd.cfg.epochs = 2;
    sgd.cfg.optim = {"sgd", 0.01f, 0.9f, 0.001f, true};
    sgd.cfg.rewind_step = 2;
    sgd.stop_at = 4;
    out.push_back(split(sprig::fuzz::make_training_checkpoint(sgd), false));

    BaseRun conv;
    conv.images = true;
    conv.masked = true;
    conv.cfg.model = "conv(3,3) bn relu flatten linear(3)";
    conv.cfg.dataset = "fashion-mnist";
    conv.cfg.epochs = 3;
    conv.cfg.batch_size = 16;
    conv.cfg.seed = 4;
    conv.cfg.threads = 1;
    conv.cfg.optim = {"adamw", 0.01f, 0.0f, 0.01f};
    conv.cfg.lr.name = "multistep";
    conv.cfg.lr.milestones = {2};
    conv.cfg.lr.warmup_epochs = 1;
    conv.cfg.augment = true;
    conv.cfg.bn_l1 = 1e-3f;
    conv.stop_at = 4;
    out.push_back(split(sprig::fuzz::make_training_checkpoint(conv), true));
    return out;
  }();
  return all;
}

// Reads the input front to back; past its end every read gives 0.
struct Input {
  const uint8_t* p;
  size_t left;
  bool empty() const { return left == 0; }
  uint8_t byte() {
    if (!left) return 0;
    --left;
    return *p++;
  }
  uint16_t u16() { return uint16_t(byte() | (byte() << 8)); }
  std::string bytes(size_t n) {
    n = std::min(n, left);
    std::string s(reinterpret_cast<const char*>(p), n);
    p += n;
    left -= n;
    return s;
  }
};

float special(uint8_t k) {
  const float inf = std::numeric_limits<float>::infinity();
  const float values[] = {std::numeric_limits<float>::quiet_NaN(),
                          inf,
                          -inf,
                          3.4e38f,
                          -3.4e38f,
                          1e30f,
                          -1e30f,
                          1e15f,
                          -1.0f,
                          0.0f,
                          -0.0f,
                          1e-45f,
                          1e-38f,
                          65504.0f,
                          1e6f,
                          -1e6f};
  return values[k % (sizeof values / sizeof values[0])];
}

// Applies a JSON edit to the train_state text; text that no longer parses is left as it is.
template <typename Edit>
void edit_json(std::string& text, const Edit& edit) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return;
  try {
    edit(j);
  } catch (const Json::exception&) {
    return;  // the node is gone or of another type after earlier edits
  }
  text = j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string build_file(const std::vector<Entry>& entries, const std::vector<bool>& dropped,
                       Json metadata, const std::string& train_state) {
  Json header = Json::object();
  metadata[sprig::nn::kTrainStateKey] = train_state;
  header["__metadata__"] = metadata;
  std::string data;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (dropped[i]) continue;
    const Entry& e = entries[i];
    header[e.name] = {{"dtype", e.dtype},
                      {"shape", e.shape},
                      {"data_offsets", {data.size(), data.size() + e.bytes.size()}}};
    data += e.bytes;
  }
  std::string text = header.dump(-1, ' ', false, Json::error_handler_t::replace);
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  uint64_t n = text.size();
  std::memcpy(&file[0], &n, 8);
  return file + text + data;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sprig::fuzz::ReleaseCache release;
  static sprig::fuzz::MemFile file;
  const std::vector<Base>& all = bases();
  Input in{data, size};
  const Base& base = all[in.byte() % all.size()];
  std::vector<Entry> entries = base.entries;
  std::vector<bool> dropped(entries.size(), false);
  std::string ts = base.train_state;
  const size_t nt = base.tamperable.size(), nn = base.nodes.size();
  for (int ops = 0; !in.empty() && ops < 64; ++ops) {
    const uint8_t op = in.byte() % 6;
    if (op == 0 || op == 1 || op == 5) {
      Entry& e = entries[base.tamperable[in.byte() % nt]];
      if (op == 0) {
        const size_t off = in.u16() % e.bytes.size();
        const std::string b = in.bytes(std::min<size_t>(in.byte() % 16 + 1, e.bytes.size() - off));
        e.bytes.replace(off, b.size(), b);
      } else if (op == 1) {
        const size_t at = (in.u16() % (e.bytes.size() / 4)) * 4;
        const float v = special(in.byte());
        std::memcpy(&e.bytes[at], &v, 4);
      } else {
        dropped[size_t(&e - entries.data())] = true;
      }
    } else if (op == 2 || op == 3) {
      const Json::json_pointer node(base.nodes[in.byte() % nn]);
      if (op == 2) {
        const std::string text = in.bytes(in.byte() % 32);
        Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (value.is_discarded()) value = text;
        edit_json(ts, [&](Json& j) {
          j.at(node);  // only nodes that are still there
          j[node] = value;
        });
      } else {
        edit_json(ts, [&](Json& j) {
          Json& parent = j.at(node.parent_pointer());
          if (parent.is_object())
            parent.erase(node.back());
          else if (parent.is_array())
            parent.erase(size_t(std::stoul(node.back())));
        });
      }
    } else {
      const size_t off = in.u16() % (ts.size() + 1);
      const std::string b = in.bytes(in.byte() % 8 + 1);
      ts.replace(off, std::min(b.size(), ts.size() - off), b);
    }
  }

  if (std::getenv("SPRIG_FUZZ_VERBOSE")) std::fprintf(stderr, "train_state: %s\n", ts.c_str());
  const std::string bytes = build_file(entries, dropped, base.metadata, ts);
  const std::string& path = file.write(bytes.data(), bytes.size());
  sprig::train::ResumePoint rp;
  try {
    rp = sprig::train::load_training_checkpoint(path);
    sprig::fuzz::resume_one_step(
        rp, base.images ? sprig::fuzz::image_data() : sprig::fuzz::flat_data(), path);
  } catch (const sprig::Error& e) {
    sprig::fuzz::expected(e);
  }
  return 0;
}
