#!/usr/bin/env bash
# The main job on Fashion-MNIST, in one command (`sprig experiment pipeline`): build; train cnn2
# (5 epochs, batch 64, Adam 1e-3); prune it (Molchanov Taylor filter pruning, seed 002's recipe),
# remove the zeroed filters and fine-tune 5 epochs; prune 90% of the classifier's weights and
# fine-tune 1 epoch; pack it for sparse inference at batch 1 (per-layer plan measured on this
# machine) and run the packed model on the test set. It prints each stage, the tables, and as
# its last line the path of the HTML report; the checkpoints and packed model are in out/, the
# MLflow runs in out/mlruns. EPOCHS=1 FINETUNE_EPOCHS=1 make a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target sprig >/dev/null
mkdir -p out
./build/sprig experiment pipeline --dataset fashion-mnist --threads "$(nproc)" \
  --epochs "${EPOCHS:-5}" --finetune-epochs "${FINETUNE_EPOCHS:-5}" --out-dir out \
  --local-store out/mlruns --report out/main-job-report.html
