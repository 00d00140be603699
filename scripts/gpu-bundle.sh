#!/usr/bin/env bash
# Packs what a GPU session needs into gpu-bundle/ (git-ignored), to carry to a lent GPU machine
# whose image has CUDA but not Debian's C++ libraries (CLI11, doctest, libcurl, ...): the CUDA
# build's sprig and cuda test suites, the shared libraries they load that are neither glibc nor
# CUDA's, the Fashion-MNIST files and the GPU benchmark scripts. On the GPU machine:
#   bash gpu-bundle/run.sh check     # every cuda suite, then each under compute-sanitizer
#   bash gpu-bundle/run.sh epochs    # bench/gpu_epoch_vs_pytorch.sh
#   bash gpu-bundle/run.sh sparse    # sprig bench sparse-gpu
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
cp bench/gpu_epoch_vs_pytorch.sh bench/torch_train.py "$out/bench/"
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
  *) echo "usage: run.sh check|epochs|sparse [args]" >&2; exit 2 ;;
esac
RUN
chmod +x "$out/run.sh"
du -sh "$out"
