#!/usr/bin/env python3
"""int8 post-training quantisation of mlp and cnn2 on Fashion-MNIST, dense and 90%-pruned:
the accuracy each loses, the file sizes, and whether onnxruntime's run of the QDQ export
predicts what sprig's int8 kernels predict (issue 17, bars 1, 2 and 4).

For each model: train (--epochs), prune 90% of the weights by global magnitude and fine-tune
(--finetune-epochs), then `sprig quantize` both with each calibration on --calibrate training
samples, and the pruned model also with quantisation-aware training (`--finetune-epochs`,
--qat-epochs, Adam at 1e-4, minmax ranges); `sprig eval` / `sprig run` give the test
accuracies. The dense float file is the
trained checkpoint's parameters as safetensors (sprig pack's size report). The pruned + int8
file is exported (`sprig export`, QDQ), onnxruntime runs it on the 10,000 test images
(normalised as sprig does) and the arg-max is compared with `sprig predict` on the same file.
Nothing here is timed. Needs numpy and onnxruntime (pip install onnxruntime).

Usage: SPRIG=build/sprig python3 bench/int8_accuracy.py [--workdir /tmp/sprig-int8]
           [--models mlp,cnn2] [--epochs 5] [--finetune-epochs 2] [--calibrate 1000]
"""
import argparse, gzip, json, os, struct, subprocess, sys

p = argparse.ArgumentParser()
p.add_argument("--workdir", default="/tmp/sprig-int8")
p.add_argument("--models", default="mlp,cnn2")
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--finetune-epochs", type=int, default=2)
p.add_argument("--calibrate", type=int, default=1000)
p.add_argument("--qat-epochs", type=int, default=1)
p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
a = p.parse_args()
sprig = os.path.abspath(os.environ.get("SPRIG", "build/sprig"))
try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    sys.exit(f"int8_accuracy.py: {e} (pip install numpy onnxruntime)")
os.makedirs(a.workdir, exist_ok=True)
W = lambda name: os.path.join(a.workdir, name)


def sprig_json(*args):
    out = subprocess.run([sprig, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_images():
    """(10000, 1, 28, 28) float32 normalised with Fashion-MNIST's mean and std, as sprig."""
    raw = gzip.open(os.path.join(a.data_dir, "t10k-images-idx3-ubyte.gz")).read()
    n, h, w = struct.unpack(">III", raw[4:16])
    x = np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, h, w).astype(np.float32) / 255
    return (x - np.float32(0.2860)) / np.float32(0.3530)


def save_input(path, x):
    header = json.dumps({"input": {"dtype": "F32", "shape": list(x.shape),
                                   "data_offsets": [0, x.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + x.astype("<f4").tobytes())


def load_logits(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    info = json.loads(raw[8:8 + n])["logits"]
    b, e = info["data_offsets"]
    return np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(info["shape"])


x = test_images()
save_input(W("test_input.safetensors"), x)
rows = []
for model in a.models.split(","):
    dense, pruned = W(f"{model}.safetensors"), W(f"{model}90.safetensors")
    if not os.path.exists(dense):
        subprocess.run([sprig, "train", "--model", model, "--epochs", str(a.epochs), "--quiet",
                        "--out", dense], check=True)
    if not os.path.exists(pruned):
        subprocess.run([sprig, "prune", "--in", dense, "--scope", "global", "--amount", "0.9",
                        "--finetune-epochs", str(a.finetune_epochs), "--quiet", "--out", pruned],
                       check=True)
    acc = {name: sprig_json("eval", "--in", path)["test_accuracy"]
           for name, path in (("dense", dense), ("pruned", pruned))}
    for src, path in (("dense", dense), ("pruned", pruned)):
        hows = ["minmax", "percentile", "entropy"] + (["qat"] if src == "pruned" else [])
        for how in hows:
            q = W(f"{model}_{src}_{how}.int8.safetensors")
            flags = ["--calibration", how] if how != "qat" else [
                "--finetune-epochs", str(a.qat_epochs)]
            qj = sprig_json("quantize", "--in", path, "--out", q, "--calibrate", str(a.calibrate),
                            "--int8-only", "--quiet", *flags)
            qa = sprig_json("run", "--in", q)["test_accuracy"]
            dense_file = sprig_json("pack", "--in", dense, "--out", W("dense_size.safetensors"),
                                    "--format", "dense", "--no-shrink")["dense_file_bytes"]
            row = dict(model=model, source=src, calibration=how, float_acc=acc[src],
                       int8_acc=qa, dense_float_acc=acc["dense"],
                       int8_bytes=qj["packed_bytes"], dense_file_bytes=dense_file)
            if how == "minmax":  # onnxruntime on the QDQ export against sprig's own predictions
                onnx = q.replace(".safetensors", ".onnx")
                subprocess.run([sprig, "export", "--in", q, "--out", onnx], check=True,
                               capture_output=True)
                sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
                ort_logits = np.concatenate([sess.run(["logits"], {"input": x[i:i + 1000]})[0]
                                             for i in range(0, len(x), 1000)])
                subprocess.run([sprig, "predict", "--in", q, "--input",
                                W("test_input.safetensors"), "--out", W("logits.safetensors")],
                               check=True, capture_output=True)
                mine = load_logits(W("logits.safetensors"))
                row["ort_agreement"] = float((ort_logits.argmax(1) == mine.argmax(1)).mean())
            rows.append(row)
            print(json.dumps(row), flush=True)

print()
print(f"sprig {sprig}, onnxruntime {ort.__version__}, {a.calibrate} calibration samples")
print("| model | weights | calibration | float acc | int8 acc | loss vs its float | loss vs dense float "
      "| int8 file / dense float file | onnxruntime QDQ = sprig int8 |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    agree = f"{100 * r['ort_agreement']:.2f}%" if "ort_agreement" in r else "-"
    print(f"| {r['model']} | {'90% pruned' if r['source'] == 'pruned' else 'dense'} | "
          f"{r['calibration'] if r['calibration'] != 'qat' else f'minmax + QAT {a.qat_epochs} ep'} | {100 * r['float_acc']:.2f}% | {100 * r['int8_acc']:.2f}% | "
          f"{100 * (r['float_acc'] - r['int8_acc']):+.2f} pp | "
          f"{100 * (r['dense_float_acc'] - r['int8_acc']):+.2f} pp | "
          f"{r['int8_bytes'] / r['dense_file_bytes']:.3f} | {agree} |")
