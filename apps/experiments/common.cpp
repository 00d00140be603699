// What every `sprig experiment` shares: the common flags, the Context (tracker and report), the
// data, the base model and the last line.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "apps/experiments/experiment.h"
#include "engine/atomic_file.h"
#include "kernels/error.h"
#include "engine/text.h"
#include "nn/checkpoint.h"
#include "train/data_parallel.h"

namespace sprig::app::experiments {

namespace {
const CLI::Validator HttpUri(
    [](std::string& value) -> std::string {
      for (const std::string scheme : {"http://", "https://"})
        if (value.rfind(scheme, 0) == 0 && value.size() > scheme.size() &&
            value.find_first_of(" \t\n") == std::string::npos)
          return "";
      return "'" + value + "' is not an http(s)://HOST[:PORT] tracking server address";
    },
    "http://HOST:PORT");

const CLI::Validator NonEmpty(
    [](std::string& value) -> std::string { return value.empty() ? "must not be empty" : ""; },
    "TEXT");
}  // namespace

void add_common_flags(CLI::App& app, CommonFlags& f) {
  app.add_option("--tracking-uri", f.tracking_uri,
                 "MLflow tracking server (http://HOST:PORT); runs go to the local store too")
      ->check(HttpUri);
  app.add_option("--local-store", f.local_store,
                 "local MLflow store directory (always written; `mlflow ui` reads it)")
      ->check(NonEmpty)
      ->capture_default_str();
  app.add_option("--report", f.report, "HTML report path (default reports/<experiment>.html)")
      ->check(NonEmptyPath)
      ->check(NonEmpty);
  app.add_option("--tensorboard", f.tensorboard, "also write TensorBoard scalars under DIR")
      ->check(NonEmpty);
  app.add_option("--dataset", f.dataset, "fashion-mnist, mnist, cifar10 or friedman1")
      ->check(dataset_validator());
  app.add_option("--data-dir", f.data_dir, "directory with the dataset's files")
      ->check(NonEmptyPath);
  app.add_option("--experiment-name", f.experiment_name,
                 "MLflow experiment (default sprig-<experiment>)")
      ->check(NonEmpty);
  app.add_option("--seed", f.seed, "seed for initialisation, shuffling and the search")
      ->check(SeedNumber)
      ->capture_default_str();
  app.add_option("--threads", f.threads, "OpenMP threads (0: OpenMP's default)")
      ->check(IntRange(0, 1024));
  app.add_option("--train-samples", f.train_samples,
                 "use only the first N training samples (quick runs)")
      ->check(IntRange(int64_t(1), int64_t(1) << 40));
  app.add_option("--test-samples", f.test_samples, "evaluate on the first N test samples only")
      ->check(IntRange(int64_t(1), int64_t(1) << 40));
}

Context::Context(const std::string& n, const CommonFlags& f)
    : name(n), flags(f), report("sprig experiment " + n) {
  use_threads(flags.threads);
  if (flags.experiment_name.empty()) flags.experiment_name = "sprig-" + name;
  report_path = flags.report.empty() ? "reports/" + name + ".html" : flags.report;
  track::TrackerOptions opts;
  opts.tracking_uri = flags.tracking_uri;
  opts.local_dir = flags.local_store;
  opts.experiment_name = flags.experiment_name;
  opts.tensorboard_dir = flags.tensorboard;
  tracker = std::make_unique<track::Tracker>(opts);
}

void finish(Context& ctx, const std::string& run_id) {
  ctx.report.write(ctx.report_path);
  if (!run_id.empty()) ctx.tracker->log_artifact(run_id, ctx.report_path);
  std::fflush(stdout);
  // The tracker printed the failure when it happened; at the end, say where the record is.
  if (!ctx.tracker->warnings().empty())
    std::fprintf(stderr,
                 "sprig: warning: the tracking server did not get every call; the runs are "
                 "complete in the local store %s\n",
                 ctx.tracker->local_dir().c_str());
  std::fflush(stderr);
  std::printf("%s\n", ctx.report_path.c_str());
  std::fflush(stdout);
}

RunScope::~RunScope() {
  if (!open_) return;
  try {
    tracker_.end_run(id_, "FAILED");
  } catch (...) {
    // Already unwinding from the error that matters; the run stays RUNNING in the store.
  }
}

void RunScope::end(const std::string& status) {
  open_ = false;
  tracker_.end_run(id_, status);
}

std::string pct(double fraction) {
  return report::fmt(100.0 * fraction, 2) + "%";
}

std::string short_spec(const nn::Model& model) {
  if (model.spec.size() <= 80) return model.spec;
  std::string widths;
  for (auto& [path, m] : model.net->named_modules()) {
    int64_t out = -1;
    if (auto* c = dynamic_cast<const nn::Conv2d*>(m)) out = c->out_channels;
    if (auto* l = dynamic_cast<const nn::Linear*>(m)) out = l->out_features;
    if (out >= 0) widths += (widths.empty() ? "" : "/") + std::to_string(out);
  }
  return "widths " + widths;
}

std::string with_commas(int64_t value) {
  std::string s = std::to_string(value < 0 ? -value : value);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return value < 0 ? "-" + s : s;
}

std::string plural(int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

void limit_samples(const CommonFlags& flags, train::DataSource& src) {
  if (flags.train_samples > 0) src.data.train = data::take(src.data.train, flags.train_samples);
  if (flags.test_samples > 0) src.data.test = data::take(src.data.test, flags.test_samples);
}

train::DataSource load_data(const Context& ctx, const std::string& fallback) {
  std::string name = ctx.flags.dataset.empty() ? fallback : ctx.flags.dataset;
  train::DataSource src = train::load_data_source(name, ctx.flags.data_dir, ctx.flags.seed);
  limit_samples(ctx.flags, src);
  return src;
}

void log_epochs(Context& ctx, const std::string& run_id,
                const std::vector<train::EpochStats>& epochs, train::Task task, int64_t step_offset,
                const std::string& prefix) {
  for (const train::EpochStats& e : epochs) {
    int64_t step = e.epoch + step_offset;
    ctx.tracker->log_metric(run_id, prefix + "train_loss", e.train_loss, step);
    if (task == train::Task::Classification)
      ctx.tracker->log_metric(run_id, prefix + "test_accuracy", e.test.accuracy, step);
    else
      ctx.tracker->log_metric(run_id, prefix + "test_mse", e.test.loss, step);
    ctx.tracker->log_metric(run_id, prefix + "epoch_seconds", e.seconds, step);
  }
}

void add_base_flags(CLI::App& app, BaseFlags& f, bool with_base_flag) {
  if (with_base_flag)
    app.add_option("--base", f.base,
                   "start from this trained checkpoint instead of training one (saves time)")
        ->check(NonEmptyPath)
        ->check(CLI::ExistingFile);
  app.add_option("--model", f.model, "zoo name (mlp, cnn2, lenet5) or a model spec")
      ->capture_default_str();
  app.add_option("--batch-size", f.batch_size, "samples per training step")
      ->check(IntRange(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--lr", f.optim.lr, "Adam learning rate (training and fine-tuning)")
      ->check(FiniteNumber & CLI::Range(1e-8, 10.0))
      ->capture_default_str();
}

BaseModel make_base(Context& ctx, const BaseFlags& f) {
  check_output_path("--report", ctx.report_path, {{"--base", f.base}});
  BaseModel b;
  if (!f.base.empty()) {
    nn::Checkpoint ck = nn::load_checkpoint(f.base);
    b.src = train::load_data_for(ck.model, ck.metadata, f.base, ctx.flags.dataset,
                                 ctx.flags.data_dir, ctx.flags.seed);
    limit_samples(ctx.flags, b.src);
    b.model = std::move(ck.model);
    b.test = train::evaluate(b.model, b.src.data.test, b.src.task);
    b.origin = printable(f.base);  // logged as an MLflow param, which must be UTF-8
    return b;
  }
  b.src = load_data(ctx, "fashion-mnist");
  SPRIG_CHECK(b.src.data.train.size() > 0, "no training samples");
  b.model = nn::build_model(f.model, b.src.input_shape, ctx.flags.seed);
  auto opt = train::make_optimizer(f.optim, b.model.parameters());
  train::FitConfig fc;
  fc.epochs = f.epochs;
  fc.batch_size = f.batch_size;
  fc.seed = ctx.flags.seed;
  b.history = train::fit(b.model, *opt, b.src.data.train, b.src.data.test, b.src.task, fc);
  b.test = b.history.empty() ? train::evaluate(b.model, b.src.data.test, b.src.task)
                             : b.history.back().test;
  b.origin = "trained " + plural(f.epochs, "epoch");
  return b;
}

void share_base(const dist::Comm& comm, const CommonFlags& flags, BaseModel& base) {
  if (comm.size() == 1) return;
  std::string dataset, spec, masks;  // rank 0's
  if (comm.is_root()) {
    dataset = base.src.name;
    spec = base.model.spec;
    for (auto& [name, p] : base.model.named_parameters())
      if (p->mask) masks += name + " " + nn::granularity_name(p->mask->granularity) + "\n";
  }
  comm.broadcast_string(dataset);
  comm.broadcast_string(spec);
  comm.broadcast_string(masks);
  if (!comm.is_root()) {
    base.src = train::load_data_source(dataset, flags.data_dir, flags.seed);
    limit_samples(flags, base.src);
    base.model = nn::build_model(spec, base.src.input_shape, flags.seed);
    std::istringstream lines(masks);
    std::string name, granularity;
    std::map<std::string, nn::ParameterPtr> params;
    for (auto& [name, p] : base.model.named_parameters()) params[name] = p;
    while (lines >> name >> granularity) {
      const nn::ParameterPtr& p = params.at(name);
      // Contents come with the model below.
      p->set_mask(Tensor::zeros(p->value.shape(), DType::U8), nn::parse_granularity(granularity));
    }
  }
  train::broadcast_model(comm, base.model, nullptr, 0);
  comm.broadcast_value(base.test);
}

std::string describe_base(const BaseFlags& f) {
  return f.base.empty() ? f.model + ", " + plural(f.epochs, "epoch") : f.base;
}

void append_test_accuracy(report::Series& series, const std::vector<train::EpochStats>& epochs,
                          double x_offset) {
  for (const train::EpochStats& e : epochs) {
    series.x.push_back(x_offset + e.epoch);
    series.y.push_back(e.test.accuracy);
  }
}

report::Chart layer_sparsity_chart(const std::string& id, const std::string& title,
                                   const nn::ModelSummary& summary) {
  report::Chart chart{report::Chart::Kind::Bar, id, title, "layer", "sparsity", {}, {}, false};
  report::Series bars{"sparsity", {}, {}, {}};
  for (const nn::LayerSummary& l : summary.layers) {
    if (l.params == 0) continue;
    bars.x.push_back(double(chart.categories.size()));
    bars.y.push_back(l.sparsity());
    chart.categories.push_back(l.name + " " + l.spec);
  }
  chart.series.push_back(bars);
  return chart;
}

void log_model_artifact(Context& ctx, const std::string& run_id, const nn::Model& model,
                        const std::string& dataset, const std::string& file_name) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("sprig-experiment-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path tmp = dir / file_name;
  nn::save_checkpoint(tmp.string(), model,
                      {{"dataset", dataset}, {"created_by", "sprig experiment " + ctx.name}});
  try {
    ctx.tracker->log_artifact(run_id, tmp.string(), "model");
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace sprig::app::experiments
