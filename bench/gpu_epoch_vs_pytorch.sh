#!/usr/bin/env bash
# Training epochs on the GPU: sprig (`sprig train --device cuda`) beside PyTorch's CUDA build,
# same models, data, batch size, optimizer, learning rate and seed, and sprig's CPU epoch for
# the GPU speed-up (the bar is 10x). The GPU counterpart of bench/epoch_vs_pytorch.sh.
#
# Usage: bench/gpu_epoch_vs_pytorch.sh [--models "cnn2 mlp resnet20"] [--epochs E] [--batch-size B]
#            [--optimizer adam|sgd] [--threads T] [--limit-train N] [--tf32]
# Environment: SPRIG    sprig binary built with CUDA (default ./build/sprig)
#              PYTHON   python whose torch has CUDA (default: first of /usr/bin/python3,
#                       python3, python where torch.cuda.is_available())
#              DATA_DIR Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist)
#
# Each GPU run trains E epochs (default 2) and the LAST epoch is compared: the first one also
# pays for CUDA/cuBLAS initialisation and the caching allocators' first requests. Both sides
# read each batch from host memory and copy it to the GPU every step (as `sprig train` does),
# read the loss back only at the end of the epoch, and compute in plain FP32: PyTorch's TF32
# for convolutions and matmuls is turned off unless --tf32 is given. The CPU epoch is sprig's
# with --threads T (default: every core). --limit-train N trains both on the first N images
# (a CPU epoch of a ResNet on all 60,000 takes minutes).
# Ratios: pytorch_gpu / sprig_gpu (> 1: sprig faster) and sprig_cpu / sprig_gpu (GPU speed-up).
set -euo pipefail

MODELS="cnn2 mlp"
EPOCHS=2
BATCH=64
LR=1e-3
OPT=adam
SEED=0
THREADS="$(nproc --all)"
TF32=0
LIMIT_TRAIN=0

while [ $# -gt 0 ]; do
    case "$1" in
        --models)     MODELS="$2"; shift 2 ;;
        --epochs)     EPOCHS="$2"; shift 2 ;;
        --batch-size) BATCH="$2"; shift 2 ;;
        --optimizer)  OPT="$2"; shift 2 ;;
        --threads)    THREADS="$2"; shift 2 ;;
        --limit-train) LIMIT_TRAIN="$2"; shift 2 ;;
        --tf32)       TF32=1; shift ;;
        -h|--help)    sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for m in $MODELS; do
    case "$m" in cnn2|mlp|resnet20|resnet32|resnet56|resnet20b) ;;
        *) echo "--models: '$m' is not cnn2, mlp or a zoo ResNet (resnet20/32/56, resnet20b)" >&2; exit 2 ;;
    esac
done
case "$OPT" in adam|sgd) ;; *) echo "--optimizer must be adam or sgd" >&2; exit 2 ;; esac
[ "$EPOCHS" -ge 1 ] 2>/dev/null || { echo "--epochs must be >= 1" >&2; exit 2; }
[ "$LIMIT_TRAIN" -ge 0 ] 2>/dev/null || { echo "--limit-train must be >= 0" >&2; exit 2; }
LIMIT=()
if [ "$LIMIT_TRAIN" -gt 0 ]; then LIMIT=(--limit-train "$LIMIT_TRAIN"); fi

HERE="$(cd "$(dirname "$0")" && pwd)"
SPRIG="${SPRIG:-./build/sprig}"
DATA_DIR="${DATA_DIR:-/usr/share/datasets/fashion-mnist}"

if [ ! -x "$SPRIG" ]; then
    echo "error: sprig binary not found or not executable at '$SPRIG'." >&2
    echo "       Build it with CUDA (cmake -B build && cmake --build build) or set SPRIG=/path/to/sprig." >&2
    exit 1
fi

# A GPU, or stop here: nothing below means anything without one.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! GPU_LIST="$(nvidia-smi -L 2>&1)" ||
   ! printf '%s\n' "$GPU_LIST" | grep -q '^GPU '; then
    echo "error: no NVIDIA GPU found (nvidia-smi: ${GPU_LIST:-not installed})." >&2
    echo "       This benchmark times training on the GPU; run it on a machine with one." >&2
    exit 1
fi
GPU_NAME="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0)"

# PyTorch with CUDA, if some python has it.
if [ -z "${PYTHON:-}" ]; then
    for cand in /usr/bin/python3 python3 python; do
        if command -v "$cand" >/dev/null 2>&1 &&
           "$cand" -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
            PYTHON="$cand"; break
        fi
    done
elif ! "$PYTHON" -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
    echo "warning: PYTHON=$PYTHON has no torch with CUDA" >&2
    PYTHON=""
fi
if [ -z "${PYTHON:-}" ]; then
    echo "note: PyTorch CUDA is not installed (no python whose torch sees a GPU);" \
         "timing sprig only. Set PYTHON=/path/to/python to compare."
fi
SUMMARY_PY="${PYTHON:-python3}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# sprig's last stdout line is its JSON summary; a failure (no CUDA in this build, no device)
# is reported with sprig's own message.
run_sprig() {  # model device epochs out
    local model="$1" device="$2" epochs="$3" out="$4"
    if ! "$SPRIG" train --model "$model" --dataset fashion-mnist --data-dir "$DATA_DIR" \
            --epochs "$epochs" --batch-size "$BATCH" --optimizer "$OPT" --lr "$LR" \
            --threads "$THREADS" --seed "$SEED" --device "$device" ${LIMIT[@]+"${LIMIT[@]}"} \
            --json >"$out" 2>"$out.err"; then
        echo "error: sprig train --device $device failed:" >&2
        cat "$out.err" >&2
        exit 1
    fi
    grep '^epoch' "$out" || true
}

# PyTorch on the GPU: torch_train.py's data and models, timed as sprig's loop is.
run_torch() {  # model out
    "$PYTHON" - "$HERE" "$1" "$EPOCHS" "$BATCH" "$OPT" "$LR" "$SEED" "$DATA_DIR" "$TF32" \
        "$LIMIT_TRAIN" >"$2" <<'EOF'
import json, sys, time
here, model_name, epochs, batch, opt_name, lr, seed, data_dir, tf32, limit = sys.argv[1:]
epochs, batch, lr, seed, tf32 = int(epochs), int(batch), float(lr), int(seed), tf32 == "1"
sys.path.insert(0, here)
import torch
import torch.nn.functional as F
from torch_train import build_model, load_split  # the same models and normalisation

torch.backends.cuda.matmul.allow_tf32 = tf32
torch.backends.cudnn.allow_tf32 = tf32
torch.manual_seed(seed)
dev = torch.device("cuda")
x_train, y_train = load_split(data_dir, "train", "standard")
if int(limit) > 0:  # the first N, as sprig's --limit-train takes them
    x_train, y_train = x_train[:int(limit)], y_train[:int(limit)]
x_test, y_test = load_split(data_dir, "t10k", "standard")
n = x_train.shape[0]
model = build_model(model_name).to(dev)
params = sum(t.numel() for t in model.parameters())
opt = (torch.optim.Adam(model.parameters(), lr=lr) if opt_name == "adam"
       else torch.optim.SGD(model.parameters(), lr=lr))
gen = torch.Generator().manual_seed(seed)
epoch_seconds, train_loss, acc = [], [], []
for epoch in range(epochs):
    perm = torch.randperm(n, generator=gen)
    loss_sum = torch.zeros((), device=dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, n, batch):  # the last partial batch is kept, as sprig does
        idx = perm[i:i + batch]
        xb, yb = x_train[idx].to(dev), y_train[idx].to(dev)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * idx.shape[0]
    train_loss.append(round(loss_sum.item() / n, 4))  # waits for the queued steps
    torch.cuda.synchronize()
    epoch_seconds.append(round(time.perf_counter() - t0, 4))
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x_test.shape[0], 1000):
            out = model(x_test[i:i + 1000].to(dev))
            correct += (out.argmax(1).cpu() == y_test[i:i + 1000]).sum().item()
    model.train()
    acc.append(round(100.0 * correct / x_test.shape[0], 2))
    print(f"pytorch {torch.__version__} {model_name} epoch {epoch + 1}: "
          f"{epoch_seconds[-1]:.2f} s, loss {train_loss[-1]}, test accuracy {acc[-1]}%")
print(json.dumps({"framework": "pytorch", "model": model_name, "params": params,
                  "train_samples": n, "epoch_seconds": epoch_seconds, "train_loss": train_loss,
                  "test_accuracy": acc, "tf32": tf32, "torch": torch.__version__}))
EOF
    grep -v '^{' "$2" || true
}

echo "GPU: $GPU_NAME"
for model in $MODELS; do
    echo "== $model: sprig on the GPU ($EPOCHS epochs) =="
    run_sprig "$model" cuda "$EPOCHS" "$TMP/$model.sprig_gpu"
    echo "== $model: sprig on the CPU (1 epoch, $THREADS threads) =="
    run_sprig "$model" cpu 1 "$TMP/$model.sprig_cpu"
    if [ -n "${PYTHON:-}" ]; then
        echo "== $model: pytorch on the GPU ($EPOCHS epochs) =="
        run_torch "$model" "$TMP/$model.torch"
    fi
done

"$SUMMARY_PY" - "$TMP" "$GPU_NAME" "$MODELS" "$EPOCHS" "$BATCH" "$OPT" "$LR" "$THREADS" \
    "${PYTHON:+yes}" "$TF32" <<'EOF'
import json, os, sys
tmp, gpu, models, epochs, batch, opt, lr, threads, have_torch, tf32 = sys.argv[1:]

def last_json(path):
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        sys.exit(f"error: the last stdout line of {path} is not a JSON object")

def pct(a):  # sprig reports fractions, torch_train percent
    return a * 100 if a is not None and a <= 1.0 else a

print()
print(f"GPU     : {gpu}")
print(f"setup   : epochs={epochs} batch={batch} optimizer={opt} lr={lr} "
      f"cpu threads={threads} pytorch tf32={'on' if tf32 == '1' else 'off'}")
print("seconds : the last epoch on the GPU (warm), the one epoch on the CPU")
print()
head = f"{'model':6}{'params':>9}{'samples':>9}{'steps':>7}  {'sprig gpu':>10}{'pytorch gpu':>12}" \
       f"{'sprig cpu':>10}  {'pt/sprig':>9}{'cpu/gpu':>9}  accuracy % (sprig gpu, pytorch)"
print(head)
for m in models.split():
    g = last_json(os.path.join(tmp, f"{m}.sprig_gpu"))
    c = last_json(os.path.join(tmp, f"{m}.sprig_cpu"))
    t = last_json(os.path.join(tmp, f"{m}.torch")) if have_torch else None
    gs, cs = g["epoch_seconds"][-1], c["epoch_seconds"][-1]
    ts = t["epoch_seconds"][-1] if t else None
    steps = -(-int(g["train_samples"]) // int(batch))
    acc_t = f"{t['test_accuracy'][-1]:.2f}" if t else "-"
    print(f"{m:6}{g['params']:>9}{g['train_samples']:>9}{steps:>7}  {gs:>10.3f}"
          f"{(f'{ts:.3f}' if ts else '-'):>12}{cs:>10.2f}  "
          f"{(f'{ts / gs:.2f}' if ts else '-'):>9}{cs / gs:>8.1f}x  "
          f"{pct(g['test_accuracy']):.2f}, {acc_t}")
    if len(g["epoch_seconds"]) > 1:
        print(f"{'':6}sprig gpu epochs: {', '.join(f'{s:.3f}' for s in g['epoch_seconds'])} s"
              + (f"; pytorch: {', '.join(f'{s:.3f}' for s in t['epoch_seconds'])} s" if t else ""))
print()
print("pt/sprig > 1: sprig's GPU epoch is faster than PyTorch's; cpu/gpu: sprig's GPU speed-up "
      "over its CPU epoch (bar: 10x)")
if not have_torch:
    print("PyTorch CUDA is not installed: no PyTorch column")
EOF
