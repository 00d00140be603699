#!/usr/bin/env bash
# A/B of cpu::conv2d between a git revision and the working tree, in one process: the old
# kernels/cpu/conv.cpp is compiled into its own namespace next to the current one, both link
# the current gemm, and each shape alternates old, new, old, new... (best of --repeats).
#
# Usage: bench/conv_ab.sh REV [--threads T] [--repeats R] [--batch N]
# Shapes: resnet20's 3x3 convolutions on Fashion-MNIST (16 ch 28x28, 32 ch 14x14, 64 ch 7x7,
# stride 1, and the two stride-2 ones). Needs build/kernels/libsprig_kernels_cpu.a (cmake
# --build build --target sprig_kernels_cpu). Prints old/new milliseconds and old/new ratio
# (> 1: the working tree is faster) for forward and backward (dx, dw, db).
set -euo pipefail
REV="${1:?usage: bench/conv_ab.sh REV [--threads T] [--repeats R] [--batch N]}"; shift
THREADS=2; REPEATS=7; BATCH=128
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) THREADS="$2"; shift 2 ;;
        --repeats) REPEATS="$2"; shift 2 ;;
        --batch)   BATCH="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LIB="$ROOT/build/kernels/libsprig_kernels_cpu.a"
[ -f "$LIB" ] || { echo "error: $LIB not found; build sprig_kernels_cpu first" >&2; exit 1; }
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
git -C "$ROOT" show "$REV:kernels/cpu/conv.cpp" |
    sed 's/^namespace sprig::cpu {/namespace sprig::cpu { namespace old_rev {/;
         s|^}  // namespace sprig::cpu|} }  // namespace sprig::cpu|' > "$TMP/conv_old.cpp"
cat > "$TMP/main.cpp" <<'CPP'
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>
#include "kernels/cpu/conv.h"
namespace sprig::cpu::old_rev {
void conv2d_forward(const Conv2dShape&, const float*, const float*, const float*, float*);
void conv2d_backward(const Conv2dShape&, const float*, const float*, const float*, float*,
                     float*, float*);
}  // namespace sprig::cpu::old_rev
using namespace sprig::cpu;
int main(int argc, char** argv) {
  const int threads = std::atoi(argv[1]), repeats = std::atoi(argv[2]);
  const int64_t N = std::atoi(argv[3]);
  omp_set_num_threads(threads);
  const Conv2dShape shapes[] = {{N, 16, 28, 28, 16, 3, 3, 1, 1, 1}, {N, 16, 28, 28, 32, 3, 3, 2, 1, 1},
                                {N, 32, 14, 14, 32, 3, 3, 1, 1, 1}, {N, 32, 14, 14, 64, 3, 3, 2, 1, 1},
                                {N, 64, 7, 7, 64, 3, 3, 1, 1, 1}};
  std::printf("threads %d, batch %lld, best of %d alternating runs\n", threads, (long long)N, repeats);
  std::printf("%-26s %9s %9s %6s   %9s %9s %6s\n", "shape (C->K, HxW, stride)", "fwd old", "fwd new",
              "ratio", "bwd old", "bwd new", "ratio");
  for (const Conv2dShape& s : shapes) {
    std::mt19937 g(1);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> x(s.N * s.C * s.H * s.W), w(s.K * s.C * s.R * s.S), b(s.K);  // (N,C,H,W) (K,C,R,S)
    std::vector<float> y(s.N * s.K * s.P() * s.Q()), dy(y.size());                  // (N,K,P,Q)
    std::vector<float> dx(x.size()), dw(w.size()), db(s.K);
    for (auto* v : {&x, &w, &b, &dy})
      for (float& e : *v) e = u(g);
    auto ms = [](auto&& fn) {
      auto t0 = std::chrono::steady_clock::now();
      fn();
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    double f[2] = {1e30, 1e30}, bw[2] = {1e30, 1e30};
    for (int r = 0; r < repeats; r++) {
      f[0] = std::min(f[0], ms([&] { old_rev::conv2d_forward(s, x.data(), w.data(), b.data(), y.data()); }));
      f[1] = std::min(f[1], ms([&] { conv2d_forward(s, x.data(), w.data(), b.data(), y.data()); }));
      bw[0] = std::min(bw[0], ms([&] { old_rev::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data()); }));
      bw[1] = std::min(bw[1], ms([&] { conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data()); }));
    }
    char name[64];
    std::snprintf(name, sizeof name, "%lld->%lld, %lldx%lld, s%lld", (long long)s.C, (long long)s.K,
                  (long long)s.H, (long long)s.W, (long long)s.stride);
    std::printf("%-26s %9.2f %9.2f %6.2f   %9.2f %9.2f %6.2f\n", name, f[0], f[1], f[0] / f[1], bw[0],
                bw[1], bw[0] / bw[1]);
  }
}
CPP
g++ -O3 -march=native -fopenmp -std=c++17 -I"$ROOT" "$TMP/main.cpp" "$TMP/conv_old.cpp" \
    "$ROOT/kernels/cpu/conv.cpp" "$LIB" -o "$TMP/conv_ab"
echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc --all) cores;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); old = $REV ($(git -C "$ROOT" log -1 --format=%h "$REV")), new = working tree"
"$TMP/conv_ab" "$THREADS" "$REPEATS" "$BATCH"
