#!/usr/bin/env bash
# Builds sprig (CUDA too where nvcc is found) and runs the whole test suite through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# ccache (setup.sh --test installs it) lets CI's emulator build reuse this build's library
# objects, which it compiles with the same flags.
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build -j"$(nproc)"
# Two suites at a time on 2 cores (the MPI suites alone: PROCESSORS in tests/CMakeLists.txt): on
# a 2-vCPU Zen 3, 323 s against 390 s one at a time.
ctest --test-dir build --output-on-failure -j"$(nproc)"
