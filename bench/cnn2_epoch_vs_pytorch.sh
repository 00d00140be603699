#!/usr/bin/env bash
# Side-by-side training-epoch benchmark: sprig vs PyTorch, same model, data,
# batch size, optimizer, learning rate, seed and thread count.
#
# Usage: bench/cnn2_epoch_vs_pytorch.sh [--model cnn2|mlp] [--epochs E] [--threads T]
# Environment: SPRIG  sprig binary (default ./build/sprig)
#              PYTHON python with torch (default: first of /usr/bin/python3, python3
#                     that can `import torch`)
#              DATA_DIR Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist)
#
# Ratio = pytorch_seconds / sprig_seconds per epoch: > 1 means sprig is faster.
set -euo pipefail

MODEL=cnn2
EPOCHS=1
THREADS=2
BATCH=64
LR=1e-3
OPT=adam
SEED=0

while [ $# -gt 0 ]; do
    case "$1" in
        --model)   MODEL="$2"; shift 2 ;;
        --epochs)  EPOCHS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$MODEL" in cnn2|mlp) ;; *) echo "--model must be cnn2 or mlp" >&2; exit 2 ;; esac

HERE="$(cd "$(dirname "$0")" && pwd)"
SPRIG="${SPRIG:-./build/sprig}"
DATA_DIR="${DATA_DIR:-/usr/share/datasets/fashion-mnist}"

# Find a Python that has torch (the pyenv python3 on PATH may not).
if [ -z "${PYTHON:-}" ]; then
    for cand in /usr/bin/python3 python3 python; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then
            PYTHON="$cand"; break
        fi
    done
fi
if [ -z "${PYTHON:-}" ]; then
    echo "error: no python with torch found; set PYTHON=/path/to/python" >&2
    exit 1
fi

if [ ! -x "$SPRIG" ]; then
    echo "error: sprig binary not found or not executable at '$SPRIG'." >&2
    echo "       Build it first (cmake -B build && cmake --build build) or set SPRIG=/path/to/sprig." >&2
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "== sprig: $MODEL, $EPOCHS epoch(s) =="
"$SPRIG" train --model "$MODEL" --dataset fashion-mnist --epochs "$EPOCHS" \
    --batch-size "$BATCH" --optimizer "$OPT" --lr "$LR" --threads "$THREADS" \
    --seed "$SEED" --json | tee "$TMP/sprig.out"

echo "== pytorch: $MODEL, $EPOCHS epoch(s) =="
"$PYTHON" "$HERE/torch_train.py" --model "$MODEL" --epochs "$EPOCHS" \
    --batch-size "$BATCH" --optimizer "$OPT" --lr "$LR" --threads "$THREADS" \
    --seed "$SEED" --data-dir "$DATA_DIR" --json | tee "$TMP/torch.out"

CPU="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
CORES="$(nproc --all)"

# Summarise: read the last stdout line of each run as JSON.
"$PYTHON" - "$TMP/sprig.out" "$TMP/torch.out" "$CPU" "$CORES" "$THREADS" "$BATCH" \
    "$MODEL" "$EPOCHS" "$OPT" "$LR" <<'EOF'
import json, sys

def last_json(path, who):
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        sys.exit(f"error: last stdout line of {who} is not a JSON object")

def per_epoch(r):
    """Mean seconds per epoch; epoch_seconds when present, else train_seconds/epochs."""
    if r.get("epoch_seconds"):
        return sum(r["epoch_seconds"]) / len(r["epoch_seconds"]), r["epoch_seconds"]
    return float(r["train_seconds"]) / int(r["epochs"]), None

def accs(r):
    a = r.get("test_accuracy")
    a = a if isinstance(a, list) else [a]
    # Accept fractions (0.9) or percentages (90.0).
    return [x * 100 if x is not None and x <= 1.0 else x for x in a]

sprig_path, torch_path, cpu, cores, threads, batch, model, epochs, opt, lr = sys.argv[1:]
s, t = last_json(sprig_path, "sprig"), last_json(torch_path, "pytorch")
s_mean, s_list = per_epoch(s)
t_mean, t_list = per_epoch(t)
fmt = lambda xs: ", ".join("-" if x is None else f"{x:.2f}" for x in xs) if xs else "-"

print()
print(f"machine : {cpu}, {cores} cores")
print(f"setup   : model={model} epochs={epochs} batch={batch} optimizer={opt} lr={lr} threads={threads}")
print()
print(f"{'':10}{'s/epoch':>10}  {'per-epoch seconds':<28}{'test accuracy % per epoch'}")
print(f"{'sprig':10}{s_mean:>10.2f}  {fmt(s_list):<28}{fmt(accs(s))}")
print(f"{'pytorch':10}{t_mean:>10.2f}  {fmt(t_list):<28}{fmt(accs(t))}")
print()
ratio = t_mean / s_mean
print(f"ratio pytorch/sprig = {ratio:.2f}  ({'sprig faster' if ratio > 1 else 'pytorch faster'})")
EOF
