#!/usr/bin/env bash
# The main job: build, then train cnn2 on Fashion-MNIST (5 epochs, batch 64, Adam 1e-3),
# print the model summary and the test accuracy, and save the model to out/cnn2.safetensors.
# Pruning, sparse inference and the report join this pipeline as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target sprig >/dev/null
mkdir -p out
./build/sprig train --model cnn2 --dataset fashion-mnist --epochs 5 --batch-size 64 \
  --optimizer adam --lr 1e-3 --threads "$(nproc)" --out out/cnn2.safetensors "$@"
./build/sprig eval --in out/cnn2.safetensors
