#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, CUDA off) in build-fuzz and
# runs each for SECONDS (default 60) from a scratch copy of its seed corpus in
# tests/fuzz/corpus/<target>/, so the repository is not changed. Fails on the first crash,
# sanitizer report, leak, timeout or out-of-memory; the input that caused it is kept in
# build-fuzz/findings/<target>/ (reproduce: build-fuzz/fuzz/<target> FILE).
# Usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]   (SPRIG_FUZZ_BUILD=DIR: build elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_idx fuzz_safetensors fuzz_model_spec fuzz_packed_model
  fuzz_train_state fuzz_resume)
bash scripts/setup.sh --test
build=${SPRIG_FUZZ_BUILD:-build-fuzz}

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DSPRIG_FUZZ=ON -DSPRIG_CUDA=OFF "${launcher[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)" --target sprig_fuzz

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=1  # one thread: reproducible runs, and the kernels' serial paths
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  cp -r "tests/fuzz/corpus/$t" "$scratch/$t"
  findings="$build/findings/$t"
  mkdir -p "$findings"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  [ "$t" = fuzz_packed_model ] && dict=(-dict=tests/fuzz/fuzz_safetensors.dict)
  echo "fuzz: $t for ${seconds}s"
  if ! "$build/fuzz/$t" "$scratch/$t" "${dict[@]}" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$scratch/$t.log" 2>&1; then
    tail -n 80 "$scratch/$t.log"
    echo "fuzz: $t FAILED; the input is in $findings/" >&2
    exit 1
  fi
  # Final stats: executions, speed, coverage (cov: edges, ft: features) and corpus size.
  grep -E "^(#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb))" \
    "$scratch/$t.log" || true
  echo "fuzz: $t corpus $(ls "$scratch/$t" | wc -l) inputs"
done
echo "fuzz: all targets ran ${seconds}s without a finding"
