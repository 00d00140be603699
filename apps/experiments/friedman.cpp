// sprig experiment friedman (seed 004): a Friedman #1 regression MLP trained three ways with
// early stopping -- unpruned, every Dense kernel pruned, only the first Dense kernel pruned --
// the pruned ones gradually during training with TF-MOT's PolynomialDecay schedule. Reports
// test MSE and the model's size as float32 parameters, gzipped dense file and packed sparse file.
//
// As in the seed (Keras, tfmot.sparsity.keras.prune_low_magnitude): Dense(128, relu) ->
// Dense(1, relu), Adam lr 1e-3, MSE loss, batch 32, validation = the last fraction of the
// training set (Keras' validation_split), EarlyStopping(monitor='val_loss') with its patience.
// Pruning is per layer on the kernels only (biases stay dense), masks updated every `frequency`
// optimizer steps from begin_step to end_step.
//
// Two deliberate differences, both stated in the report: for pruned variants the epochs before
// the schedule's last pruning step neither count as the best epoch nor use up patience (else
// early stopping can end training before the target sparsity is reached, or compare losses of
// different sparsities), and the best epoch's weights are restored (Keras keeps the last weights
// unless restore_best_weights; --no-restore-best does that).
#include "datasets/friedman.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "apps/experiments/experiment.h"
#include "apps/experiments/sweep.h"
#include "datasets/dataloader.h"
#include "kernels/error.h"
#include "infer/pack.h"
#include "prune/prune.h"
#include "prune/schedule.h"
#include "train/trainer.h"

namespace sprig::app::experiments {

namespace {

namespace fs = std::filesystem;

enum Variant { Unpruned = 0, Whole = 1, FirstLayer = 2 };
const char* const kVariantNames[3] = {"unpruned", "whole model pruned", "first Dense layer pruned"};
const char* const kVariantKeys[3] = {"unpruned", "whole", "first_layer"};
const char* const kShortNames[3] = {"unpruned", "whole model", "first layer"};  // chart legends
// What seed 004 printed (Keras + TF-MOT, its own random data): test MSE per variant. Its whole
// model run used ConstantSparsity(0.5) rather than PolynomialDecay.
const double kSeedMse[3] = {0.0201, 0.1830, 0.1388};

struct FriedmanArgs {
  CommonFlags common;
  std::string spec = "linear(128) relu linear(1) relu", pack_format = "smallest";
  int64_t samples = 10000, batch_size = 32;
  double test_fraction = 0.33, noise = 0.0;
  // Per variant (unpruned, whole, first layer), as the seed ran them; one value = all three.
  std::vector<int> epochs{300, 100, 300}, patience{30, 10, 10};
  std::vector<double> validation_split{0.2, 0.2, 0.1};
  prune::PolynomialDecay agp{0.2, 0.8, 1000, 2000, 100, 3.0};
  train::OptimizerConfig optim{"adam", 1e-3f};
  bool restore_best = true;
};

struct EpochRow {
  int epoch = 0;
  double train_mse = 0.0, val_mse = 0.0, sparsity = 0.0;  // sparsity of the pruned kernels
};

struct Outcome {
  Variant variant = Unpruned;
  std::vector<std::string> pruned;  // weight names
  std::vector<EpochRow> rows;
  int best_epoch = 0;
  bool stopped_early = false;
  double test_mse = 0.0, packed_test_mse = 0.0, pruned_sparsity = 0.0, model_sparsity = 0.0;
  infer::SizeReport size;
  std::string formats;  // packed format per layer
  double seconds = 0.0;
};

std::vector<int> per_variant(const std::string& flag, const std::vector<int>& v) {
  SPRIG_CHECK(v.size() == 1 || v.size() == 3, flag,
              " takes one value or three (unpruned, whole, first layer), got ", v.size());
  return v.size() == 3 ? v : std::vector<int>(3, v[0]);
}
std::vector<double> per_variant(const std::string& flag, const std::vector<double>& v) {
  SPRIG_CHECK(v.size() == 1 || v.size() == 3, flag,
              " takes one value or three (unpruned, whole, first layer), got ", v.size());
  return v.size() == 3 ? v : std::vector<double>(3, v[0]);
}

// Fraction of zeros over the named weights.
double sparsity_of(const nn::Model& m, const std::vector<std::string>& names) {
  int64_t total = 0, nonzero = 0;
  for (auto& [name, p] : m.named_parameters())
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      total += p->numel();
      nonzero += p->count_nonzero();
    }
  return total ? 1.0 - double(nonzero) / double(total) : 0.0;
}

// Keras' validation_split: the last fraction of the samples, before any shuffling.
std::pair<data::Dataset, data::Dataset> split_validation(const data::Dataset& ds, double v) {
  int64_t n = ds.size(), keep = int64_t(double(n) * (1.0 - v));
  SPRIG_CHECK(keep > 0 && keep < n, "--validation-split ", v, " leaves no training or no ",
              "validation samples out of ", n);
  std::vector<int64_t> a, b;
  for (int64_t i = 0; i < n; ++i) (i < keep ? a : b).push_back(i);
  return {data::subset(ds, a), data::subset(ds, b)};
}

// The packed model whose file size is reported. "smallest" keeps, per layer, whichever of dense
// and CSR stores the weight in fewer bytes (CSR costs more than dense below about half
// sparsity); the other formats are pack_model's.
infer::InferenceModel pack_for_size(const nn::Model& m, const std::string& format, uint64_t seed) {
  infer::PackOptions po;
  po.seed = seed;
  if (format != "smallest") {
    po.format = infer::parse_pack_format(format);
    return infer::pack_model(m, po);
  }
  po.format = infer::PackFormat::Csr;
  infer::InferenceModel packed = infer::pack_model(m, po);
  po.format = infer::PackFormat::Dense;
  infer::InferenceModel dense = infer::pack_model(m, po);
  SPRIG_CHECK(dense.layers.size() == packed.layers.size(), "packing '", m.spec,
              "': dense and csr plans differ in their layers");
  for (size_t i = 0; i < packed.layers.size(); ++i) {
    infer::PackedLayer& l = packed.layers[i];
    const infer::PackedLayer& d = dense.layers[i];
    SPRIG_CHECK(d.index == l.index && d.rows == l.rows && d.cols == l.cols, "packing '", m.spec,
                "': dense and csr plans differ at layer ", l.name);
    if (d.weight_bytes() <= l.weight_bytes()) {
      nn::Module* own = l.module;  // d's module lives in the dense model, not in this one
      l = d;
      l.module = own;
      l.reason = "dense: fewer bytes than csr";
    }
  }
  return packed;
}

// The last step at which the schedule changes the masks (TF-MOT skips end_step itself when
// end - begin is not a multiple of the frequency).
int64_t last_prune_step(const prune::PolynomialDecay& agp) {
  return agp.begin_step + (agp.end_step - agp.begin_step) / agp.frequency * agp.frequency;
}

// Checks the flags that only make sense together, naming the flags, before anything is written.
void check_flags(const FriedmanArgs& a, const data::Dataset& train_all) {
  const prune::PolynomialDecay& agp = a.agp;
  SPRIG_CHECK(agp.final_sparsity >= agp.initial_sparsity, "--final-sparsity ", agp.final_sparsity,
              " is below --initial-sparsity ", agp.initial_sparsity);
  SPRIG_CHECK(agp.end_step > agp.begin_step, "--end-step ", agp.end_step,
              " must be after --begin-step ", agp.begin_step);
  agp.validate();
  auto epochs = per_variant("--epochs", a.epochs);
  per_variant("--patience", a.patience);
  auto vsplit = per_variant("--validation-split", a.validation_split);
  for (Variant v : {Whole, FirstLayer}) {
    auto [train, val] = split_validation(train_all, vsplit[v]);
    int64_t batches = int64_t(data::DataLoader(train, a.batch_size).num_batches());
    int64_t total = int64_t(epochs[v]) * batches;
    SPRIG_CHECK(last_prune_step(agp) <= total, "--end-step ", agp.end_step,
                ": the schedule's last pruning step ", last_prune_step(agp), " is beyond the ",
                total, " training steps of the ", kVariantNames[v], " variant (", epochs[v],
                " epochs x ", batches, " batches); lower --end-step or raise --epochs");
  }
}

Outcome train_variant(const FriedmanArgs& a, Variant v, const data::Dataset& train_all,
                      const data::Dataset& test, const fs::path& packed_path) {
  auto t0 = std::chrono::steady_clock::now();
  Outcome out;
  out.variant = v;
  const int epochs = per_variant("--epochs", a.epochs)[v];
  const int patience = per_variant("--patience", a.patience)[v];
  auto [train, val] =
      split_validation(train_all, per_variant("--validation-split", a.validation_split)[v]);

  // The same initial weights for every variant.
  nn::Model m = nn::build_model(a.spec, {10}, a.common.seed);
  prune::PruneSpec ps;
  ps.criterion = prune::Criterion::Magnitude;
  ps.granularity = prune::Granularity::Element;
  ps.scope = prune::Scope::Layer;
  auto weights = prune::prunable_weights(m, ps);
  SPRIG_CHECK(!weights.empty(), "--spec '", a.spec, "' has no linear layer to prune");
  if (v == Whole)
    for (auto& w : weights) out.pruned.push_back(w.first);
  if (v == FirstLayer) out.pruned.push_back(weights.front().first);
  ps.include = out.pruned;
  const bool pruned = v != Unpruned;

  const int64_t batches = int64_t(data::DataLoader(train, a.batch_size).num_batches());
  const prune::PolynomialDecay& agp = a.agp;
  auto opt = train::make_optimizer(a.optim, m.parameters());
  int64_t offset = 0;
  double best = std::numeric_limits<double>::infinity();
  int wait = 0;
  prune::WeightSnapshot best_weights;
  for (int e = 1; e <= epochs; ++e) {
    train::FitConfig fc;
    fc.epochs = 1;
    fc.batch_size = a.batch_size;
    // fit() shuffles from its seed: a new one per epoch, as Keras reshuffles every epoch.
    fc.seed = a.common.seed * 1000003ull + uint64_t(e);
    if (pruned)
      fc.after_step = [&](int64_t t) {
        int64_t step = offset + t;
        if (agp.should_prune(step)) {
          ps.amount = agp.sparsity_at(step);
          prune::prune_model(m, ps);
        }
      };
    std::vector<train::EpochStats> h = train::fit(m, *opt, train, val, train::Task::Regression, fc);
    offset += batches;
    EpochRow row{e, h[0].train_loss, h[0].test.loss, sparsity_of(m, out.pruned)};
    out.rows.push_back(row);
    if (pruned && offset < last_prune_step(agp)) continue;  // still pruning
    if (row.val_mse < best) {
      best = row.val_mse;
      out.best_epoch = e;
      wait = 0;
      if (a.restore_best) best_weights = prune::snapshot_weights(m);
    } else if (++wait >= patience) {
      out.stopped_early = true;
      break;
    }
  }
  if (a.restore_best && !best_weights.values.empty()) prune::rewind_weights(m, best_weights);

  out.test_mse = train::evaluate(m, test, train::Task::Regression).loss;
  out.pruned_sparsity = sparsity_of(m, out.pruned);
  out.model_sparsity = prune::sparsity(m);

  infer::InferenceModel packed = pack_for_size(m, a.pack_format, a.common.seed);
  infer::save_packed(packed_path.string(), packed, {{"dataset", "friedman1"}});
  out.size = infer::size_report(m, packed_path.string());
  for (const auto& l : packed.layers) out.formats += (out.formats.empty() ? "" : ", ") + l.format();
  // The packed model must predict what the trained one does.
  Tensor pred = packed.forward(test.images);  // (N, 1)
  const float* p = pred.data();
  const float* y = test.labels.data();
  double sq = 0.0;
  for (int64_t i = 0; i < test.size(); ++i) sq += double(p[i] - y[i]) * double(p[i] - y[i]);
  out.packed_test_mse = sq / double(test.size());
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

void log_outcome(track::Tracker& tr, const std::string& id, const FriedmanArgs& a,
                 const Outcome& o) {
  Variant v = o.variant;
  tr.log_param(id, "variant", kVariantNames[v]);
  std::string names;
  for (auto& n : o.pruned) names += (names.empty() ? "" : ",") + n;
  tr.log_param(id, "pruned_weights", names.empty() ? "none" : names);
  tr.log_param(id, "max_epochs", std::to_string(per_variant("--epochs", a.epochs)[v]));
  tr.log_param(id, "patience", std::to_string(per_variant("--patience", a.patience)[v]));
  tr.log_param(id, "validation_split",
               format_g(per_variant("--validation-split", a.validation_split)[v]));
  if (v != Unpruned) {
    tr.log_param(id, "schedule", "polynomial_decay");
    tr.log_param(id, "initial_sparsity", format_g(a.agp.initial_sparsity));
    tr.log_param(id, "final_sparsity", format_g(a.agp.final_sparsity));
    tr.log_param(id, "begin_step", std::to_string(a.agp.begin_step));
    tr.log_param(id, "end_step", std::to_string(a.agp.end_step));
    tr.log_param(id, "frequency", std::to_string(a.agp.frequency));
    tr.log_param(id, "power", format_g(a.agp.power));
  }
  for (const EpochRow& r : o.rows) {
    tr.log_metric(id, "train_mse", r.train_mse, r.epoch);
    tr.log_metric(id, "val_mse", r.val_mse, r.epoch);
    if (v != Unpruned) tr.log_metric(id, "pruned_sparsity", r.sparsity, r.epoch);
  }
  tr.log_metric(id, "test_mse", o.test_mse);
  tr.log_metric(id, "packed_test_mse", o.packed_test_mse);
  tr.log_metric(id, "best_epoch", o.best_epoch);
  tr.log_metric(id, "epochs_trained", double(o.rows.size()));
  tr.log_metric(id, "final_pruned_sparsity", o.pruned_sparsity);
  tr.log_metric(id, "model_sparsity", o.model_sparsity);
  tr.log_metric(id, "size_float32_bytes", double(o.size.dense_bytes));
  tr.log_metric(id, "size_dense_file_bytes", double(o.size.dense_file_bytes));
  tr.log_metric(id, "size_gzip_bytes", double(o.size.dense_gzip_bytes));
  tr.log_metric(id, "size_packed_bytes", double(o.size.packed_bytes));
  tr.log_metric(id, "seconds", o.seconds);
  tr.set_tag(id, "packed_formats", o.formats);
}

std::string finding(const std::vector<Outcome>& o, const FriedmanArgs& a) {
  const Outcome& u = o[Unpruned];
  auto ratio = [](double x, double y) { return y > 0 ? x / y : 0.0; };
  char buf[2048];
  std::snprintf(
      buf, sizeof buf,
      "Unpruned test MSE %.4f. With %s of every Dense kernel zeroed the test MSE is %.4f (%.2fx "
      "the unpruned); with only the first Dense kernel pruned it is %.4f (%.2fx). Zeroed "
      "weights do not shrink the float32 parameters (%lld bytes each), but they compress: the "
      "gzipped dense file is %lld bytes unpruned, %lld whole-model pruned (%.0f%%) and %lld "
      "first-layer pruned (%.0f%%); the packed file (%s) is %lld, %lld (%.0f%%) and %lld bytes "
      "(%.0f%%).",
      u.test_mse, percent_label(o[Whole].pruned_sparsity).c_str(), o[Whole].test_mse,
      ratio(o[Whole].test_mse, u.test_mse), o[FirstLayer].test_mse,
      ratio(o[FirstLayer].test_mse, u.test_mse), (long long)u.size.dense_bytes,
      (long long)u.size.dense_gzip_bytes, (long long)o[Whole].size.dense_gzip_bytes,
      100.0 * ratio(double(o[Whole].size.dense_gzip_bytes), double(u.size.dense_gzip_bytes)),
      (long long)o[FirstLayer].size.dense_gzip_bytes,
      100.0 * ratio(double(o[FirstLayer].size.dense_gzip_bytes), double(u.size.dense_gzip_bytes)),
      a.pack_format.c_str(), (long long)u.size.packed_bytes, (long long)o[Whole].size.packed_bytes,
      100.0 * ratio(double(o[Whole].size.packed_bytes), double(u.size.packed_bytes)),
      (long long)o[FirstLayer].size.packed_bytes,
      100.0 * ratio(double(o[FirstLayer].size.packed_bytes), double(u.size.packed_bytes)));
  return buf;
}

void build_report(report::Report& rep, const FriedmanArgs& a, const std::vector<Outcome>& o,
                  const report::Table& table, const std::string& found, int64_t n_train,
                  int64_t n_test) {
  rep.add_heading(
      "Friedman #1 regression: unpruned vs pruned with a polynomial-decay schedule "
      "(seed 004)");
  char setup[2048];
  std::snprintf(
      setup, sizeof setup,
      "make_friedman1: %lld samples, 10 features, noise %g, %lld for training (the last part of "
      "it held out for validation) and %lld for test. Model '%s', %s lr %g, MSE loss, batch "
      "%lld. Pruned variants use magnitude pruning per layer on the Dense kernels (biases stay "
      "dense) with TF-MOT's PolynomialDecay: sparsity %g at step %lld rising to %g at step "
      "%lld, power %g, masks updated every %lld steps. Early stopping on validation MSE with "
      "the patience shown; for pruned variants epochs before the last pruning step do not "
      "count (so every pruned model ends at its target sparsity), and %s. Sizes: float32 "
      "parameters, the dense safetensors file gzipped (zlib level 6, as zip), and the packed "
      "sparse file (%s).",
      (long long)a.samples, a.noise, (long long)n_train, (long long)n_test, a.spec.c_str(),
      a.optim.name.c_str(), double(a.optim.lr), (long long)a.batch_size, a.agp.initial_sparsity,
      (long long)a.agp.begin_step, a.agp.final_sparsity, (long long)a.agp.end_step, a.agp.power,
      (long long)a.agp.frequency,
      a.restore_best ? "the weights of the best epoch are restored"
                     : "the last weights are kept (as Keras does by default)",
      a.pack_format == "smallest" ? "each layer dense or CSR, whichever takes fewer bytes"
                                  : ("every layer " + a.pack_format + " where it applies").c_str());
  rep.add_paragraph(setup);
  rep.add_heading("Finding");
  rep.add_paragraph(found);
  rep.add_paragraph(
      "Seed 004 (Keras + TF-MOT, scikit-learn's data) printed test MSE 0.0201 unpruned, 0.1830 "
      "with the whole model pruned (ConstantSparsity 50% from step 0, up to 100 epochs, "
      "patience 10) and 0.1388 with only the first Dense layer pruned (PolynomialDecay, up to "
      "300 epochs, validation split 0.1, patience 10); for size it reported a gzipped pruned "
      "Keras model of 6101 bytes before strip_pruning and 5140 after, at test MSE 0.0264. Its "
      "Keras EarlyStopping kept the last weights and could stop while pruning was under way.");

  report::Chart curves;
  curves.id = "loss-curves";
  curves.title = "Training and validation MSE per epoch";
  curves.x_label = "epoch";
  curves.y_label = "log10 MSE";
  report::Chart sparsity;
  sparsity.id = "sparsity";
  sparsity.title = "Sparsity of the pruned kernels per epoch";
  sparsity.x_label = "epoch";
  sparsity.y_label = "sparsity (%)";
  for (const Outcome& x : o) {
    report::Series tr{std::string(kShortNames[x.variant]) + " train", {}, {}, {}};
    report::Series va{std::string(kShortNames[x.variant]) + " validation", {}, {}, {}};
    report::Series sp{kShortNames[x.variant], {}, {}, {}};
    for (const EpochRow& r : x.rows) {
      double nan = std::numeric_limits<double>::quiet_NaN();
      tr.x.push_back(r.epoch);
      tr.y.push_back(r.train_mse > 0 ? std::log10(r.train_mse) : nan);
      va.x.push_back(r.epoch);
      va.y.push_back(r.val_mse > 0 ? std::log10(r.val_mse) : nan);
      sp.x.push_back(r.epoch);
      sp.y.push_back(100.0 * r.sparsity);
    }
    curves.series.push_back(tr);
    curves.series.push_back(va);
    if (x.variant != Unpruned) sparsity.series.push_back(sp);
  }
  report::Chart mse;
  mse.kind = report::Chart::Kind::Bar;
  mse.id = "test-mse";
  mse.title = "Test MSE";
  mse.y_label = "MSE";
  report::Chart size;
  size.kind = report::Chart::Kind::Bar;
  size.id = "size";
  size.title = "Model size";
  size.y_label = "bytes";
  report::Series ours{"sprig", {}, {}, {}}, seed{"seed 004 (TF-MOT)", {}, {}, {}};
  report::Series raw{"float32 parameters", {}, {}, {}}, gz{"dense file gzipped", {}, {}, {}},
      pk{"packed (" + a.pack_format + ")", {}, {}, {}};
  for (const Outcome& x : o) {
    double i = double(x.variant);
    mse.categories.push_back(kVariantNames[x.variant]);
    size.categories.push_back(kVariantNames[x.variant]);
    ours.x.push_back(i);
    ours.y.push_back(x.test_mse);
    seed.x.push_back(i);
    seed.y.push_back(kSeedMse[x.variant]);
    raw.x.push_back(i);
    raw.y.push_back(double(x.size.dense_bytes));
    gz.x.push_back(i);
    gz.y.push_back(double(x.size.dense_gzip_bytes));
    pk.x.push_back(i);
    pk.y.push_back(double(x.size.packed_bytes));
  }
  mse.series = {ours, seed};
  size.series = {raw, gz, pk};
  rep.add_chart(curves);
  rep.add_chart(sparsity);
  rep.add_chart(mse);
  rep.add_chart(size);
  rep.add_table(table);
}

void log_setup(track::Tracker& tr, const std::string& parent, const FriedmanArgs& a) {
  tr.set_tag(parent, "seed", "004");
  tr.log_param(parent, "spec", a.spec);
  tr.log_param(parent, "samples", std::to_string(a.samples));
  tr.log_param(parent, "test_fraction", format_g(a.test_fraction));
  tr.log_param(parent, "noise", format_g(a.noise));
  tr.log_param(parent, "batch_size", std::to_string(a.batch_size));
  tr.log_param(parent, "optimizer", a.optim.name);
  tr.log_param(parent, "lr", format_g(a.optim.lr));
  tr.log_param(parent, "restore_best", a.restore_best ? "true" : "false");
  tr.log_param(parent, "pack_format", a.pack_format);
  tr.log_param(parent, "data_seed", std::to_string(a.common.seed));
}

// A directory for the packed models, removed however the variants end.
struct TempDir {
  fs::path path;
  explicit TempDir(fs::path p) : path(std::move(p)) { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// Each variant as a child run, its packed model logged as an artifact.
std::vector<Outcome> run_variants(track::Tracker& tr, const std::string& parent,
                                  const FriedmanArgs& a, const data::Dataset& train,
                                  const data::Dataset& test) {
  TempDir packed_dir(fs::temp_directory_path() / ("sprig_friedman_" + std::to_string(::getpid())));
  std::vector<Outcome> outcomes;
  for (Variant v : {Unpruned, Whole, FirstLayer}) {
    RunScope child(tr, tr.start_run(kVariantNames[v], parent));
    fs::path packed = packed_dir.path / (std::string(kVariantKeys[v]) + ".packed.safetensors");
    Outcome o = train_variant(a, v, train, test, packed);
    log_outcome(tr, child.id(), a, o);
    tr.log_artifact(child.id(), packed.string());
    child.end();
    tr.log_metric(parent, std::string("test_mse_") + kVariantKeys[v], o.test_mse);
    std::printf("%-26s test MSE %.4f  %zu epochs (best %d%s)  sparsity %.1f%%  %.1f s\n",
                kVariantNames[v], o.test_mse, o.rows.size(), o.best_epoch,
                o.stopped_early ? ", stopped early" : "", 100.0 * o.pruned_sparsity, o.seconds);
    std::fflush(stdout);
    outcomes.push_back(o);
  }
  return outcomes;
}

void write_report(Context& ctx, const std::string& parent, const FriedmanArgs& a,
                  const std::vector<Outcome>& outcomes, int64_t train_size, int64_t test_size) {
  report::Table table;
  table.title = "Test MSE and model size";
  table.header = {"variant",      "pruned sparsity", "epochs",        "best epoch",
                  "test MSE",     "seed 004 MSE",    "float32 bytes", "gzip bytes",
                  "packed bytes", "packed formats"};
  for (const Outcome& o : outcomes)
    table.rows.push_back(
        {kVariantNames[o.variant], o.variant == Unpruned ? "-" : percent_label(o.pruned_sparsity),
         std::to_string(o.rows.size()), std::to_string(o.best_epoch), report::fmt(o.test_mse, 4),
         report::fmt(kSeedMse[o.variant], 4), std::to_string(o.size.dense_bytes),
         std::to_string(o.size.dense_gzip_bytes), std::to_string(o.size.packed_bytes), o.formats});
  std::string found = finding(outcomes, a);
  build_report(ctx.report, a, outcomes, table, found, train_size, test_size);
  std::printf("\n%s\n%s\n", report::format_table(table).c_str(), found.c_str());
  ctx.tracker->log_text(parent, "finding.txt", found + "\n");
  finish(ctx, parent);
}

int run_friedman(const FriedmanArgs& a) {
  SPRIG_CHECK(a.common.dataset.empty() || a.common.dataset == "friedman1", "--dataset ",
              a.common.dataset, ": the friedman experiment generates its own friedman1 data");
  // A bad --spec fails before any run starts.
  Shape out_shape = nn::build_model(a.spec, {10}, a.common.seed).output_shape();
  SPRIG_CHECK(out_shape == Shape{1}, "--spec '", a.spec, "' must end in one output (e.g. ",
              "linear(1)) for the regression target, but gives ", to_string(out_shape));

  data::Dataset all = data::make_friedman1(a.samples, 10, float(a.noise), a.common.seed);
  auto [train, test] = data::train_test_split(all, a.test_fraction, a.common.seed);
  if (a.common.train_samples > 0) train = data::take(train, a.common.train_samples);
  if (a.common.test_samples > 0) test = data::take(test, a.common.test_samples);
  check_flags(a, train);

  Context ctx("friedman", a.common);
  track::Tracker& tr = *ctx.tracker;
  RunScope parent(tr, tr.start_run("friedman"));
  log_setup(tr, parent.id(), a);
  const std::vector<Outcome> outcomes = run_variants(tr, parent.id(), a, train, test);
  write_report(ctx, parent.id(), a, outcomes, train.size(), test.size());
  parent.end();
  return 0;
}

}  // namespace

Command add_friedman(CLI::App& app) {
  auto a = std::make_shared<FriedmanArgs>();
  add_common_flags(app, a->common);
  app.add_option("--spec", a->spec, "model spec (input: 10 features)")->capture_default_str();
  app.add_option("--samples", a->samples, "make_friedman1 samples")
      ->check(IntRange(int64_t(10), int64_t(1) << 30))
      ->capture_default_str();
  app.add_option("--test-fraction", a->test_fraction, "fraction of samples held out for test")
      ->check(FiniteNumber & CLI::Range(0.01, 0.99))
      ->capture_default_str();
  app.add_option("--noise", a->noise, "make_friedman1 noise (std of the Gaussian added to y)")
      ->check(FiniteNumber & CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--epochs", a->epochs,
                 "maximum epochs: one value, or three for unpruned, whole, first layer")
      ->delimiter(',')
      ->check(IntRange(1, 1000000))
      ->capture_default_str();
  app.add_option("--patience", a->patience, "early-stopping patience in epochs: one value or three")
      ->delimiter(',')
      ->check(IntRange(1, 1000000))
      ->capture_default_str();
  app.add_option("--validation-split", a->validation_split,
                 "fraction of the training samples (the last ones) for validation: one or three")
      ->delimiter(',')
      ->check(FiniteNumber & CLI::Range(0.001, 0.999))
      ->capture_default_str();
  app.add_option("--initial-sparsity", a->agp.initial_sparsity, "schedule's sparsity at begin")
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--final-sparsity", a->agp.final_sparsity, "schedule's sparsity from end on")
      ->check(FiniteNumber & FractionBelowOne)
      ->capture_default_str();
  app.add_option("--begin-step", a->agp.begin_step, "optimizer step where pruning begins")
      ->check(IntRange(int64_t(0), int64_t(1) << 40))
      ->capture_default_str();
  app.add_option("--end-step", a->agp.end_step, "optimizer step where pruning ends")
      ->check(IntRange(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  app.add_option("--frequency", a->agp.frequency, "optimizer steps between mask updates")
      ->check(IntRange(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  app.add_option("--power", a->agp.power, "exponent of the polynomial decay")
      ->check(FiniteNumber & CLI::Range(0.01, 100.0))
      ->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "batch size")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--optimizer", a->optim.name, "sgd, adam or adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  app.add_option("--lr", a->optim.lr, "learning rate")
      ->check(FiniteNumber & CLI::Range(0.0, 1e3))
      ->capture_default_str();
  app.add_flag("--restore-best,!--no-restore-best", a->restore_best,
               "restore the best epoch's weights at the end (default) or keep the last")
      ->capture_default_str();
  app.add_option("--pack-format", a->pack_format,
                 "packed file for the size: smallest (dense or csr per layer, whichever is "
                 "smaller), csr, dense, bsr, nm or auto (fastest here)")
      ->check(CLI::IsMember({"smallest", "csr", "dense", "bsr", "nm", "auto"}))
      ->capture_default_str();
  return [a] { return run_friedman(*a); };
}

}  // namespace sprig::app::experiments
