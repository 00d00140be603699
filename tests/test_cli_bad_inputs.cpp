// The catalogue of bad inputs, end to end through the sprig binary: missing and unreadable
// files, truncated and corrupt checkpoints, shape mismatches, NaN / Inf in data and flags,
// values out of range, unknown names, malformed specs, and a full disk while saving. Every case
// must exit non-zero without a signal, print exactly one line on stderr starting
// "sprig: error:" that names the problem, and leave every file in its directory byte-identical
// (no temp file left behind either).
//
// With SPRIG_BAD_INPUTS_DOC=docs/bad-inputs.md the run also rewrites the generated part of that
// page with each command and the exact message it printed.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/safetensors.h"
#include "tests/cli_test_util.h"

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using sprig::testing::Outcome;
using sprig::testing::run_shell;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << bytes;
  REQUIRE(f.good());
}

// Every entry under dir: regular files by content, directories by a marker.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> s;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    std::string rel = fs::relative(e.path(), dir).string();
    s[rel] = e.is_directory() ? "<dir>" : e.is_regular_file() ? read_file(e.path()) : "<other>";
  }
  return s;
}

// A safetensors file split into its header (parsed) and data section, and put back together.
struct StFile {
  Json header;
  std::string data;
};

StFile split_st(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  return {Json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string length_field(uint64_t n) {
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = char(n >> (8 * i));
  return len;
}

std::string join_st(const StFile& f) {
  std::string text = f.header.dump();
  return length_field(text.size()) + text + f.data;
}

// A tensor's [begin, end) in the data section, as the header says.
std::pair<size_t, size_t> offsets(const StFile& f, const std::string& name) {
  const Json& o = f.header.at(name).at("data_offsets");
  return {o[0].get<size_t>(), o[1].get<size_t>()};
}

std::string float_bytes(float v) {
  std::string b(4, '\0');
  std::memcpy(&b[0], &v, 4);
  return b;
}

// One row of docs/bad-inputs.md.
struct Row {
  std::string group, what, command, message;
  int code;
};
// A plain global defined before doc_writer, so it is still alive when doc_writer's destructor
// runs at exit.
std::vector<Row> g_rows;
std::vector<Row>& rows() {
  return g_rows;
}

struct Case {
  std::string what;                 // the bad input, in words
  std::string args;                 // after "sprig "
  std::vector<std::string> expect;  // substrings the error line must hold
  std::string prefix = "";          // shell commands before sprig, e.g. "ulimit -f 16; "
};

// The fixture: one directory of small files every case runs in (so messages show short
// relative paths), built once per process.
struct Fixture {
  fs::path dir;
  Fixture() {
    dir = sprig::testing::temp_dir("test_cli_bad_inputs");
    // Tiny friedman1 models train in milliseconds.
    sh("train --dataset friedman1 --model 'linear(8) relu linear(1)' --epochs 1 --quiet "
       "--out good.safetensors");
    // About 15 KB (45 KB with the optimizer state), past the 8 KB the full-disk cases allow.
    sh("train --dataset friedman1 --model 'linear(300) relu linear(1)' --epochs 1 --quiet "
       "--out big.safetensors");
    sh("prune --in good.safetensors --amount 0.5 --quiet --out pruned.safetensors");
    sh("pack --in pruned.safetensors --repeats 1 --out packed.safetensors > /dev/null");
    fs::copy_file(dir / "good.safetensors", dir / "keep.safetensors");
    write_file(dir / "plain.txt", "precious\n");
    fs::create_directories(dir / "adir");
    fs::create_directories(dir / "mnist-dir-as-file" / "train-images-idx3-ubyte");
    fs::create_directories(dir / "mnist-garbage");
    write_file(dir / "mnist-garbage" / "train-images-idx3-ubyte", "this is no IDX file");
    write_file(dir / "mnist-garbage" / "train-labels-idx1-ubyte", "nor is this");
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void sh(const std::string& args) {
    Outcome o = run_shell(cd() + SPRIG_BINARY + " " + args);
    REQUIRE_MESSAGE(o.code == 0, args, "\n", o.out, o.err);
  }
  // One thread: the cases are tiny, and on a busy machine OpenMP threads only wait.
  std::string cd() const { return "cd '" + dir.string() + "' && export OMP_NUM_THREADS=1 && "; }
  std::string bytes(const std::string& name) const { return read_file(dir / name); }
  void put(const std::string& name, const std::string& content) const {
    write_file(dir / name, content);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// Runs one case in the fixture directory and checks the contract.
void check_case(const std::string& group, const Case& c) {
  Fixture& fx = fixture();
  CAPTURE(c.args);
  auto before = snapshot(fx.dir);
  // Every case, whatever it feeds sprig, must fail within 2 GB and 60 s of CPU.
  Outcome o = run_shell(fx.cd() + sprig::testing::resource_limits() + c.prefix + "exec " +
                        SPRIG_BINARY + " " + c.args);
  CHECK_MESSAGE(o.signal == 0, "killed by signal ", o.signal);
  CHECK(o.code > 0);
  CHECK_MESSAGE(sprig::testing::count_lines(o.err) == 1, o.err);
  CHECK_MESSAGE(o.err.rfind("sprig: error: ", 0) == 0, o.err);
  CHECK((!o.err.empty() && o.err.back() == '\n'));
  CHECK(o.err.find("internal error") == std::string::npos);
  for (const std::string& e : c.expect) CHECK_MESSAGE(o.err.find(e) != std::string::npos, e);
  auto after = snapshot(fx.dir);
  for (const auto& [name, content] : before) {
    auto it = after.find(name);
    CHECK_MESSAGE(it != after.end(), name, " was removed");
    if (it != after.end()) CHECK_MESSAGE(it->second == content, name, " was changed");
  }
  for (const auto& [name, content] : after)
    CHECK_MESSAGE(before.count(name), name, " was left behind");
  std::string message = o.err.substr(0, o.err.find('\n'));
  // Temp files carry the process id; keep the page stable from run to run.
  message = std::regex_replace(message, std::regex(R"(\.tmp\.[0-9]+)"), ".tmp.<pid>");
  rows().push_back({group, c.what, c.prefix + "sprig " + c.args, message, o.code});
}

void check_all(const std::string& group, const std::vector<Case>& cases) {
  for (const Case& c : cases) check_case(group, c);
}

// Writes the rows between the markers of the page named by SPRIG_BAD_INPUTS_DOC.
struct DocWriter {
  ~DocWriter() {
    const char* path = std::getenv("SPRIG_BAD_INPUTS_DOC");
    if (!path || rows().empty()) return;
    const std::string begin = "<!-- BEGIN GENERATED -->", end = "<!-- END GENERATED -->";
    std::string page = read_file(path);
    size_t b = page.find(begin), e = page.find(end);
    if (b == std::string::npos || e == std::string::npos || e < b) return;
    auto cell = [](std::string s) {
      std::string out;
      for (char ch : s) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
      return out;
    };
    std::string table, group;
    for (const Row& r : rows()) {
      if (r.group != group) {
        group = r.group;
        table += "\n### " + group + "\n\n| Case | Command | Exit | Message (stderr) |\n";
        table += "|---|---|---|---|\n";
      }
      table += "| " + cell(r.what) + " | `" + cell(r.command) + "` | " + std::to_string(r.code) +
               " | `" + cell(r.message) + "` |\n";
    }
    page = page.substr(0, b + begin.size()) + "\n" + table + "\n" + page.substr(e);
    // Not write_file: its REQUIRE outside a test case crashes doctest at exit.
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << page;
    f.close();
    if (!f) std::fprintf(stderr, "test_cli_bad_inputs: cannot write %s\n", path);
  }
} doc_writer;

}  // namespace

TEST_CASE("missing and unreadable files") {
  check_all(
      "Missing and unreadable files",
      {
          {"checkpoint does not exist",
           "eval --in missing.safetensors",
           {"missing.safetensors", "No such file or directory"}},
          // The tests may run as root, for whom chmod 000 stops nothing: use a directory.
          {"checkpoint is a directory", "summary --in adir", {"'adir'", "not a regular file"}},
          {"path runs through a regular file",
           "prune --in plain.txt/x.safetensors",
           {"plain.txt/x.safetensors", "Not a directory"}},
          {"input missing, --out exists",
           "prune --in missing.safetensors --out keep.safetensors",
           {"missing.safetensors"}},
          {"sensitivity of a directory", "sensitivity --in adir", {"adir"}},
          {"pack a missing file",
           "pack --in missing.safetensors --out keep.safetensors",
           {"missing.safetensors"}},
          {"plan through a non-directory", "plan --in plain.txt/y", {"plain.txt/y"}},
          {"run a directory", "run --in adir", {"adir"}},
          {"bench a missing model",
           "bench model --in missing.safetensors",
           {"missing.safetensors"}},
          {"dataset directory does not exist",
           "train --dataset mnist --data-dir /nonexistent --epochs 1",
           {"/nonexistent"}},
          {"dataset directory does not exist (eval)",
           "eval --in good.safetensors --dataset mnist --data-dir /nonexistent",
           {"/nonexistent"}},
          {"dataset directory is a file",
           "train --dataset mnist --data-dir plain.txt",
           {"plain.txt", "not a directory"}},
          {"dataset directory without the files",
           "train --dataset fashion-mnist --data-dir adir",
           {"adir"}},
          {"IDX file is a directory",
           "train --dataset mnist --data-dir mnist-dir-as-file",
           {"mnist-dir-as-file", "train-images-idx3-ubyte"}},
          {"IDX file holds garbage",
           "train --dataset mnist --data-dir mnist-garbage",
           {"mnist-garbage/train-images-idx3-ubyte", "magic"}},
          {"--out in a missing directory",
           "train --dataset friedman1 --model 'linear(1)' --epochs 1 --out nodir/x.safetensors",
           {"nodir/x.safetensors", "No such file or directory"}},
          {"--out is a directory",
           "prune --in good.safetensors --out adir",
           {"--out 'adir' exists and is a directory"}},
      });
}

TEST_CASE("truncated, corrupt and foreign checkpoint files") {
  Fixture& fx = fixture();
  const std::string good = fx.bytes("good.safetensors");
  StFile st = split_st(good);
  const size_t header_end = good.size() - st.data.size();
  fx.put("cut-in-length.safetensors", good.substr(0, 5));
  fx.put("cut-in-header.safetensors", good.substr(0, 100));
  fx.put("cut-in-data.safetensors", good.substr(0, header_end + 10));
  fx.put("cut-last-byte.safetensors", good.substr(0, good.size() - 1));
  fx.put("empty.safetensors", "");
  {
    std::string bad = good;
    bad[8] = '[';  // the header's opening brace
    fx.put("bad-json.safetensors", bad);
    fx.put("long-length.safetensors", length_field(good.size()) + good.substr(8));
    fx.put("huge-length.safetensors", length_field(~0ull) + good.substr(8));
  }
  auto edit = [&](const std::string& name, auto change) {
    StFile f = st;
    change(f);
    fx.put(name, join_st(f));
  };
  edit("offsets-past-end.safetensors", [](StFile& f) {
    f.header["2.bias"]["data_offsets"] = {offsets(f, "2.bias").first, 99999};
  });
  edit("offsets-reversed.safetensors", [](StFile& f) {
    auto [begin, end] = offsets(f, "2.bias");
    f.header["2.bias"]["data_offsets"] = {end, begin};
  });
  edit("offsets-overlap.safetensors", [](StFile& f) {
    size_t w_end = offsets(f, "0.weight").second;  // 0.bias (32 bytes) now starts inside it
    f.header["0.bias"]["data_offsets"] = {w_end - 20, w_end + 12};
  });
  edit("dtype-f16.safetensors", [](StFile& f) { f.header["0.weight"]["dtype"] = "F16"; });
  edit("dtype-i32.safetensors", [](StFile& f) { f.header["0.weight"]["dtype"] = "I32"; });
  edit("negative-dim.safetensors", [](StFile& f) { f.header["0.bias"]["shape"] = {-8}; });
  edit("header-array.safetensors", [](StFile& f) { f.header = Json::array({1, 2}); });
  {
    // nlohmann keeps only one of two equal keys, so write the duplicate as raw text.
    std::string text = st.header.dump();
    text.insert(text.size() - 1, ",\"0.bias\":" + st.header["0.bias"].dump());
    fx.put("duplicate-name.safetensors", length_field(text.size()) + text + st.data);
  }
  fx.put("gzip.safetensors",
         std::string("\x1f\x8b\x08\0\0\0\0\0\0\x03", 10) + std::string(50, 'x'));
  check_all("Truncated, corrupt and foreign checkpoint files",
            {
                {"cut inside the 8-byte length",
                 "eval --in cut-in-length.safetensors",
                 {"cut-in-length.safetensors", "5 bytes", "8-byte header length"}},
                {"cut inside the JSON header",
                 "eval --in cut-in-header.safetensors",
                 {"cut-in-header.safetensors", "larger than the file"}},
                {"cut inside the data",
                 "summary --in cut-in-data.safetensors",
                 {"cut-in-data.safetensors", "truncated"}},
                {"last byte missing",
                 "prune --in cut-last-byte.safetensors --out keep.safetensors",
                 {"cut-last-byte.safetensors", "is beyond the", "truncated"}},
                {"empty file", "plan --in empty.safetensors", {"empty.safetensors", "0 bytes"}},
                {"header is not JSON",
                 "eval --in bad-json.safetensors",
                 {"bad-json.safetensors", "not valid JSON"}},
                {"header is a JSON array",
                 "eval --in header-array.safetensors",
                 {"header-array.safetensors", "array, not an object"}},
                {"header length larger than the file",
                 "eval --in long-length.safetensors",
                 {"long-length.safetensors", "larger than the file"}},
                {"header length 2^64 - 1",
                 "sensitivity --in huge-length.safetensors",
                 {"huge-length.safetensors", "18446744073709551615"}},
                {"data_offsets past the end",
                 "eval --in offsets-past-end.safetensors",
                 {"offsets-past-end.safetensors", "tensor '2.bias'", "end 99999 is beyond"}},
                {"data_offsets begin > end",
                 "eval --in offsets-reversed.safetensors",
                 {"offsets-reversed.safetensors", "tensor '2.bias'", "begin > end"}},
                {"data_offsets overlap",
                 "pack --in offsets-overlap.safetensors --out keep.safetensors",
                 {"offsets-overlap.safetensors", "'0.bias'", "overlaps tensor '0.weight'"}},
                {"unsupported dtype",
                 "eval --in dtype-f16.safetensors",
                 {"dtype-f16.safetensors", "0.weight", "F16"}},
                {"wrong dtype for a parameter",
                 "eval --in dtype-i32.safetensors",
                 {"dtype-i32.safetensors", "'0.weight' is int32", "needs float32"}},
                {"negative dimension",
                 "eval --in negative-dim.safetensors",
                 {"negative-dim.safetensors", "0.bias", "negative dimension"}},
                {"duplicate tensor name",
                 "eval --in duplicate-name.safetensors",
                 {"duplicate-name.safetensors", "duplicate tensor name '0.bias'"}},
                {"a text file", "eval --in plain.txt", {"plain.txt", "header length"}},
                {"a gzip file", "bench model --in gzip.safetensors", {"gzip.safetensors"}},
            });
}

TEST_CASE("checkpoints that disagree with their spec") {
  Fixture& fx = fixture();
  StFile st = split_st(fx.bytes("good.safetensors"));
  auto edit = [&](const std::string& name, auto change) {
    StFile f = st;
    change(f);
    fx.put(name, join_st(f));
  };
  edit("shape-swapped.safetensors", [](StFile& f) { f.header["0.weight"]["shape"] = {10, 8}; });
  edit("spec-narrower.safetensors",
       [](StFile& f) { f.header["__metadata__"]["spec"] = "linear(4) relu linear(1)"; });
  edit("spec-malformed.safetensors",
       [](StFile& f) { f.header["__metadata__"]["spec"] = "linear(8) wobble"; });
  edit("spec-missing.safetensors", [](StFile& f) { f.header["__metadata__"].erase("spec"); });
  edit("input-shape-bad.safetensors",
       [](StFile& f) { f.header["__metadata__"]["input_shape"] = "0"; });
  edit("format-foreign.safetensors",
       [](StFile& f) { f.header["__metadata__"]["format"] = "pytorch"; });
  // A 1 KB file whose spec asks for 19.6 billion weights: refused on its numbers, before the
  // model allocates them (the case runs under a 2 GB address-space limit).
  edit("spec-huge.safetensors",
       [](StFile& f) { f.header["__metadata__"]["spec"] = "linear(25000000) relu linear(1)"; });
  edit("input-shape-huge.safetensors",
       [](StFile& f) { f.header["__metadata__"]["input_shape"] = "100000,100000,100000"; });
  {
    // Removing or adding a tensor moves the data, so let the library write these.
    sprig::TensorFile t = sprig::load_safetensors((fx.dir / "good.safetensors").string());
    auto without = t.tensors;
    without.erase(std::remove_if(without.begin(), without.end(),
                                 [](const auto& kv) { return kv.first == "2.bias"; }),
                  without.end());
    REQUIRE(without.size() + 1 == t.tensors.size());
    sprig::save_safetensors((fx.dir / "param-missing.safetensors").string(), without, t.metadata);
    auto with = t.tensors;
    with.emplace_back("extra", sprig::Tensor::zeros({1}));
    sprig::save_safetensors((fx.dir / "tensor-extra.safetensors").string(), with, t.metadata);
  }
  StFile pr = split_st(fx.bytes("pruned.safetensors"));
  {
    StFile f = pr;
    f.data[f.header["0.weight.mask"]["data_offsets"][0].get<size_t>()] = 7;
    fx.put("mask-value.safetensors", join_st(f));
    f = pr;
    f.header["__metadata__"]["mask.0.weight"] = "diagonal";
    fx.put("mask-granularity.safetensors", join_st(f));
  }
  check_all(
      "Checkpoints that disagree with their spec",
      {
          {"a tensor's shape edited",
           "eval --in shape-swapped.safetensors",
           {"shape-swapped.safetensors", "'0.weight' is float32 (10, 8)", "needs float32 (8, 10)"}},
          {"the spec edited",
           "summary --in spec-narrower.safetensors",
           {"spec-narrower.safetensors", "'0.weight' is float32 (8, 10)", "needs float32 (4, 10)"}},
          {"malformed spec in the file",
           "eval --in spec-malformed.safetensors",
           {"spec-malformed.safetensors", "wobble"}},
          {"no spec in the file",
           "eval --in spec-missing.safetensors",
           {"spec-missing.safetensors", "'spec'"}},
          {"bad input shape in the file",
           "eval --in input-shape-bad.safetensors",
           {"input-shape-bad.safetensors", "input_shape '0'"}},
          {"a spec far larger than the file's tensors",
           "eval --in spec-huge.safetensors",
           {"spec-huge.safetensors", "linear(25000000)", "the file holds only"}},
          {"a huge input shape in the file",
           "summary --in input-shape-huge.safetensors",
           {"input-shape-huge.safetensors", "values per sample"}},
          {"not a sprig checkpoint",
           "eval --in format-foreign.safetensors",
           {"format-foreign.safetensors", "pytorch"}},
          {"a parameter missing",
           "prune --in param-missing.safetensors --out keep.safetensors",
           {"param-missing.safetensors", "missing tensor '2.bias'"}},
          {"an unexpected tensor",
           "eval --in tensor-extra.safetensors",
           {"tensor-extra.safetensors", "unexpected tensor 'extra'"}},
          {"mask value other than 0 / 1",
           "summary --in mask-value.safetensors",
           {"mask-value.safetensors", "'0.weight.mask' holds 7"}},
          {"unknown mask granularity",
           "eval --in mask-granularity.safetensors",
           {"mask-granularity.safetensors", "diagonal"}},
          {"checkpoint given to run",
           "run --in good.safetensors",
           {"good.safetensors", "sprig-packed-1"}},
          {"packed file given to plan",
           "plan --in packed.safetensors",
           {"packed.safetensors", "sprig-packed-1"}},
          {"model input vs dataset",
           "eval --in good.safetensors --dataset fashion-mnist",
           {"good.safetensors", "(10)", "(1, 28, 28)"}},
      });
}

TEST_CASE("training checkpoints whose train_state was tampered with") {
  Fixture& fx = fixture();
  StFile st = split_st(fx.bytes("good.safetensors"));
  // Each file changes one field of the train_state JSON that --resume reads.
  auto tamper = [&](const std::string& name, auto change) {
    StFile f = st;
    auto state = nlohmann::json::parse(f.header["__metadata__"]["train_state"].get<std::string>());
    change(state);
    f.header["__metadata__"]["train_state"] = state.dump();
    fx.put(name, join_st(f));
  };
  tamper("ts-model.safetensors", [](auto& j) { j["config"]["model"] = "mlp"; });
  tamper("ts-huge.safetensors", [](auto& j) { j["config"]["model"] = "linear(25000000)"; });
  tamper("ts-optimizer.safetensors", [](auto& j) { j["config"]["optimizer"]["name"] = "sgd"; });
  tamper("ts-dataset.safetensors", [](auto& j) { j["config"]["dataset"] = "mnist"; });
  tamper("ts-threads.safetensors", [](auto& j) { j["config"]["threads"] = 100000; });
  tamper("ts-lr.safetensors", [](auto& j) { j["config"]["optimizer"]["lr"] = 1e30; });
  tamper("ts-steps.safetensors", [](auto& j) { j["optimizer_steps"] = 1; });
  check_all(
      "Training checkpoints whose train_state was tampered with",
      {
          {"another model named", "train --resume ts-model.safetensors", {"config.model", "mlp"}},
          {"a model far larger than the file",
           "train --resume ts-huge.safetensors",
           {"config.model", "linear(25000000)"}},
          {"another optimizer named",
           "train --resume ts-optimizer.safetensors",
           {"config.optimizer.name", "sgd"}},
          {"another dataset named",
           "train --resume ts-dataset.safetensors",
           {"config.dataset", "mnist"}},
          {"threads out of range", "train --resume ts-threads.safetensors", {"threads", "100000"}},
          {"a learning rate out of range", "train --resume ts-lr.safetensors", {"lr", "1e+30"}},
          {"a step count that disagrees",
           "train --resume ts-steps.safetensors",
           {"optimizer_steps 1"}},
      });
}

TEST_CASE("NaN and infinity in data and flags") {
  Fixture& fx = fixture();
  StFile st = split_st(fx.bytes("good.safetensors"));
  {
    StFile f = st;
    f.data.replace(offsets(f, "0.weight").first, 4, float_bytes(std::nanf("")));
    fx.put("nan-weight.safetensors", join_st(f));
    f = st;
    f.data.replace(offsets(f, "0.bias").first, 4, float_bytes(-HUGE_VALF));
    fx.put("inf-bias.safetensors", join_st(f));
    StFile pk = split_st(fx.bytes("packed.safetensors"));
    for (auto& [name, entry] : pk.header.items()) {
      if (name == "__metadata__" || entry["dtype"] != "F32") continue;
      pk.data.replace(entry["data_offsets"][0].get<size_t>(), 4, float_bytes(std::nanf("")));
      break;
    }
    fx.put("nan-packed.safetensors", join_st(pk));
    // What a resume or a rewind copies into the weights must be finite too.
    f = st;
    f.data.replace(offsets(f, "optim.0.weight.exp_avg_sq").first, 4, float_bytes(std::nanf("")));
    fx.put("nan-optim.safetensors", join_st(f));
    f = st;
    f.data.replace(offsets(f, "optim.0.weight.exp_avg_sq").first, 4, float_bytes(-1.0f));
    fx.put("negative-moment.safetensors", join_st(f));
    if (!fs::exists(fx.dir / "rewind.safetensors"))
      fx.sh(
          "train --dataset friedman1 --model 'linear(8) relu linear(1)' --epochs 1 "
          "--rewind-step 1 --quiet --out rewind.safetensors");
    StFile rw = split_st(fx.bytes("rewind.safetensors"));
    rw.data.replace(offsets(rw, "rewind/0.weight").first, 4, float_bytes(HUGE_VALF));
    fx.put("inf-rewind.safetensors", join_st(rw));
    // Finite weights whose products overflow float32.
    f = st;
    auto [wb, we] = offsets(f, "0.weight");
    for (size_t o = wb; o < we; o += 4) f.data.replace(o, 4, float_bytes(3e38f));
    fx.put("huge-weight.safetensors", join_st(f));
    sprig::Tensor x = sprig::Tensor::zeros({2, 10});
    x.data()[13] = std::nanf("");
    sprig::save_safetensors((fx.dir / "nan-input.safetensors").string(), {{"input", x}});
    sprig::save_safetensors((fx.dir / "ones-input.safetensors").string(),
                            {{"input", sprig::Tensor::full({2, 10}, 1.0f)}});
  }
  const std::string tiny = "--dataset friedman1 --model 'linear(4) relu linear(1)' --epochs 1 ";
  check_all(
      "NaN and infinity in data and flags",
      {
          {"NaN weight",
           "eval --in nan-weight.safetensors",
           {"nan-weight.safetensors", "'0.weight' holds nan at element 0"}},
          {"-inf bias",
           "prune --in inf-bias.safetensors --out keep.safetensors",
           {"inf-bias.safetensors", "'0.bias' holds -inf at element 0"}},
          {"NaN in a packed file",
           "run --in nan-packed.safetensors",
           {"nan-packed.safetensors", "holds nan"}},
          {"NaN in Adam's second moment",
           "train --resume nan-optim.safetensors --epochs 2",
           {"nan-optim.safetensors", "'optim.0.weight.exp_avg_sq' holds nan at element 0",
            "optimizer state must be finite"}},
          {"negative Adam second moment",
           "train --resume negative-moment.safetensors --epochs 2",
           {"'optim.0.weight.exp_avg_sq' holds -1 at element 0", "never negative"}},
          {"inf in a rewind snapshot",
           "prune --in inf-rewind.safetensors --rewind 1 --out keep.safetensors",
           {"'rewind/0.weight' holds inf", "rewind weights must be finite"}},
          {"outputs overflow float32",
           "eval --in huge-weight.safetensors",
           {"the loss is", "outputs are not finite"}},
          {"predict on a NaN input",
           "predict --in good.safetensors --input nan-input.safetensors --out keep.safetensors",
           {"'input' in nan-input.safetensors holds nan at element 13 (sample 1)"}},
          {"predict whose outputs overflow",
           "predict --in huge-weight.safetensors --input ones-input.safetensors --out "
           "keep.safetensors",
           {"the output of sample 0 is", "overflow float32", "nothing was written"}},
          {"training diverges",
           "train --dataset friedman1 --model 'linear(64) relu linear(1)' --optimizer sgd "
           "--lr 1000 --epochs 2 --quiet --out keep.safetensors",
           {"diverged", "loss is", "epoch 1", "step", "--lr"}},
          {"--lr nan", "train " + tiny + "--lr nan", {"--lr", "nan"}},
          {"--lr inf", "prune --in good.safetensors --lr inf", {"--lr", "inf"}},
          {"--momentum nan",
           "train " + tiny + "--optimizer sgd --momentum nan",
           {"--momentum", "nan"}},
          {"--weight-decay -inf", "train " + tiny + "--weight-decay -inf", {"--weight-decay"}},
          {"--amount inf", "prune --in good.safetensors --amount inf", {"--amount", "inf"}},
          {"--amount nan", "prune --in good.safetensors --amount nan", {"--amount", "nan"}},
          {"--threshold nan",
           "prune --in good.safetensors --threshold nan",
           {"--threshold", "nan"}},
          {"--amounts with nan",
           "sensitivity --in good.safetensors --amounts 0.5,nan",
           {"--amounts", "nan"}},
          {"--sparsity nan", "bench linear --in 8 --out 8 --sparsity nan", {"--sparsity", "nan"}},
      });
}

TEST_CASE("foreign weights (a PyTorch state_dict) and BatchNorm statistics") {
  Fixture& fx = fixture();
  const std::string spec = "linear(8) bn relu linear(1)";
  fx.sh("train --dataset friedman1 --model '" + spec + "' --epochs 1 --quiet --out bn.safetensors");
  sprig::TensorFile bn = sprig::load_safetensors((fx.dir / "bn.safetensors").string());
  // A state_dict as PyTorch saves it: parameters and buffers by name, no sprig metadata.
  std::vector<std::pair<std::string, sprig::Tensor>> sd;
  for (auto& [name, t] : bn.tensors)
    if (name.rfind("optim.", 0) != 0) sd.push_back({name, t});
  auto save = [&](const std::string& file, std::vector<std::pair<std::string, sprig::Tensor>> t) {
    sprig::save_safetensors((fx.dir / file).string(), t);
  };
  auto edited = [&](auto change) {
    auto t = sd;
    change(t);
    return t;
  };
  auto tensor = [](std::vector<std::pair<std::string, sprig::Tensor>>& t,
                   const std::string& name) -> sprig::Tensor& {
    for (auto& kv : t)
      if (kv.first == name) return kv.second;
    FAIL("no tensor ", name);
    return t.front().second;
  };
  save("sd-no-var.safetensors", edited([](auto& t) {
         t.erase(std::remove_if(t.begin(), t.end(),
                                [](const auto& kv) { return kv.first == "1.running_var"; }),
                 t.end());
       }));
  save("sd-extra.safetensors", edited([](auto& t) {
         t.push_back({"classifier.weight", sprig::Tensor::zeros({1, 8})});
       }));
  save("sd-short-mean.safetensors",
       edited([&](auto& t) { tensor(t, "1.running_mean") = sprig::Tensor::zeros({4}); }));
  save("sd-nan-var.safetensors", edited([&](auto& t) {
         std::vector<float> v = tensor(t, "1.running_var").to_vector();
         v[2] = std::nanf("");
         tensor(t, "1.running_var") = sprig::Tensor::from_vector(v, {8});
       }));
  // PyTorch's num_batches_tracked (int64, shape ()) beside a layer that is not a BatchNorm.
  {
    sprig::save_safetensors((fx.dir / "sd-plain.safetensors").string(), sd);
    StFile f = split_st(fx.bytes("sd-plain.safetensors"));
    const size_t at = f.data.size();
    f.header["0.num_batches_tracked"] = {
        {"dtype", "I64"}, {"shape", Json::array()}, {"data_offsets", {at, at + 8}}};
    f.data += std::string(8, '\0');
    fx.put("sd-counter.safetensors", join_st(f));
    fs::remove(fx.dir / "sd-plain.safetensors");
  }
  // A sprig checkpoint whose running_var holds a NaN.
  {
    StFile f = split_st(fx.bytes("bn.safetensors"));
    f.data.replace(offsets(f, "1.running_var").first + 4, 4, float_bytes(std::nanf("")));
    fx.put("bn-nan-var.safetensors", join_st(f));
  }
  sprig::save_safetensors((fx.dir / "x10.safetensors").string(),
                          {{"input", sprig::Tensor::zeros({3, 10})}});
  const std::string model = " --model '" + spec + "' --input-shape 10 --input x10.safetensors";
  check_all("Foreign weights and BatchNorm statistics",
            {
                {"a state_dict without a running_var",
                 "predict --in sd-no-var.safetensors" + model + " --out keep.safetensors",
                 {"sd-no-var.safetensors", "lacks 1 tensor", "'1.running_var' (8)"}},
                {"a state_dict with an extra tensor",
                 "predict --in sd-extra.safetensors" + model + " --out keep.safetensors",
                 {"sd-extra.safetensors", "'classifier.weight' (1, 8)"}},
                {"a running_mean of the wrong shape",
                 "predict --in sd-short-mean.safetensors" + model + " --out keep.safetensors",
                 {"'1.running_mean'", "float32 (4)", "needs float32 (8)"}},
                {"NaN in a state_dict's running_var",
                 "predict --in sd-nan-var.safetensors" + model + " --out keep.safetensors",
                 {"'1.running_var'", "holds nan at element 2"}},
                {"num_batches_tracked without a BatchNorm",
                 "predict --in sd-counter.safetensors" + model + " --out keep.safetensors",
                 {"'0.num_batches_tracked' ()", "not parameters or buffers"}},
                {"NaN in a checkpoint's running_var (export)",
                 "export bn-nan-var.safetensors --no-fold-bn --out keep.safetensors",
                 {"bn-nan-var.safetensors", "'1.running_var' holds nan at element 1"}},
            });
}

TEST_CASE("values out of range, unknown names, malformed specs") {
  const std::string f1 = "--dataset friedman1 --epochs 1 ";
  check_all(
      "Values out of range, unknown names, malformed specs",
      {
          {"--amount above 1", "prune --in good.safetensors --amount 1.5", {"--amount", "1.5"}},
          {"--amount below 0", "prune --in good.safetensors --amount -0.1", {"--amount", "-0.1"}},
          {"--amounts above 1",
           "sensitivity --in good.safetensors --amounts 0.5,1.5",
           {"--amounts", "1.5"}},
          {"unknown method", "prune --in good.safetensors --method foo", {"--method", "foo"}},
          {"unknown granularity", "prune --in good.safetensors --granularity foo", {"'foo'"}},
          {"bad N:M", "prune --in good.safetensors --granularity 5:4", {"5:4"}},
          {"unknown scope", "prune --in good.safetensors --scope foo", {"--scope", "foo"}},
          {"unknown schedule", "prune --in good.safetensors --schedule foo", {"'foo'"}},
          {"iterative with 0 steps",
           "prune --in good.safetensors --schedule iterative:0",
           {"iterative:0"}},
          {"unknown granularity (sensitivity)",
           "sensitivity --in good.safetensors --granularity x",
           {"'x'"}},
          {"unknown weight", "prune --in good.safetensors --layers 9.weight", {"9.weight"}},
          {"unknown model name", "train " + f1 + "--model resnet50", {"resnet50"}},
          {"unknown optimizer", "train " + f1 + "--optimizer rmsprop", {"rmsprop"}},
          {"unknown lr schedule",
           "train " + f1 + "--lr-schedule exponential",
           {"--lr-schedule", "exponential"}},
          {"unknown dataset", "train --dataset cifar", {"cifar"}},
          {"unknown command", "frobnicate", {"frobnicate"}},
          {"unknown benchmark", "bench foo", {"bench", "'foo'"}},
          {"unknown pack format",
           "pack --in pruned.safetensors --out keep.safetensors --format x",
           {"--format", "x"}},
          {"unknown calibration",
           "quantize --in pruned.safetensors --out keep.safetensors --calibration kl",
           {"--calibration", "kl"}},
          {"quantize to int8 blocks no kernel has",
           "quantize --in pruned.safetensors --out keep.safetensors --format bsr --block 2x4",
           {"--block", "2x4"}},
          {"quantize on no calibration samples",
           "quantize --in pruned.safetensors --out keep.safetensors --calibrate 0",
           {"--calibrate", "0"}},
          {"spec: unclosed (", "train " + f1 + "--model 'linear(8'", {"linear(8", "missing ')'"}},
          {"spec: stray )", "train " + f1 + "--model 'linear(8)) linear(1)'", {"unexpected ')'"}},
          {"spec: trailing comma",
           "train " + f1 + "--model 'linear(8,)'",
           {"linear(8,)", "after ','"}},
          {"spec: not an integer", "train " + f1 + "--model 'linear(1e9)'", {"linear(1e9)"}},
          {"spec: integer too large",
           "train " + f1 + "--model 'linear(99999999999999999999)'",
           {"too large"}},
          {"spec: bias=2", "train " + f1 + "--model 'linear(8,bias=2)'", {"bias", "2"}},
          {"spec: unknown argument", "train " + f1 + "--model 'linear(8,foo=1)'", {"foo"}},
          {"spec: empty", "train " + f1 + "--model ''", {"empty"}},
          {"zero-size linear", "train " + f1 + "--model 'linear(0)'", {"linear(0)", "out=0"}},
          {"zero-size conv", "summary --model 'conv(0,3)'", {"conv(0,3)", "out=0"}},
          {"zero-size kernel", "summary --model 'conv(8,0)'", {"conv(8,0)", "kernel=0"}},
          {"zero-size pool", "summary --model 'flatten maxpool(0)'", {"maxpool(0)"}},
          {"kernel larger than the input", "summary --model 'conv(8,30)'", {"conv(8,30)"}},
          {"zero in --input-shape",
           "summary --model mlp --input-shape 0,28,28",
           {"--input-shape", "0,28,28"}},
          {"train batch size 0", "train " + f1 + "--batch-size 0", {"--batch-size", "0"}},
          {"--sync-bn without mpirun", "train " + f1 + "--sync-bn", {"--sync-bn", "mpirun -np N"}},
          {"--check-replicas without mpirun",
           "train " + f1 + "--check-replicas",
           {"--check-replicas", "mpirun -np N"}},
          {"eval batch size 0", "eval --in good.safetensors --batch-size 0", {"--batch-size"}},
          {"run batch size 0", "run --in packed.safetensors --batch-size 0", {"--batch-size"}},
          {"plan batch 0", "plan --in pruned.safetensors --batch 0", {"--batch", "0"}},
          {"threads -1", "train " + f1 + "--threads -1", {"--threads", "-1"}},
          {"threads 5000", "eval --in good.safetensors --threads 5000", {"--threads", "5000"}},
          {"negative epochs", "train --epochs -1", {"--epochs", "-1"}},
          {"no training samples",
           "train " + f1 + "--model 'linear(1)' --limit-train 0",
           {"--limit-train 0"}},
          {"gemm size 0", "bench gemm --m 0", {"--m", "0"}},
          {"conv size 0", "bench conv --c 0", {"--c", "0"}},
          {"conv without output", "bench conv --h 2 --w 2 --pad 0", {"3x3", "no output"}},
          {"conv sparsity past 1", "bench conv --sparsity 1.5", {"--sparsity", "1.5"}},
          {"conv int8 and sparsity together",
           "bench conv --int8 --sparsity 0.5",
           {"--int8", "--sparsity", "separate modes"}},
          {"conv direct on a pointwise convolution",
           "bench conv --direct --r 1 --pad 0",
           {"--direct", "1x1 stride 1 pad 0", "a 1x1 kernel is a plain gemm"}},
          {"limit-test 0", "train " + f1 + "--limit-test 0", {"--limit-test", "0"}},
          {"bad --nm", "bench linear --in 8 --out 8 --format nm --nm 5:4", {"5:4"}},
          {"bad --block", "bench linear --in 8 --out 8 --format bsr --block 0x4", {"--block"}},
          {"negative seed", "train " + f1 + "--seed -1", {"--seed", "-1", "is not a seed"}},
          {"seed in float notation",
           "prune --in good.safetensors --seed 1e23",
           {"--seed", "1e23", "is not a seed"}},
          {"seed past 2^64", "train " + f1 + "--seed 18446744073709551616", {"is not a seed"}},
          {"--amount and --count both",
           "prune --in good.safetensors --amount 0.5 --count 3",
           {"excludes"}},
          {"a fractional epoch count",
           "train --dataset friedman1 --epochs 1.5",
           {"--epochs", "1.5", "is not a whole number"}},
          {"an empty --out", "train " + f1 + "--out ''", {"--out", "an empty path"}},
          {"an empty --in", "eval --in ''", {"--in", "an empty path"}},
          {"an unknown pack format in the pipeline",
           "experiment pipeline --pack-format sparse",
           {"--pack-format", "sparse"}},
          {"eval on no test samples",
           "eval --in good.safetensors --limit-test 0",
           {"--limit-test", "0"}},
          {"prune evaluating no test samples",
           "prune --in good.safetensors --amount 0.5 --limit-test 0",
           {"--limit-test", "0"}},
          {"run on no test samples",
           "run --in packed.safetensors --limit-test 0",
           {"--limit-test"}},
          {"conv padding wider than any input",
           "summary --model 'conv(8,3,pad=100000) flatten linear(10)'",
           {"conv", "values per sample"}},
          {"a spec whose weights overflow",
           "summary --model 'flatten linear(999999999999) linear(999999999999)'",
           {"sprig allows at most"}},
          {"a non-ASCII character in a spec",
           "train " + f1 + "--model 'linear(8) r\xC3\xA9lu'",
           {"unexpected '\xC3\xA9'"}},
          {"a byte that is not UTF-8 in a spec",
           "train " + f1 + "--model \"$(printf 'linear(8) r\\351lu')\"",
           {"unexpected '\\xe9'"}},
      });
}

TEST_CASE("CIFAR-10 files that are missing or damaged") {
  Fixture& fx = fixture();
  // Small directories in the real format: one 3073-byte record per file (label, then R, G, B).
  std::string record(3073, '\x40');
  record[0] = 3;
  auto cifar_dir = [&](const std::string& name) {
    fs::create_directories(fx.dir / name);
    for (int i = 1; i <= 5; ++i) fx.put(name + "/data_batch_" + std::to_string(i) + ".bin", record);
    fx.put(name + "/test_batch.bin", record);
  };
  cifar_dir("cifar-ok");
  cifar_dir("cifar-cut");
  fx.put("cifar-cut/data_batch_2.bin", record + record.substr(0, 10));
  cifar_dir("cifar-empty");
  fx.put("cifar-empty/test_batch.bin", "");
  cifar_dir("cifar-label");
  std::string bad = record + record;
  bad[3073] = 10;
  fx.put("cifar-label/data_batch_4.bin", bad);
  cifar_dir("cifar-partial");
  fs::remove(fx.dir / "cifar-partial" / "data_batch_5.bin");
  fs::remove(fx.dir / "cifar-partial" / "test_batch.bin");
  const std::string train = "train --dataset cifar10 --epochs 1 --data-dir ";
  check_all(
      "CIFAR-10 files",
      {
          {"no CIFAR-10 in the default directory",
           "train --dataset cifar10 --epochs 1",
           {"/usr/share/datasets/cifar-10-batches-bin", "data_batch_1.bin", "--data-dir"}},
          {"a directory without the files",
           train + "adir",
           {"adir lacks data_batch_1.bin, data_batch_2.bin", "test_batch.bin"}},
          {"two files missing",
           train + "cifar-partial",
           {"cifar-partial lacks data_batch_5.bin, test_batch.bin"}},
          {"a truncated file",
           train + "cifar-cut",
           {"cifar-cut/data_batch_2.bin", "3083 bytes", "3073-byte",
            "record 1 starts at byte 3073"}},
          {"an empty file", train + "cifar-empty", {"cifar-empty/test_batch.bin", "empty file"}},
          {"a label above 9",
           train + "cifar-label",
           {"cifar-label/data_batch_4.bin", "record 1 (byte offset 3073)", "label 10"}},
          {"a model for other inputs",
           "eval --in good.safetensors --dataset cifar10 --data-dir cifar-ok",
           {"good.safetensors", "(10)", "(3, 32, 32)"}},
      });
}

TEST_CASE("training-recipe flags out of range or inconsistent") {
  const std::string f1 = "--dataset friedman1 --epochs 1 ";
  check_all(
      "Training-recipe flags",
      {
          {"step schedule without a step size",
           "train " + f1 + "--lr-schedule step",
           {"--lr-schedule step needs --lr-step-size"}},
          {"step size 0",
           "train " + f1 + "--lr-schedule step --lr-step-size 0",
           {"--lr-step-size", "0"}},
          {"multistep without milestones",
           "train " + f1 + "--lr-schedule multistep",
           {"needs --lr-milestones"}},
          {"milestones not increasing",
           "train " + f1 + "--lr-schedule multistep --lr-milestones 5,3",
           {"--lr-milestones", "strictly increasing", "5,3"}},
          {"a negative milestone",
           "train " + f1 + "--lr-schedule multistep --lr-milestones=-2,3",
           {"--lr-milestones", "-2,3"}},
          {"a milestone that is no number",
           "train " + f1 + "--lr-schedule multistep --lr-milestones 5,x",
           {"--lr-milestones"}},
          {"milestones without multistep",
           "train " + f1 + "--lr-schedule cosine --lr-milestones 5",
           {"--lr-milestones applies to --lr-schedule multistep"}},
          {"gamma 0",
           "train " + f1 + "--lr-schedule step --lr-step-size 1 --lr-gamma 0",
           {"--lr-gamma must be > 0, got 0"}},
          {"gamma negative",
           "train " + f1 + "--lr-schedule step --lr-step-size 1 --lr-gamma=-0.5",
           {"--lr-gamma must be > 0, got -0.5"}},
          {"gamma NaN",
           "train " + f1 + "--lr-schedule step --lr-step-size 1 --lr-gamma nan",
           {"--lr-gamma", "nan"}},
          {"gamma without step or multistep",
           "train " + f1 + "--lr-gamma 0.5",
           {"--lr-gamma applies to"}},
          {"negative warm-up", "train " + f1 + "--warmup-epochs=-1", {"--warmup-epochs", "-1"}},
          {"warm-up longer than training",
           "train " + f1 + "--warmup-epochs 2",
           {"--warmup-epochs 2 is longer than the 1 epochs"}},
          {"warm-up longer than fine-tuning",
           "prune --in good.safetensors --finetune-epochs 1 --warmup-epochs 3",
           {"--warmup-epochs 3 is longer than the 1 epochs"}},
          {"augmenting data that are not images",
           "train " + f1 + "--augment",
           {"--augment needs image data", "friedman1"}},
          {"augmenting fine-tuning on data that are not images",
           "prune --in good.safetensors --finetune-epochs 1 --augment",
           {"--augment", "friedman1"}},
          {"--bn-l1 on a model without BatchNorm",
           "train " + f1 + "--model 'linear(1)' --bn-l1 1e-4",
           {"--bn-l1", "no BatchNorm"}},
          {"--bn-l1 negative", "train " + f1 + "--bn-l1=-1e-4", {"--bn-l1"}},
          {"--bn-l1 NaN", "train " + f1 + "--bn-l1 nan", {"--bn-l1", "nan"}},
      });
}

TEST_CASE("devices that are unknown or not usable here") {
  std::vector<Case> cases = {
      {"unknown device", "train --dataset friedman1 --epochs 1 --device tpu", {"--device", "tpu"}},
      {"negative device index", "eval --in good.safetensors --device cuda:-1", {"cuda:-1"}},
      {"a device index past int",
       "eval --in good.safetensors --device cuda:4294967296",
       {"cuda:4294967296", "out of range"}},
  };
  std::string why;
  if (!sprig::cuda_available(&why)) {  // CPU-only builds and machines without a GPU
    for (const char* cmd : {"train --dataset friedman1 --epochs 1", "eval --in good.safetensors",
                            "prune --in good.safetensors"})
      cases.push_back({std::string(cmd).substr(0, std::string(cmd).find(' ')) + " on no GPU",
                       std::string(cmd) + " --device cuda",
                       {"--device cuda", "CUDA is not available"}});
  } else {
    cases.push_back({"device index past the last GPU",
                     "eval --in good.safetensors --device cuda:63",
                     {"cuda:63", "does not exist"}});
  }
  check_all("Devices", cases);
}

TEST_CASE("environment settings out of range") {
  // A product big enough for the threads: the pool reads SPRIG_SPIN_US before its first worker.
  const std::string gemm = "bench gemm --m 256 --n 256 --k 256 --threads 2 --repeats 1";
  check_all(
      "Environment",
      {{"SPRIG_SPIN_US not a number",
        gemm,
        {"SPRIG_SPIN_US='abc'", "microseconds"},
        "export SPRIG_SPIN_US=abc; "},
       {"SPRIG_SPIN_US negative", gemm, {"SPRIG_SPIN_US='-5'"}, "export SPRIG_SPIN_US=-5; "},
       {"SPRIG_SPIN_US with a unit", gemm, {"SPRIG_SPIN_US='20ms'"}, "export SPRIG_SPIN_US=20ms; "},
       {"SPRIG_SPIN_US past 10 s",
        gemm,
        {"SPRIG_SPIN_US='10000001'", "10000000"},
        "export SPRIG_SPIN_US=10000001; "},
       {"SPRIG_GEMM_ISA unknown",
        gemm,
        {"SPRIG_GEMM_ISA=sse9", "generic, avx2, avx512"},
        "export SPRIG_GEMM_ISA=sse9; "}});
}

TEST_CASE("an --out that is an input, a FIFO or a directory is refused before any work") {
  Fixture& fx = fixture();
  // A FIFO stands in for a device (mknod needs root): replacing it would turn it into a file.
  if (!fs::exists(fx.dir / "afifo")) REQUIRE(::mkfifo((fx.dir / "afifo").c_str(), 0644) == 0);
  if (!fs::exists(fx.dir / "fifo-link")) fs::create_symlink("afifo", fx.dir / "fifo-link");
  if (!fs::exists(fx.dir / "good-link"))
    fs::create_symlink("good.safetensors", fx.dir / "good-link");
  if (!fs::exists(fx.dir / "good-hard"))
    fs::create_hard_link(fx.dir / "good.safetensors", fx.dir / "good-hard");
  check_all("Outputs that would destroy something",
            {
                {"prune --out equal to --in",
                 "prune --in good.safetensors --out good.safetensors",
                 {"--out 'good.safetensors' is the same file as --in 'good.safetensors'",
                  "would destroy the input"}},
                {"prune --out spelled differently",
                 "prune --in good.safetensors --out ./good.safetensors",
                 {"is the same file as --in"}},
                {"prune --out a symlink to --in",
                 "prune --in good.safetensors --out good-link",
                 {"--out 'good-link' is the same file as --in"}},
                {"prune --out a hard link to --in",
                 "prune --in good.safetensors --out good-hard",
                 {"--out 'good-hard' is the same file as --in"}},
                {"export --out equal to --in",
                 "export --in good.safetensors --out good.safetensors",
                 {"is the same file as --in"}},
                {"predict --out equal to --input",
                 "predict --in good.safetensors --input keep.safetensors --out keep.safetensors",
                 {"--out 'keep.safetensors' is the same file as --input"}},
                {"predict --out equal to --in",
                 "predict --in good.safetensors --input keep.safetensors --out good.safetensors",
                 {"is the same file as --in"}},
                {"pack --out equal to --in",
                 "pack --in pruned.safetensors --out pruned.safetensors",
                 {"is the same file as --in"}},
                {"quantize --out equal to --in",
                 "quantize --in pruned.safetensors --out pruned.safetensors",
                 {"is the same file as --in"}},
                {"prune --out a FIFO",
                 "prune --in good.safetensors --quiet --out afifo",
                 {"--out 'afifo' exists and is a FIFO", "refusing to replace it"}},
                {"prune --out a symlink to a FIFO",
                 "prune --in good.safetensors --quiet --out fifo-link",
                 {"--out 'fifo-link' exists and is a FIFO"}},
                {"export --out a directory",
                 "export --in good.safetensors --out adir",
                 {"--out 'adir' exists and is a directory"}},
                {"train --out a FIFO",
                 "train --dataset friedman1 --model 'linear(1)' --epochs 1 --out afifo",
                 {"--out 'afifo' exists and is a FIFO"}},
            });
  CHECK(fs::is_fifo(fx.dir / "afifo"));
}

TEST_CASE("a full disk while saving leaves the existing file alone") {
  // ulimit -f counts 512-byte blocks in dash: past 8 KB write() fails with EFBIG (sprig
  // ignores SIGXFSZ, which would otherwise kill it mid-write).
  const std::string limit = "ulimit -f 16; ";
  check_all("A full disk while saving",
            {
                {"train past the file-size limit",
                 "train --dataset friedman1 --model 'linear(300) relu linear(1)' --epochs 1 "
                 "--quiet --out keep.safetensors",
                 {"keep.safetensors", "File too large"},
                 limit},
                {"prune past the file-size limit",
                 "prune --in big.safetensors --quiet --out keep.safetensors",
                 {"keep.safetensors", "File too large"},
                 limit},
                {"pack past the file-size limit",
                 "pack --in big.safetensors --repeats 1 --out keep.safetensors",
                 {"keep.safetensors", "File too large"},
                 limit},
            });

  // A real ENOSPC needs a small filesystem: a 16 KB tmpfs in a private mount namespace, where
  // unprivileged user namespaces allow it (skipped elsewhere).
  Fixture& fx = fixture();
  const std::string d = "'" + fx.dir.string() + "'";
  fs::path mnt = fx.dir / "tiny-fs";
  fs::create_directories(mnt);
  Outcome probe =
      run_shell("unshare -rm sh -c 'mount -t tmpfs -o size=16k tmpfs " + d + "/tiny-fs' 2>&1");
  if (probe.code != 0) {
    MESSAGE("no tmpfs in a user namespace here, ENOSPC case skipped: " << probe.out);
    fs::remove(mnt);
    return;
  }
  Outcome o = run_shell(
      "cd " + d +
      " && unshare -rm sh -c '"
      "mount -t tmpfs -o size=16k tmpfs tiny-fs && cp good.safetensors tiny-fs/keep.safetensors "
      "&& { " +
      std::string(SPRIG_BINARY) +
      " train --dataset friedman1 --model \"linear(300) relu linear(1)\" --epochs 1 --quiet "
      "--out tiny-fs/keep.safetensors >/dev/null; echo \"exit=$?\"; "
      "cmp -s good.safetensors tiny-fs/keep.safetensors && echo unchanged; "
      "echo \"left: $(ls -A tiny-fs | tr \"\\n\" \" \")\"; }'");
  fs::remove(mnt);
  CHECK(o.signal == 0);
  CHECK_MESSAGE(o.out.find("exit=1\n") != std::string::npos, o.out);
  CHECK_MESSAGE(o.out.find("unchanged\n") != std::string::npos, o.out);
  CHECK_MESSAGE(o.out.find("left: keep.safetensors \n") != std::string::npos, o.out);
  CHECK(sprig::testing::count_lines(o.err) == 1);
  CHECK(o.err.rfind("sprig: error: ", 0) == 0);
  CHECK(o.err.find("tiny-fs/keep.safetensors") != std::string::npos);
  CHECK_MESSAGE(o.err.find("No space left on device") != std::string::npos, o.err);
  std::string message = std::regex_replace(o.err.substr(0, o.err.find('\n')),
                                           std::regex(R"(\.tmp\.[0-9]+)"), ".tmp.<pid>");
  rows().push_back({"A full disk while saving", "train onto a full 16 KB tmpfs",
                    "sprig train ... --out tiny-fs/keep.safetensors (16 KB tmpfs, unshare -rm)",
                    message, 1});
}
