#!/usr/bin/env bash
# Builds sprig with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, CUDA off) in build-asan
# and runs the whole CTest suite with every report fatal: the first ASan, UBSan or leak report
# fails the test that triggered it. The sprig binary the CLI tests start is instrumented too.
# Then the thread pool's suite under ThreadSanitizer (build-tsan).
# Usage: bash scripts/sanitize.sh [ctest arguments, e.g. -R test_pack]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

# No ccache here: no other build compiles with these flags, and each miss would cost 5-16% more.
# -O1 -g1 (line tables): reports still have file:line stacks, and the instrumented build
# compiles about 2.5x faster than with -O2 -g (gcc 12), which is most of this script's time;
# apps/ (SPRIG_GLUE_O0) and tests/ at -O0 halve it again. The dense kernels every training step
# runs compile at -O2 (kernels/CMakeLists.txt says why).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPRIG_SANITIZE=address,undefined \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DSPRIG_GLUE_O0=ON -DSPRIG_CUDA=OFF \
  >/dev/null
cmake --build build-asan -j"$(nproc)"

# halt_on_error makes UBSan's (recoverable by default) checks abort like ASan's; leaks are
# reported at exit and fail the process. No suppressions: libgomp and libcurl report nothing.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# Of the MPI suites (2-3 min each at ASan's speed) CI keeps test_dist_np2, the one that runs the
# data-parallel code (gradient buckets, collectives, sync-bn) on several ranks; np1 runs only the
# one-process paths other suites cover, np3 repeats np2 with one more rank, and test_cli_mpi
# drives the same code through the binary. Two suites at a time on 2 cores: each runs 1.5-2x
# slower beside another, and the stage about a fifth faster (a 2-vCPU Zen 3: 800 s against 972).
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" \
  -E '^(test_dist_np1|test_dist_np3|test_cli_mpi)$' "$@"

# The thread pool every CPU kernel runs on (kernels/cpu/threads.cpp) hands work over through
# atomics: its suite also runs under ThreadSanitizer, built straight from its three sources (a
# whole TSan build would double this script's time). Every report is fatal.
mkdir -p build-tsan
g++ -std=c++17 -O1 -g -fsanitize=thread -fopenmp -I. tests/main.cpp tests/test_kernels_threads.cpp \
  kernels/cpu/threads.cpp -o build-tsan/test_kernels_threads
TSAN_OPTIONS="halt_on_error=1" OMP_NUM_THREADS=2 build-tsan/test_kernels_threads
