#!/usr/bin/env python3
"""Dense inference: sprig beside ONNX Runtime on the same models, same weights, same threads.

For each model (default mlp, cnn2, lenet5; resnet20 and resnet56 on request) the script makes a checkpoint with
`sprig train --epochs 0` (random weights: timing does not depend on their values), exports it
with `sprig export` (BatchNorm folded, as sprig folds it), and times at each batch size:

  sprig : `sprig bench model --format dense`, its dense_ms (median of --repeats forward passes
          after a warm-up, timed inside sprig, so process start-up is not counted)
  ort   : onnxruntime's CPUExecutionProvider on the ONNX file, intra_op_num_threads = --threads,
          sequential execution, all graph optimisations; median of --repeats runs after a warm-up

The two are interleaved: each round times sprig then ONNX Runtime for every (model, batch), and
--rounds rounds are run; a pair's ratio is ort_ms / sprig_ms (> 1: sprig faster) and the table
gives the median ratio over the rounds with its range, so load that comes and goes shows as
spread rather than as a bias. The machine's load average is printed before and after.
--busy starts one busy-looping process beside the timings (issue 14's contention case: a
second program holding one core), so the same table shows how each runtime degrades.

Needs: a sprig build (SPRIG, default ./build/sprig), numpy and onnxruntime
(`pip install onnxruntime`); a missing one is named and the script exits 2.

    python3 bench/inference_vs_runtimes.py --threads 2 --batches 1,8,64,256 --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    print(f"inference_vs_runtimes.py: {e}: pip install numpy onnxruntime", file=sys.stderr)
    sys.exit(2)

# Every model on Fashion-MNIST's (1, 28, 28) images (the ResNets as in bench/RESULTS.md).
INPUT_SHAPES = {m: (1, 28, 28) for m in ("mlp", "cnn2", "lenet5", "resnet20", "resnet56")}


def sprig(args, **kw):
    return subprocess.run([SPRIG] + args, check=True, capture_output=True, text=True, **kw)


def make_model(tmp, name):
    ck = os.path.join(tmp, f"{name}.safetensors")
    onnx = os.path.join(tmp, f"{name}.onnx")
    sprig(["train", "--model", name, "--dataset", "fashion-mnist", "--epochs", "0",
           "--limit-train", "64", "--limit-test", "64", "--quiet", "--out", ck])
    sprig(["export", "--in", ck, "--out", onnx])
    return ck, onnx


def time_sprig(ck, batch, threads, repeats):
    out = sprig(["bench", "model", "--in", ck, "--batch", str(batch), "--format", "dense",
                 "--threads", str(threads), "--repeats", str(repeats), "--json"]).stdout
    return json.loads(out.strip().splitlines()[-1])["dense_ms"]


def ort_session(onnx, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])


def time_ort(sess, shape, batch, repeats):
    x = np.random.default_rng(0).standard_normal((batch,) + shape).astype(np.float32)
    for _ in range(3):
        sess.run(None, {"input": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    global SPRIG
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,cnn2,lenet5")
    p.add_argument("--batches", default="1,8,64,256")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--busy", action="store_true",
                   help="keep one core busy with a second process while timing")
    a = p.parse_args()
    SPRIG = os.environ.get("SPRIG", "./build/sprig")
    models = a.models.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    for m in models:
        if m not in INPUT_SHAPES:
            sys.exit(f"--models: unknown model {m} (known: {', '.join(INPUT_SHAPES)})")
    print(f"machine: {os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    print(f"sprig {SPRIG}; onnxruntime {ort.__version__}; threads {a.threads}; "
          f"median of {a.repeats} runs per timing; {a.rounds} interleaved rounds")
    hog = None
    with tempfile.TemporaryDirectory() as tmp:
        built = {m: make_model(tmp, m) for m in models}
        if a.busy:
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            print("a second process keeps one core busy during the timings")
        sessions = {m: ort_session(built[m][1], a.threads) for m in models}
        ratios = {(m, b): [] for m in models for b in batches}
        best = {(m, b): [float("inf"), float("inf")] for m in models for b in batches}
        for _ in range(a.rounds):
            for m in models:
                for b in batches:
                    s = time_sprig(built[m][0], b, a.threads, a.repeats)
                    o = time_ort(sessions[m], INPUT_SHAPES[m], b, a.repeats)
                    ratios[(m, b)].append(o / s)
                    best[(m, b)] = [min(best[(m, b)][0], s), min(best[(m, b)][1], o)]
        if hog:
            hog.kill()
    print(f"load average after: {os.getloadavg()}\n")
    print(f"{'model':8}{'batch':>6}{'sprig ms':>11}{'ort ms':>11}{'ort/sprig':>11}  range")
    for m in models:
        for b in batches:
            r = ratios[(m, b)]
            s, o = best[(m, b)]
            print(f"{m:8}{b:>6}{s:>11.4f}{o:>11.4f}{statistics.median(r):>11.2f}  "
                  f"{min(r):.2f}-{max(r):.2f}")
    print("\nms: the best round's median; ort/sprig: the median over rounds of the per-round "
          "ratio (> 1: sprig faster)")


if __name__ == "__main__":
    main()
