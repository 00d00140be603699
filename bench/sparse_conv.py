#!/usr/bin/env python3
"""Sparse convolution (csr_conv2d) against sprig's dense convolution, kernels and whole models.

Kernels: `sprig bench conv --sparsity S` on the 3x3 conv shapes of cnn2 and ResNet-20 on 28x28
inputs (random weights with exactly S of them zeroed; dense conv2d_forward and csr_conv2d
alternate in --rounds rounds inside one process, the median round is printed with the range of
the per-round ratios): every shape at 90% and batch 1 and 64, then the break-even sweep at
batch 64 (30-70% zeros).

Models (--models CK ...): pruned checkpoints; `sprig bench model --json` times every conv
layer dense and as CSR at batch 1 and 64, and the sums over the conv layers are compared
(median of 3 runs), beside the whole model's dense and planned times.

    SPRIG=build/sprig python3 bench/sparse_conv.py --threads 2 [--models a.safetensors ...]
"""
import argparse
import json
import os
import statistics
import subprocess

SHAPES = [  # (C, K, H, stride): 3x3, pad 1
    (1, 8, 28, 1), (8, 16, 28, 1), (1, 16, 28, 1), (16, 16, 28, 1), (16, 32, 28, 2),
    (32, 32, 14, 1), (32, 64, 14, 2), (64, 64, 7, 1)]


def sprig(args):
    return subprocess.run([SPRIG] + args, check=True, capture_output=True, text=True).stdout


def conv_line(n, c, k, h, stride, sparsity, a, repeats):
    out = sprig(["bench", "conv", "--n", str(n), "--c", str(c), "--k", str(k), "--h", str(h),
                 "--w", str(h), "--r", "3", "--pad", "1", "--stride", str(stride),
                 "--sparsity", str(sparsity), "--threads", str(a.threads), "--repeats",
                 str(repeats), "--rounds", str(a.rounds)])
    return out.strip().replace("conv2d ", "").split(", max |diff|")[0]


def model_sums(path, batch, a):
    runs = []
    for _ in range(3):
        out = sprig(["bench", "model", "--in", path, "--batch", str(batch), "--threads",
                     str(a.threads), "--repeats", "20", "--json"])
        j = json.loads(out.strip().splitlines()[-1])
        convs = [l for l in j["layers"] if l["type"] == "conv"]
        dense = sum(l["times_ms"]["dense"] for l in convs)
        csr = sum(l["times_ms"]["csr"] for l in convs)
        runs.append((dense / csr, dense, csr, j["dense_ms"], j["plan_ms"]))
    runs.sort()
    r, dense, csr, dm, pm = runs[1]
    return (f"{os.path.basename(path)} batch {batch}: conv layers dense {dense:.4f} ms, csr "
            f"{csr:.4f} ms, {r:.2f}x (runs {runs[0][0]:.2f}-{runs[-1][0]:.2f}); whole model "
            f"dense {dm:.4f} ms, plan {pm:.4f} ms, {dm / pm:.2f}x")


def main():
    global SPRIG
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--models", nargs="*", default=[])
    a = p.parse_args()
    SPRIG = os.environ.get("SPRIG", "./build/sprig")
    print(f"load average before: {os.getloadavg()}")
    for n in (1, 64):
        for c, k, h, st in SHAPES:
            print(conv_line(n, c, k, h, st, 0.9, a, 20))
    print("break-even at batch 64")
    for sp in (0.3, 0.4, 0.5, 0.6, 0.7):
        for c, k, h, st in [(16, 16, 28, 1), (32, 32, 14, 1), (64, 64, 7, 1), (16, 32, 28, 2)]:
            print(conv_line(64, c, k, h, st, sp, a, 10))
    for path in a.models:
        for b in (1, 64):
            print(model_sums(path, b, a))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
