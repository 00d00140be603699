#!/usr/bin/env bash
# Installs the Debian packages sprig needs to build, test and run its main job. Idempotent:
# packages already present are skipped, so a second run does nothing.
set -euo pipefail

packages=(
  build-essential cmake        # compiler and build
  doctest-dev                  # test framework
  zlib1g-dev                   # gzip IDX files
  nlohmann-json3-dev           # safetensors headers, --json output
  libcli11-dev                 # command line
  dataset-fashion-mnist        # the main job's data, in /usr/share/datasets/fashion-mnist
  python3-numpy                # tests cross-check safetensors files with numpy
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
