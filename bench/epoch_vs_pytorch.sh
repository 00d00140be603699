#!/usr/bin/env bash
# Side-by-side training-epoch benchmark: sprig vs PyTorch, same model, data,
# batch size, optimizer, learning rate, seed and thread count, run in turn
# (sprig, pytorch, sprig, pytorch, ...) so that both see the same machine load.
#
# Usage: bench/epoch_vs_pytorch.sh [--model cnn2|mlp|resnet20|resnet32|resnet56|resnet20b]
#            [--epochs E] [--threads T] [--repeats R] [--limit-train N] [--limit-test N]
# cnn2 / mlp: Adam 1e-3, batch 64. ResNets: SGD lr 0.1, momentum 0.9, weight decay 5e-4
# (not on BatchNorm), cosine schedule, batch 128 (issue 13's recipe).
# Environment: SPRIG  sprig binary (default ./build/sprig)
#              PYTHON python with torch (default: first of /usr/bin/python3, python3
#                     that can `import torch`)
#              DATA_DIR Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist)
#
# Ratio = pytorch_seconds / sprig_seconds per epoch, per pair and the median over pairs:
# > 1 means sprig is faster. The load average before and after is printed with them.
set -euo pipefail

MODEL=cnn2
EPOCHS=1
THREADS=2
REPEATS=1
LIMIT_TRAIN=0
LIMIT_TEST=0
SEED=0

while [ $# -gt 0 ]; do
    case "$1" in
        --model)       MODEL="$2"; shift 2 ;;
        --epochs)      EPOCHS="$2"; shift 2 ;;
        --threads)     THREADS="$2"; shift 2 ;;
        --repeats)     REPEATS="$2"; shift 2 ;;
        --limit-train) LIMIT_TRAIN="$2"; shift 2 ;;
        --limit-test)  LIMIT_TEST="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$MODEL" in
    cnn2|mlp) OPT=adam; LR=1e-3; BATCH=64; RECIPE=() ;;
    resnet20|resnet32|resnet56|resnet20b)
        OPT=sgd; LR=0.1; BATCH=128
        RECIPE=(--momentum 0.9 --weight-decay 5e-4 --lr-schedule cosine) ;;
    *) echo "--model must be cnn2, mlp, resnet20, resnet32, resnet56 or resnet20b" >&2; exit 2 ;;
esac
LIMIT=()
if [ "$LIMIT_TRAIN" -gt 0 ]; then LIMIT+=(--limit-train "$LIMIT_TRAIN"); fi
if [ "$LIMIT_TEST" -gt 0 ]; then LIMIT+=(--limit-test "$LIMIT_TEST"); fi

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

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$REPEATS"); do
    echo "== sprig: $MODEL, $EPOCHS epoch(s), run $r/$REPEATS =="
    "$SPRIG" train --model "$MODEL" --dataset fashion-mnist --epochs "$EPOCHS" \
        --batch-size "$BATCH" --optimizer "$OPT" --lr "$LR" ${RECIPE[@]+"${RECIPE[@]}"} \
        ${LIMIT[@]+"${LIMIT[@]}"} --threads "$THREADS" --seed "$SEED" --json | tee "$TMP/sprig.$r.out"

    echo "== pytorch: $MODEL, $EPOCHS epoch(s), run $r/$REPEATS =="
    "$PYTHON" "$HERE/torch_train.py" --model "$MODEL" --epochs "$EPOCHS" \
        --batch-size "$BATCH" --optimizer "$OPT" --lr "$LR" ${RECIPE[@]+"${RECIPE[@]}"} \
        ${LIMIT[@]+"${LIMIT[@]}"} --threads "$THREADS" --seed "$SEED" --data-dir "$DATA_DIR" \
        --json | tee "$TMP/torch.$r.out"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

CPU="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
CORES="$(nproc --all)"

# Summarise: read the last stdout line of each run as JSON.
"$PYTHON" - "$TMP" "$REPEATS" "$CPU" "$CORES" "$THREADS" "$BATCH" "$MODEL" "$EPOCHS" "$OPT" \
    "$LR" "$LIMIT_TRAIN" "$LOAD_BEFORE" "$LOAD_AFTER" <<'EOF'
import json, statistics, sys

def last_json(path, who):
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        sys.exit(f"error: last stdout line of {who} ({path}) is not a JSON object")

def per_epoch(r):
    """Mean seconds per epoch; epoch_seconds when present, else train_seconds/epochs."""
    if r.get("epoch_seconds"):
        return sum(r["epoch_seconds"]) / len(r["epoch_seconds"])
    return float(r["train_seconds"]) / int(r["epochs"])

def accs(r):
    a = r.get("test_accuracy")
    a = a if isinstance(a, list) else [a]
    # Accept fractions (0.9) or percentages (90.0).
    return [x * 100 if x is not None and x <= 1.0 else x for x in a]

(tmp, repeats, cpu, cores, threads, batch, model, epochs, opt, lr, limit, load_before,
 load_after) = sys.argv[1:]
fmt = lambda xs: ", ".join("-" if x is None else f"{x:.2f}" for x in xs)
print()
print(f"machine : {cpu}, {cores} cores; load average {load_before} before, {load_after} after")
print(f"setup   : model={model} epochs={epochs} batch={batch} optimizer={opt} lr={lr} "
      f"threads={threads} train samples={limit if int(limit) > 0 else 'all'}")
print()
print(f"{'run':5}{'sprig s/epoch':>15}{'pytorch s/epoch':>17}{'ratio':>8}   "
      "test accuracy % (sprig | pytorch)")
ratios = []
for r in range(1, int(repeats) + 1):
    s = last_json(f"{tmp}/sprig.{r}.out", "sprig")
    t = last_json(f"{tmp}/torch.{r}.out", "pytorch")
    ratios.append(per_epoch(t) / per_epoch(s))
    print(f"{r:<5}{per_epoch(s):>15.2f}{per_epoch(t):>17.2f}{ratios[-1]:>8.2f}   "
          f"{fmt(accs(s))} | {fmt(accs(t))}")
print()
med = statistics.median(ratios)
print(f"ratio pytorch/sprig = {med:.2f} (median of {len(ratios)}; "
      f"{'sprig faster' if med > 1 else 'pytorch faster'})")
EOF
