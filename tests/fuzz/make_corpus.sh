#!/usr/bin/env bash
# Regenerates the seed corpora in tests/fuzz/corpus/ (committed; scripts/fuzz.sh only reads
# them). Valid checkpoints, packed models and training states come from the sprig binary (tiny
# models trained on Friedman #1 / a few Fashion-MNIST images, pruned, packed in every format,
# stopped mid-run); IDX files, hand-made safetensors edge cases, model specs, train_state edge
# cases and fuzz_resume's edit sequences come from make_corpus.py.
# Usage: bash tests/fuzz/make_corpus.sh [path/to/sprig]   (default build/sprig)
set -euo pipefail
cd "$(dirname "$0")/../.."
sprig=$(realpath "${1:-build/sprig}")
out=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"
mkdir -p "$out"/{fuzz_idx,fuzz_safetensors,fuzz_model_spec,fuzz_packed_model,fuzz_train_state,fuzz_resume}

q=(--quiet --threads 1 --seed 1)
# Flat model on Friedman #1 (10 features): linear layers for csr, bsr and N:M.
"$sprig" train "${q[@]}" --dataset friedman1 --model 'linear(8) relu linear(4,bias=0) linear(1)' \
  --epochs 1 --limit-train 64 --out "$tmp/flat.safetensors"
"$sprig" prune "${q[@]}" --in "$tmp/flat.safetensors" --method magnitude --amount 0.7 \
  --out "$tmp/flat70.safetensors"
"$sprig" prune "${q[@]}" --in "$tmp/flat.safetensors" --method magnitude --granularity 2:4 \
  --out "$tmp/flat24.safetensors"
"$sprig" prune "${q[@]}" --in "$tmp/flat.safetensors" --method l1 --granularity block --block 2x2 \
  --amount 0.5 --out "$tmp/flatblk.safetensors"
# Small conv model on 28x28 images: conv layers pack as csr; max-pooling and flatten between.
"$sprig" train "${q[@]}" --model 'conv(2,3,stride=3) relu maxpool(3) flatten linear(10)' \
  --epochs 1 --limit-train 32 --out "$tmp/conv.safetensors"
"$sprig" prune "${q[@]}" --in "$tmp/conv.safetensors" --method magnitude --amount 0.8 \
  --limit-train 32 --out "$tmp/conv80.safetensors"

cp "$tmp/flat.safetensors" "$out/fuzz_safetensors/checkpoint-flat.st"
cp "$tmp/flat70.safetensors" "$out/fuzz_safetensors/checkpoint-masked.st"

pack() {  # pack NAME CHECKPOINT FORMAT [extra flags]
  local name=$1 in=$2 fmt=$3
  shift 3
  "$sprig" pack --in "$in" --out "$tmp/$name.safetensors" --format "$fmt" --repeats 1 "$@" >/dev/null
  cp "$tmp/$name.safetensors" "$out/fuzz_packed_model/$name.st"
}
pack flat-dense "$tmp/flat70.safetensors" dense
pack flat-csr "$tmp/flat70.safetensors" csr --no-shrink
pack flat-bsr "$tmp/flatblk.safetensors" bsr --no-shrink
pack flat-bsr13 "$tmp/flat70.safetensors" bsr --block 1x3 --no-shrink
pack flat-nm "$tmp/flat24.safetensors" nm --no-shrink
pack conv-csr "$tmp/conv80.safetensors" csr
pack conv-shrunk "$tmp/conv80.safetensors" dense

# Training states: the runs fuzz_train_state makes its checkpoints from (same config, so these
# seeds pass its checks against them and reach the training step).
fr=(--dataset friedman1 --model 'linear(8) relu linear(1)' --limit-train 64 --batch-size 16
  --epochs 2)
"$sprig" train "${q[@]}" "${fr[@]}" --optimizer adam --lr 0.01 --lr-schedule cosine \
  --stop-at-step 6 --out "$tmp/ts-adam.safetensors"
"$sprig" train "${q[@]}" "${fr[@]}" --optimizer sgd --lr 0.01 --momentum 0.9 --weight-decay 0.001 \
  --nesterov --lr-schedule multistep --lr-milestones 1 --warmup-epochs 1 --rewind-step 2 \
  --out "$tmp/ts-sgd.safetensors"
"$sprig" train "${q[@]}" "${fr[@]}" --optimizer adamw --lr 0.01 --weight-decay 0.01 \
  --stop-at-step 4 --out "$tmp/ts-adamw.safetensors"
state() {  # state NAME CHECKPOINT: the checkpoint's train_state JSON as a seed
  python3 - "$2" "$out/fuzz_train_state/$1" <<'EOF'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
open(sys.argv[2], "w").write(json.loads(data[8:8 + n])["__metadata__"]["train_state"])
EOF
}
state adam-mid-epoch.json "$tmp/ts-adam.safetensors"
state sgd-finished.json "$tmp/ts-sgd.safetensors"
state adamw-epoch-boundary.json "$tmp/ts-adamw.safetensors"

python3 tests/fuzz/make_corpus.py "$out"
du -sh "$out"/*
