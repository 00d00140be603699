#!/usr/bin/env bash
# The main job on Fashion-MNIST: build; train cnn2 (5 epochs, batch 64, Adam 1e-3); prune it
# (Molchanov Taylor filter pruning, seed 002's recipe) and fine-tune 5 epochs with the zeroed
# filters removed; prune 90% of the classifier's weights; pack it for sparse inference at
# batch 1 (per-layer plan measured on this machine) and run the packed model; print each
# stage's summary and accuracy, and a closing report.
# EPOCHS=1 FINETUNE_EPOCHS=1 make a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target sprig >/dev/null
mkdir -p out
threads="$(nproc)"
epochs="${EPOCHS:-5}"
finetune_epochs="${FINETUNE_EPOCHS:-5}"
sprig=./build/sprig

echo "== 1. train =="
$sprig train --model cnn2 --dataset fashion-mnist --epochs "$epochs" --batch-size 64 \
  --optimizer adam --lr 1e-3 --threads "$threads" --out out/cnn2.safetensors

echo "== 2. prune (Taylor filters, 37.5% per layer), shrink, fine-tune =="
$sprig prune --in out/cnn2.safetensors --method taylor --granularity filter --amount 0.375 \
  --finetune-epochs "$finetune_epochs" --shrink --threads "$threads" --out out/cnn2_pruned.safetensors

echo "== 3. prune 90% of the classifier's weights (magnitude), fine-tune 1 epoch =="
$sprig prune --in out/cnn2_pruned.safetensors --method magnitude --layers 5.weight --amount 0.9 \
  --finetune-epochs 1 --threads "$threads" --out out/cnn2_sparse.safetensors

echo "== 4. sparse inference =="
$sprig pack --in out/cnn2_sparse.safetensors --out out/cnn2_packed.safetensors --batch 1 \
  --threads "$threads"
$sprig run --in out/cnn2_packed.safetensors --threads "$threads"

echo "== report =="
$sprig eval --in out/cnn2.safetensors
$sprig eval --in out/cnn2_pruned.safetensors
$sprig eval --in out/cnn2_sparse.safetensors
ls -l out/cnn2.safetensors out/cnn2_pruned.safetensors out/cnn2_sparse.safetensors \
  out/cnn2_packed.safetensors
