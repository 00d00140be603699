#!/usr/bin/env bash
# Packs what a GPU session needs into gpu-bundle/ (git-ignored), to carry to a lent GPU machine
# whose image has CUDA but not Debian's C++ libraries (CLI11, doctest, libcurl, ...): the CUDA
# build's sprig and cuda test suites, the shared libraries they load that are neither glibc nor
# CUDA's, the Fashion-MNIST files and the GPU benchmark scripts. On the GPU machine:
#   bash gpu-bundle/run.sh check     # every cuda suite, then each under compute-sanitizer
#   bash gpu-bundle/run.sh epochs    # bench/gpu_epoch_vs_pytorch.sh
#   bash gpu-bundle/run.sh sparse    # sprig bench sparse-gpu
#   bash gpu-bundle/run.sh session SECONDS   # all of it for one short lease, most important first
# Usage here: bash scripts/gpu-bundle.sh [BUILD_DIR]   (a CUDA build; default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=gpu-bundle
[[ -x "$build/tests/test_cuda_ops" ]] || {
  echo "gpu-bundle: $build has no CUDA test suites: build it with CUDA first" >&2
  exit 1
}
rm -rf "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out/data" "$out/bench" "$stage/bin" "$stage/lib"
cp "$build/sprig" "$build"/tests/test_cuda_* "$stage/bin/"
for exe in "$stage"/bin/*; do ldd "$exe" | awk '/=> \// {print $3}'; done | sort -u |
  while read -r lib; do
    case "$(basename "$lib")" in
      # glibc, the C++ runtime (the image's is newer) and CUDA's own libraries stay the image's
      libc.so* | libm.so* | libpthread* | libdl.so* | librt.so* | ld-linux* | libstdc++* | \
        libgcc_s* | libcublas* | libcusparse* | libnvJitLink* | libcudart*) ;;
      *) cp -L "$lib" "$stage/lib/" ;;
    esac
  done
strip "$stage"/bin/* "$stage"/lib/*
tar -C "$stage" -cJf "$out/payload.tar.xz" bin lib  # the carry limit is 64 MiB in all
cp /usr/share/datasets/fashion-mnist/*.gz "$out/data/"
cp bench/gpu_epoch_vs_pytorch.sh bench/torch_train.py bench/torch_resnet.py "$out/bench/"
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the carried sprig GPU checks (see scripts/gpu-bundle.sh).
set -euo pipefail
bundle="$(cd "$(dirname "$0")" && pwd)"
here=$(mktemp -d)
tar -C "$here" -xJf "$bundle/payload.tar.xz"
cp -r "$bundle/bench" "$bundle/data" "$here/"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
data=/usr/share/datasets/fashion-mnist   # where sprig looks by default
if [[ ! -f "$data/train-images-idx3-ubyte.gz" ]]; then
  mkdir -p "$data" && cp "$here"/data/*.gz "$data/"
fi
nvidia-smi -L
case "${1:-check}" in
  check)
    for suite in "$here"/bin/test_cuda_*; do
      echo "== $(basename "$suite")"
      "$suite"  # exits 77 if it finds no GPU: that is a failure here
    done
    for suite in "$here"/bin/test_cuda_*; do
      for tool in memcheck racecheck initcheck synccheck; do
        echo "== compute-sanitizer $tool: $(basename "$suite")"
        compute-sanitizer --tool "$tool" --error-exitcode 3 "$suite"
      done
    done ;;
  epochs) SPRIG="$here/bin/sprig" bash "$here/bench/gpu_epoch_vs_pytorch.sh" "${@:2}" ;;
  sparse) "$here/bin/sprig" bench sparse-gpu "${@:2}" ;;
  session)
    # One lease of a few minutes: the plain suites, the sparse sweep, the epochs, then the
    # sanitizers (memcheck on every suite before the other tools), each step under a timeout
    # and none started after SECONDS. A step that fails is reported and the next one still
    # runs. After each step the logs are packed into DEST/gpu-logs.tar.gz (DEST: $OUT, where
    # only a few files come back, else .) beside summary.txt, one line per step.
    budget=${2:-420}
    dest=${OUT:-$PWD}
    logs=$(mktemp -d)/gpu-logs
    mkdir -p "$logs"
    start=$SECONDS
    status=()
    step() {  # name cap_seconds command...
      local name=$1 cap=$2 left=$((budget - (SECONDS - start)))
      shift 2
      if ((left < 10)); then status+=("$name: not run (out of time)"); return; fi
      ((cap > left)) && cap=$left
      echo "== $name (at $((SECONDS - start)) s, cap $cap s)"
      local t0=$SECONDS rc=0
      timeout -k 5 "$cap" "$@" >>"$logs/$name.log" 2>&1 || rc=$?
      tail -n 12 "$logs/$name.log"
      status+=("$name: rc $rc in $((SECONDS - t0)) s")
      printf '%s\n' "${status[@]}" >"$dest/summary.txt"
      tar -C "$(dirname "$logs")" -czf "$dest/gpu-logs.tar.gz" gpu-logs
    }
    { nvidia-smi | head -4; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
      grep -m1 "model name" /proc/cpuinfo; nproc; uptime; } 2>&1 | tee "$logs/machine.txt" || true
    for suite in "$here"/bin/test_cuda_*; do step "$(basename "$suite")" 120 "$suite"; done
    step sparse 90 "$here/bin/sprig" bench sparse-gpu
    step epochs 150 env SPRIG="$here/bin/sprig" bash "$here/bench/gpu_epoch_vs_pytorch.sh" \
      --models "cnn2 mlp" --epochs 5
    step epochs-resnet20 90 env SPRIG="$here/bin/sprig" bash "$here/bench/gpu_epoch_vs_pytorch.sh" \
      --models resnet20 --epochs 2 --optimizer sgd --limit-train 8192
    sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck initcheck synccheck; do
      for suite in "$here"/bin/test_cuda_*; do
        step "$tool-$(basename "$suite")" 120 "$sanitizer" --tool "$tool" --error-exitcode 3 "$suite"
      done
    done
    echo "== summary"
    cat "$dest/summary.txt" ;;
  *) echo "usage: run.sh check|epochs|sparse|session [args]" >&2; exit 2 ;;
esac
RUN
chmod +x "$out/run.sh"
du -sh "$out"
