#!/usr/bin/env bash
# Installs the Debian packages sprig needs to build and run its main job; with --test also what
# the test suite needs (Debian packages and pip packages for the python3 on PATH). Idempotent:
# packages already present are skipped, so a second run does nothing.
# Usage: bash scripts/setup.sh [--test]
set -euo pipefail
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

packages=(
  build-essential cmake        # compiler and build
  doctest-dev                  # test framework
  zlib1g-dev                   # gzip IDX files
  nlohmann-json3-dev           # safetensors headers, --json output
  libcli11-dev                 # command line
  libcurl4-openssl-dev         # experiment tracking: MLflow REST API
  libopenmpi-dev openmpi-bin   # data-parallel training under mpirun (SPRIG_MPI)
  dataset-fashion-mnist        # the main job's data, in /usr/share/datasets/fashion-mnist
  python3-numpy                # tests cross-check safetensors files with numpy
)
test_packages=(                # only with --test
  clang-14 libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer, ASan and UBSan runtimes
  libomp-14-dev                # OpenMP for clang in the fuzz build
  chromium fonts-dejavu-core   # tests/report_check.py: reports rendered in headless Chromium
  python3-torch                # tests/torch_interchange.py (/usr/bin/python3): PyTorch twin of cnn2
  ccache                       # the emulator build (scripts/cuda-emulate.sh) reuses objects
)
python_test_packages=(         # pip, only with --test
  mlflow                       # tests/mlflow_check.py: a real server and file-store reader
  websocket-client             # tests/report_check.py: speaks DevTools protocol to Chromium
  onnxruntime                  # tests/onnx_check.py: runs sprig's ONNX exports
)
[ "$with_tests" -eq 1 ] && packages+=("${test_packages[@]}")

install_python_packages() {
  [ "$with_tests" -eq 1 ] && [ ${#python_test_packages[@]} -gt 0 ] || return 0
  # PIP_BREAK_SYSTEM_PACKAGES lets this work with Debian's python3 too (pyenv's ignores it).
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    "${python_test_packages[@]}"
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian packages present"
  install_python_packages
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_python_packages
echo "setup: done"
