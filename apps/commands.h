#pragma once
// Each sprig subcommand registers its options on the CLI and returns the function that runs it.
#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/device.h"
#include "engine/rng.h"
#include "train/trainer.h"

namespace sprig::app {

using Command = std::function<int()>;  // returns the process exit code

Command add_train_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_summary_command(CLI::App& app);
Command add_prune_command(CLI::App& app);
Command add_sensitivity_command(CLI::App& app);
Command add_bench_command(CLI::App& app);       // sprig bench <gemm|conv|linear|model>
Command add_bench_gemm_command(CLI::App& app);  // sprig bench gemm
Command add_bench_conv_command(CLI::App& app);  // sprig bench conv
Command add_pack_command(CLI::App& app);      // sprig pack: checkpoint -> packed sparse model file
Command add_quantize_command(CLI::App& app);  // sprig quantize: checkpoint -> packed int8 file
Command add_run_command(CLI::App& app);       // sprig run: evaluate a packed model file
Command add_plan_command(CLI::App& app);      // sprig plan: per-layer dense / sparse choice and why
Command add_bench_linear_command(CLI::App& app);  // sprig bench linear (cmd_bench_sparse.cpp)
Command add_bench_model_command(CLI::App& app);   // sprig bench model (cmd_bench_sparse.cpp)
Command add_predict_command(CLI::App& app);       // sprig predict: outputs for an input batch
Command add_export_command(CLI::App& app);        // sprig export: checkpoint -> ONNX
Command add_experiment_command(CLI::App& app);    // sprig experiment NAME (apps/experiments/)
// sprig bench sparse-gpu (cmd_bench_sparse_gpu.cpp)
Command add_bench_sparse_gpu_command(CLI::App& app);

// A CLI11 check that rejects NaN and infinities (CLI::Range lets NaN through).
extern const CLI::Validator FiniteNumber;
// Accepts values in [0, 1), e.g. a sparsity target.
extern const CLI::Validator FractionBelowOne;
extern const CLI::Validator SeedNumber;    // decimal digits in [0, 2^64)
extern const CLI::Validator NonEmptyPath;  // any bytes but none
// A --format of sprig pack and the commands that pack: a name of infer::kPackFormats.
extern const CLI::Validator PackFormatName;
// An integer flag in [lo, hi]; "--epochs 1.5" is named as not a whole number, where
// CLI::Range said "not in range".
CLI::Validator IntRange(int64_t lo, int64_t hi);

// The names of commands (or experiments, benchmarks) for an error: "a, b or c".
std::string or_list(const std::vector<CLI::App*>& commands);

// --dataset and --data-dir for commands that read a checkpoint: the dataset defaults to the one
// the model was trained on (see load_data_for in train/trainer.h).
void add_checkpoint_data_flags(CLI::App& app, std::string& dataset, std::string& data_dir);

// A CLI11 check that accepts exactly the dataset names load_data_source knows.
CLI::Validator dataset_validator();

// --lr-schedule, --lr-step-size, --lr-milestones, --lr-gamma and --warmup-epochs into c
// (apply_lr_schedule in train/trainer.h checks how they combine).
void add_lr_schedule_flags(CLI::App& app, train::LrScheduleConfig& c);

// Parses a block size "ROWSxCOLS" (e.g. 1x4, 4x4; each 1..256) given to --block.
std::pair<int64_t, int64_t> parse_block_flag(const std::string& value);

// The benchmarks' random masks: zeroes exactly round(fraction * n) of the n units chosen by a
// seeded partial shuffle; prune_unit(u) zeroes unit u.
void zero_random_units(int64_t n, double fraction, Rng& rng,
                       const std::function<void(int64_t)>& prune_unit);

// --device: cpu (default), cuda or cuda:N. device_from_flag parses it and, for a GPU, checks
// that one is usable here, naming the reason otherwise (no GPU, no driver, a CPU-only build).
void add_device_flag(CLI::App& app, std::string& device);
Device device_from_flag(const std::string& value);

// --threads N (0: OpenMP's default). N above kMaxThreadsPerProcessor per processor is capped
// there, with a warning: OpenMP teams wait at every barrier for descheduled threads, so 1024
// threads on 2 cores turn a one-second eval into minutes.
inline constexpr int kMaxThreadsPerProcessor = 4;
void use_threads(int requested);

// Prints j as one line on stdout (a --json result). Strings that are not UTF-8 (a path with
// Latin-1 bytes) print with U+FFFD in place of the bad bytes instead of failing the command
// after its work is done.
void print_json_line(const nlohmann::json& j);

// True when stdout is a terminal (progress bars) rather than a pipe or file (plain lines).
bool stdout_is_terminal();
// Parses "1,28,28" into a shape; throws sprig::Error naming the flag otherwise.
std::vector<int64_t> parse_shape_flag(const std::string& flag, const std::string& value);

}  // namespace sprig::app
