#!/usr/bin/env bash
# Builds sprig (CUDA too where nvcc is found) and runs the whole test suite through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# ccache (setup.sh --test installs it) lets CI's emulator build reuse this build's library
# objects, which it compiles with the same flags.
# Depend mode: a miss costs the compile about 5% more, not 16% (the preprocessor run ccache
# otherwise adds to learn a new object's hash).
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
export CCACHE_DEPEND=1
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build -j"$(nproc)"
# Two suites at a time on 2 cores (the MPI suites alone: PROCESSORS in tests/CMakeLists.txt): on
# a 2-vCPU Zen 3, 323 s against 390 s one at a time.
ctest --test-dir build --output-on-failure -j"$(nproc)"
