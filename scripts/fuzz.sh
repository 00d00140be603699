#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, CUDA off) in build-fuzz and
# runs each for SECONDS (default 60) from a scratch copy of its seed corpus in
# tests/fuzz/corpus/<target>/, so the repository is not changed; two targets at a time (one per
# core; SPRIG_FUZZ_JOBS=N to change). Each target's output is kept in build-fuzz/logs/<target>.log.
# Fails on the first crash, sanitizer report, leak, timeout or out-of-memory, stopping the runs
# still going; the input that caused it is kept in build-fuzz/findings/<target>/ and its path
# printed (reproduce: build-fuzz/fuzz/<target> FILE).
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

# No ccache here: no other build compiles with these flags, and each miss would cost 5-16% more.
# OSS-Fuzz's flags (-O1, line tables): a quarter less to compile than -O2 -g.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DSPRIG_FUZZ=ON \
  -DSPRIG_CUDA=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target sprig_fuzz

# Each target is one single-threaded process, so SPRIG_FUZZ_JOBS of them run side by side
# (default: 2, or 1 on a single core): 6 targets x SECONDS take about 3 x SECONDS on 2 cores.
# (nproc obeys OMP_NUM_THREADS, hence env -u.)
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
jobs=${SPRIG_FUZZ_JOBS:-$((cores < 2 ? 1 : 2))}
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=1  # one thread: reproducible runs, and the kernels' serial paths
scratch=$(mktemp -d)
logs="$build/logs"
mkdir -p "$logs"
declare -A target_of=()  # pid -> target, for the runs in flight

fuzz_one() {  # fuzz_one TARGET: runs in the background, its output in $logs/TARGET.log
  local t=$1 dict=()
  cp -r "tests/fuzz/corpus/$t" "$scratch/$t"
  mkdir -p "$build/findings/$t"
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  [ "$t" = fuzz_packed_model ] && dict=(-dict=tests/fuzz/fuzz_safetensors.dict)
  echo "fuzz: $t for ${seconds}s (log: $logs/$t.log)"
  "$build/fuzz/$t" "$scratch/$t" "${dict[@]}" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$build/findings/$t/" >"$logs/$t.log" 2>&1 &
  target_of[$!]=$t
}

finish_one() {  # waits for any run in flight; reports it; on a finding stops the others, exits 1
  local pid status=0 t
  wait -n -p pid "${!target_of[@]}" || status=$?
  t=${target_of[$pid]}
  unset "target_of[$pid]"
  if [ "$status" -ne 0 ]; then
    tail -n 80 "$logs/$t.log"
    local input
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logs/$t.log" | tail -n 1)
    echo "fuzz: $t FAILED (exit $status); the input is ${input:-in $build/findings/$t/}" \
      "(reproduce: $build/fuzz/$t ${input:-FILE}; log: $logs/$t.log)" >&2
    for other in "${!target_of[@]}"; do kill "$other" 2>/dev/null || true; done
    wait
    exit 1
  fi
  # Final stats: executions, speed, coverage (cov: edges, ft: features) and corpus size.
  grep -E "^(#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb))" \
    "$logs/$t.log" | sed "s/^/$t: /" || true
  echo "fuzz: $t done, corpus $(ls "$scratch/$t" | wc -l) inputs"
}

trap 'for p in "${!target_of[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  while [ ${#target_of[@]} -ge "$jobs" ]; do finish_one; done
  fuzz_one "$t"
done
while [ ${#target_of[@]} -gt 0 ]; do finish_one; done
echo "fuzz: all targets ran ${seconds}s without a finding"
