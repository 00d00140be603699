#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: runs the `cuda` CTest suites of an existing build, then each
# suite under compute-sanitizer's memcheck, racecheck, initcheck and synccheck; any report fails.
#   bash scripts/cuda-check.sh [BUILD_DIR]      (default: build, as scripts/test.sh makes it)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "cuda-check: no NVIDIA GPU here (nvidia-smi -L failed); nothing to check" >&2
  exit 1
fi
nvidia-smi -L
suites=("$build"/tests/test_cuda_*)
if [[ ! -x "${suites[0]}" ]]; then
  echo "cuda-check: no CUDA test suites in $build/tests (is it a CUDA build?)" >&2
  exit 1
fi
# A suite that exits 77 here (no usable GPU after all) must not pass silently.
log=$(mktemp)
ctest --test-dir "$build" -L cuda --output-on-failure | tee "$log"
if grep -q "(Skipped)" "$log" || ! grep -q "tests passed" "$log"; then
  echo "cuda-check: some cuda suites did not run (see above)" >&2
  exit 1
fi
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for suite in "${suites[@]}"; do
  for tool in memcheck racecheck initcheck synccheck; do
    echo "== $tool: $(basename "$suite")"
    "$sanitizer" --tool "$tool" --error-exitcode 3 "$suite"
  done
done
echo "cuda-check: all cuda suites pass and compute-sanitizer reports nothing"
