#!/usr/bin/env bash
# Runs the CUDA suites (ctest -L cuda) without a GPU: a -DSPRIG_CUDA=EMULATE build compiles
# kernels/cuda/*.cu as C++ against kernels/cuda/emulator, which runs each kernel on the CPU (one
# fiber per thread) and checks device memory accesses around allocations. Fails on a failing
# suite, a suite that did not run, or any report of the emulator's (they go to stderr).
#   bash scripts/cuda-emulate.sh [BUILD_DIR]      (default: build-emu; JOBS=2 by default)
# SPRIG_SANITIZE=address,undefined adds the sanitizers; ASan then also sees reads out of bounds.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-emu}
jobs=${JOBS:-2}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
export CCACHE_DEPEND=1  # as scripts/test.sh

t0=$(date +%s)
# Release, as scripts/test.sh builds: everything but kernels/cuda and the CUDA suites then
# compiles with the same flags as there, and ccache (setup.sh --test) reuses those objects. In
# two CI rehearsals that took this build from 279 s to 30 and 51 s.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPRIG_CUDA=EMULATE \
  -DSPRIG_SANITIZE="${SPRIG_SANITIZE:-}" "${launcher[@]}" >/dev/null
suites=(cuda_emulator_selftest)
for src in tests/test_cuda_*.cpp; do suites+=("$(basename "$src" .cpp)"); done
cmake --build "$build" -j"$jobs" --target "${suites[@]}"
t1=$(date +%s)

# The emulator's self-test first: it provokes reports on purpose, so it runs apart.
ctest --test-dir "$build" -L emulator --output-on-failure
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
ctest --test-dir "$build" -L cuda -V -j"$jobs" >"$log" 2>&1 || status=$?
t2=$(date +%s)
grep -E "tests passed|Passed|Failed|\*\*\*|Skipped|Not Run" "$log" || true
if [[ $status -ne 0 ]] || grep -q "(Skipped)\|Not Run" "$log"; then
  tail -n 200 "$log"
  echo "cuda-emulate: some cuda suites failed or did not run (log above)" >&2
  exit 1
fi
if grep -q "sprig CUDA emulator:" "$log"; then
  grep -B2 -A2 "sprig CUDA emulator:" "$log" | head -n 100
  echo "cuda-emulate: the suites pass, but the emulator reported the problems above" >&2
  exit 1
fi
echo "cuda-emulate: all cuda suites pass under the emulator (build $((t1 - t0)) s, tests $((t2 - t1)) s)"
