#!/usr/bin/env python3
"""Inference: sprig beside ONNX Runtime (dense) or DeepSparse (sparse), same weights, same threads.

Dense mode (the default). For each model (default mlp, cnn2, lenet5; resnet20 and resnet56 on
request) the script makes a checkpoint with `sprig train --epochs 0` (random weights: timing
does not depend on their values), exports it with `sprig export` (BatchNorm folded, as sprig
folds it), and times at each batch size (default 1, 8, 64, 256):

  sprig : `sprig bench model --format dense`, its dense_ms (median of --repeats forward passes
          after a warm-up, timed inside sprig, so process start-up is not counted)
  ort   : onnxruntime's CPUExecutionProvider on the ONNX file, intra_op_num_threads = --threads,
          sequential execution, all graph optimisations; median of --repeats runs after a warm-up

Sparse mode (--sparse). For each model (default mlp, cnn2, lenet5, resnet20) the same random
checkpoint is pruned with `sprig prune --method magnitude --scope global --amount 0.9`
(--amount; --scope layer prunes each layer to it; unstructured, every weight tensor), or
--checkpoint MODEL=PATH gives the pruned checkpoint (the main job's filter-pruned cnn2), and both
the dense and the pruned checkpoints are
exported (the pruned weights are exact zeros in the ONNX initializers). At each batch size
(default 1, 64, 256) it times:

  sprig     : `sprig bench model` (auto plan) on the pruned checkpoint, its plan_ms: the packed
              model, each layer dense, CSR, BSR or N:M as sprig's planner chose
  deepsparse: DeepSparse (Neural Magic's sparse CPU runtime) on the pruned ONNX file,
              deepsparse.Engine(batch_size=B, num_cores=--threads), its default single-stream
              scheduler; median of --repeats engine.run calls after a warm-up
  ort       : ONNX Runtime as above on the dense (unpruned) ONNX file, the usual baseline
  ort-p     : ONNX Runtime on the pruned ONNX file (it does not skip the zeros)
--granularity 2:4 prunes every group of 4 weights to 2 instead (magnitude; 50% sparse).

A model DeepSparse refuses (an operator it does not support, ...) shows "refused" in its cells
and the reason below the table. After the table, per model: the pruned checkpoint's sparsity,
the fraction of the graph DeepSparse runs itself (the rest falls back to its bundled ONNX
Runtime) and the largest difference between DeepSparse's and ONNX Runtime's outputs.

Sweep mode (--sweep MODEL). One model against both peers over sparsity (--sparsities, default
0,0.5,0.7,0.9,0.95; pruned as in sparse mode, 0 being the unpruned checkpoint) at each batch size
(default 1, 64), in interleaved rounds: sprig's packed plan (plan_ms) and its dense path
(dense_ms) from one `sprig bench model`, DeepSparse and ONNX Runtime on the same pruned ONNX file
(ONNX Runtime does not skip zeros: the dense peer). Prints a table and, with --svg PATH, writes a
chart of time vs sparsity, one panel per batch size (bench/svg_chart.py).

int8 mode (--int8). The same pruned checkpoints, quantised with `sprig quantize --int8-only`
(calibrated on 256 Fashion-MNIST training images) and exported as QDQ ONNX (`sprig export`).
At each batch size (default 1, 64, 256) it times:

  sprig-int8: `sprig bench model --int8`, its int8_ms: every layer on sprig's int8 kernels
              (the int8 plan re-made at the batch), timed in rounds alternating with
  sprig-mixed: its int8_mixed_ms, the plan `sprig quantize` writes by default: each layer
              int8 or float, whichever it measured faster (timed in the same rounds)
  sprig-f32 : its plan_ms, the float packed plan of the same pruned weights
  deepsparse: DeepSparse on the QDQ ONNX file, as above
  ort       : ONNX Runtime on the QDQ ONNX file

In every mode the runtimes are interleaved: each round times every runtime for every (model,
batch), and --rounds rounds are run; a pair's ratio is other_ms / sprig_ms (> 1: sprig faster)
and the table gives the median ratio over the rounds with its range, so load that comes and
goes shows as spread rather than as a bias. The machine's load average is printed before and
after. --busy adds issue 14's contention case, a second program holding one core: in dense mode
every round times each runtime quiet and then beside one busy-looping process, and a last table
gives each runtime's slowdown (busy / quiet, same round) and their ratio; in the sparse modes the
busy process runs beside all the timings.

Needs: a sprig build (SPRIG, default ./build/sprig), numpy and onnxruntime, and for --sparse
deepsparse 1.8 (CPython 3.8-3.11 on Linux; `pip install onnxruntime deepsparse==1.8.0`). The
script installs nothing: a missing one that the mode needs is named and the script exits 2.
DeepSparse's usage analytics are switched off (NM_DISABLE_ANALYTICS=1) before it is imported.

    python3 bench/inference_vs_runtimes.py --threads 2 --batches 1,8,64,256 --rounds 3
    python3 bench/inference_vs_runtimes.py --sparse --threads 2 --rounds 3
    python3 bench/inference_vs_runtimes.py --sparse --models cnn2 --checkpoint cnn2=out/X.safetensors
    python3 bench/inference_vs_runtimes.py --int8 --models mlp,cnn2 --threads 2 --rounds 3
    python3 bench/inference_vs_runtimes.py --sweep resnet20 --svg bench/resnet20_sweep.svg
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

missing = []  # pip names of the modules that failed to import
try:
    import numpy as np
except ImportError:
    missing.append("numpy")
try:
    import onnxruntime as ort
except ImportError:
    missing.append("onnxruntime")
deepsparse = None  # imported by main() for --sparse only

from svg_chart import write_chart

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


def make_pruned(tmp, name, ck, amount, scope, granularity="element"):
    """Magnitude pruning of every weight to `amount` (scope global or layer; an N:M granularity
    such as 2:4 sets the amount itself); the pruned checkpoint and ONNX file."""
    pck = os.path.join(tmp, f"{name}.pruned.safetensors")
    ponnx = os.path.join(tmp, f"{name}.pruned.onnx")
    sprig(["prune", "--in", ck, "--method", "magnitude", "--scope", scope, "--granularity",
           granularity, "--amount", str(amount), "--out", pck])
    sprig(["export", "--in", pck, "--out", ponnx])
    return pck, ponnx


def given_pruned(tmp, name, ck):
    """A pruned checkpoint given on the command line (--checkpoint) and its ONNX export."""
    if not os.path.isfile(ck):
        sys.exit(f"--checkpoint {name}={ck}: no such file")
    ponnx = os.path.join(tmp, f"{name}.given.onnx")
    sprig(["export", "--in", ck, "--out", ponnx])
    return ck, ponnx


def bench_sprig(ck, batch, threads, repeats, fmt, extra=()):
    """`sprig bench model --json`'s object: dense_ms, plan_ms (--format auto), sparsity, ..."""
    out = sprig(["bench", "model", "--in", ck, "--batch", str(batch), "--format", fmt,
                 "--threads", str(threads), "--repeats", str(repeats), "--json", *extra]).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_sprig(ck, batch, threads, repeats):
    return bench_sprig(ck, batch, threads, repeats, "dense")["dense_ms"]


def ort_session(onnx, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])


def random_input(shape, batch):
    return np.random.default_rng(0).standard_normal((batch,) + shape).astype(np.float32)


def time_calls(run, repeats):
    """Median milliseconds of `repeats` calls of run(), after 3 warm-up calls."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_ort(sess, shape, batch, repeats):
    x = random_input(shape, batch)
    return time_calls(lambda: sess.run(None, {"input": x}), repeats)


def time_deepsparse(engine, shape, batch, repeats):
    x = random_input(shape, batch)
    return time_calls(lambda: engine.run([x]), repeats)


def deepsparse_engine(onnx, shape, batch, threads, ort_sess):
    """DeepSparse's engine for the ONNX file, or the reason it refused it.

    Returns (engine, note): note says how much of the graph DeepSparse runs itself and how far
    its output is from ONNX Runtime's on the same file; engine is None when it refused."""
    try:
        engine = deepsparse.Engine(model=onnx, batch_size=batch, num_cores=threads)
        x = random_input(shape, batch)
        diff = float(np.abs(engine.run([x])[0] - ort_sess.run(None, {"input": x})[0]).max())
    except Exception as e:  # DeepSparse raises RuntimeError for a model it cannot compile
        reason = " ".join(str(e).split())  # the end of a long message says the most
        return None, "refused: " + (reason if len(reason) <= 240 else "..." + reason[-240:])
    note = (f"runs {engine.fraction_of_supported_ops:.0%} of the ops itself, "
            f"max |deepsparse - ort-p| {diff:.1e}")
    if engine.num_cores != threads:
        note += f"; WARNING: {engine.num_cores} cores, not {threads}"
    return engine, note


def ratio_cell(r):
    return f"{statistics.median(r):>10.2f}  {min(r):.2f}-{max(r):.2f}"


def start_hog():
    """A second process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_dense(a, models, batches):
    print(f"sprig {SPRIG}; onnxruntime {ort.__version__}; threads {a.threads}; "
          f"median of {a.repeats} runs per timing; {a.rounds} interleaved rounds")
    keys = [(m, b) for m in models for b in batches]
    phases = ("quiet", "busy") if a.busy else ("quiet",)
    with tempfile.TemporaryDirectory() as tmp:
        built = {m: make_model(tmp, m) for m in models}
        sessions = {m: ort_session(built[m][1], a.threads) for m in models}
        # per phase and (model, batch): each round's (sprig ms, ort ms)
        times = {(p, k): [] for p in phases for k in keys}
        for _ in range(a.rounds):
            for p in phases:
                hog = start_hog() if p == "busy" else None
                try:
                    for m, b in keys:
                        s = time_sprig(built[m][0], b, a.threads, a.repeats)
                        o = time_ort(sessions[m], INPUT_SHAPES[m], b, a.repeats)
                        times[(p, (m, b))].append((s, o))
                finally:
                    if hog:
                        hog.kill()
                        hog.wait()
    print(f"load average after: {os.getloadavg()}\n")
    for p in phases:
        if a.busy:
            print(f"{p}: " + ("nothing else started" if p == "quiet" else
                              "a second process keeps one core busy"))
        print(f"{'model':8}{'batch':>6}{'sprig ms':>11}{'ort ms':>11}{'ort/sprig':>11}  range")
        for m, b in keys:
            t = times[(p, (m, b))]
            r = [o / s for s, o in t]
            print(f"{m:8}{b:>6}{min(s for s, _ in t):>11.4f}{min(o for _, o in t):>11.4f}"
                  f"{ratio_cell(r)}")
        print()
    print("ms: the best round's median; ort/sprig: the median over rounds of the per-round "
          "ratio (> 1: sprig faster)")
    if not a.busy:
        return
    # Each round's slowdown (busy ms / quiet ms of the same round) per runtime, and how they
    # compare: ort's slowdown / sprig's > 1 means sprig degrades less (issue 14, bar 6).
    print(f"\nslowdown with one core held: busy / quiet, the same round\n"
          f"{'model':8}{'batch':>6}{'sprig':>8}{'ort':>8}{'ort slowdown / sprig slowdown':>32}"
          f"  range")
    for m, b in keys:
        q, h = times[("quiet", (m, b))], times[("busy", (m, b))]
        ss = [hb[0] / qb[0] for qb, hb in zip(q, h)]
        os_ = [hb[1] / qb[1] for qb, hb in zip(q, h)]
        r = [o / s for s, o in zip(ss, os_)]
        print(f"{m:8}{b:>6}{statistics.median(ss):>8.2f}{statistics.median(os_):>8.2f}"
              f"{statistics.median(r):>32.2f}  {min(r):.2f}-{max(r):.2f}")
    print("sprig / ort: the median over rounds of that runtime's slowdown; the last column: "
          "the median of the\nper-round ratio of the two slowdowns (>= 1: sprig slows down "
          "no more than ONNX Runtime)")


def pruning(a):
    """How --sparse prunes, in words."""
    if a.granularity != "element":
        return f"{a.granularity} by magnitude"
    return f"{a.amount:.0%} by {a.scope} magnitude"


def run_sparse(a, models, batches, given):
    print(f"sprig {SPRIG}; deepsparse {deepsparse.__version__}; onnxruntime {ort.__version__}; "
          f"threads {a.threads}; pruned {pruning(a)}; "
          f"median of {a.repeats} runs per timing; {a.rounds} interleaved rounds")
    keys = [(m, b) for m in models for b in batches]
    hog = None
    with tempfile.TemporaryDirectory() as tmp:
        dense = {m: make_model(tmp, m) for m in models}
        pruned = {m: given_pruned(tmp, m, given[m]) if m in given else
                  make_pruned(tmp, m, dense[m][0], a.amount, a.scope, a.granularity)
                  for m in models}
        ort_dense = {m: ort_session(dense[m][1], a.threads) for m in models}
        ort_pruned = {m: ort_session(pruned[m][1], a.threads) for m in models}
        engines, notes = {}, {}
        for m, b in keys:
            engines[(m, b)], notes[(m, b)] = deepsparse_engine(
                pruned[m][1], INPUT_SHAPES[m], b, a.threads, ort_pruned[m])
        if a.busy:
            hog = start_hog()
            print("a second process keeps one core busy during the timings")
        # per (model, batch): best ms of sprig, deepsparse, ort (dense), ort (pruned); ratios
        best = {k: [float("inf")] * 4 for k in keys}
        ds_ratios = {k: [] for k in keys}
        ort_ratios = {k: [] for k in keys}
        sparsity = {}
        for _ in range(a.rounds):
            for m, b in keys:
                shape = INPUT_SHAPES[m]
                js = bench_sprig(pruned[m][0], b, a.threads, a.repeats, "auto")
                sparsity[m] = js["sparsity"]
                s = js["plan_ms"]
                d = float("nan")
                if engines[(m, b)] is not None:
                    d = time_deepsparse(engines[(m, b)], shape, b, a.repeats)
                    ds_ratios[(m, b)].append(d / s)
                o = time_ort(ort_dense[m], shape, b, a.repeats)
                op = time_ort(ort_pruned[m], shape, b, a.repeats)
                ort_ratios[(m, b)].append(o / s)
                best[(m, b)] = [min(x, y) for x, y in zip(best[(m, b)], (s, d, o, op))]
        if hog:
            hog.kill()
    print(f"load average after: {os.getloadavg()}\n")
    print(f"{'model':9}{'batch':>5}{'sprig ms':>10}{'ds ms':>10}{'ort ms':>10}{'ort-p ms':>10}"
          f"{'ds/sprig':>10}  {'range':11}{'ort/sprig':>10}  range")
    for m, b in keys:
        s, d, o, op = best[(m, b)]
        if engines[(m, b)] is None:
            ds_ms, ds_ratio = f"{'refused':>10}", f"{'-':>10}  {'':11}"
        else:
            ds_ms, ds_ratio = f"{d:>10.4f}", ratio_cell(ds_ratios[(m, b)])
        print(f"{m:9}{b:>5}{s:>10.4f}{ds_ms}{o:>10.4f}{op:>10.4f}{ds_ratio}"
              f"{ratio_cell(ort_ratios[(m, b)])}")
    print("\nms: the best round's median; sprig: the packed plan (plan_ms); ds: DeepSparse on the "
          "pruned ONNX;\nort: ONNX Runtime on the dense ONNX, ort-p: on the pruned one; "
          "ds/sprig and ort/sprig: the median\nover rounds of the per-round ratio "
          "(> 1: sprig faster) and its range\n")
    for m in models:
        source = f" ({given[m]}, given)" if m in given else ""
        print(f"{m}: pruned checkpoint{source} {sparsity[m]:.1%} sparse")
        for b in batches:
            print(f"  deepsparse at batch {b}: {notes[(m, b)]}")


SWEEP_COLORS = {"sprig plan": "#d62728", "sprig dense": "#1f77b4", "DeepSparse": "#9467bd",
                "ONNX Runtime": "#2ca02c"}


def run_sweep(a, m, batches, sparsities):
    print(f"sprig {SPRIG}; deepsparse {deepsparse.__version__}; onnxruntime {ort.__version__}; "
          f"threads {a.threads}; {m} pruned by {a.scope} magnitude; median of {a.repeats} runs "
          f"per timing; {a.rounds} interleaved rounds")
    shape = INPUT_SHAPES[m]
    keys = [(sp, b) for sp in sparsities for b in batches]
    with tempfile.TemporaryDirectory() as tmp:
        dense = make_model(tmp, m)
        pruned = {}  # sparsity -> (checkpoint, onnx)
        for sp in sparsities:
            pruned[sp] = dense if sp == 0 else make_pruned(tmp, f"{m}_{sp:g}", dense[0], sp,
                                                           a.scope)
        sessions = {sp: ort_session(pruned[sp][1], a.threads) for sp in sparsities}
        engines, notes = {}, {}
        for sp, b in keys:
            engines[(sp, b)], notes[(sp, b)] = deepsparse_engine(pruned[sp][1], shape, b,
                                                                 a.threads, sessions[sp])
        # per (sparsity, batch): each round's (plan, dense, deepsparse, ort) ms
        times = {k: [] for k in keys}
        real = {}  # sparsity -> the checkpoint's measured sparsity
        for _ in range(a.rounds):
            for sp, b in keys:
                js = bench_sprig(pruned[sp][0], b, a.threads, a.repeats, "auto")
                real[sp] = js["sparsity"]
                d = float("nan")
                if engines[(sp, b)] is not None:
                    d = time_deepsparse(engines[(sp, b)], shape, b, a.repeats)
                o = time_ort(sessions[sp], shape, b, a.repeats)
                times[(sp, b)].append((js["plan_ms"], js["dense_ms"], d, o))
    print(f"load average after: {os.getloadavg()}\n")
    print(f"{'sparsity':>8}{'batch':>6}{'plan ms':>10}{'dense ms':>10}{'ds ms':>10}{'ort ms':>10}"
          f"{'ds/plan':>10}  {'range':11}{'ort/plan':>10}  range")
    best = {}
    for sp, b in keys:
        t = times[(sp, b)]
        best[(sp, b)] = [min(r[i] for r in t) for i in range(4)]
        p, dn, d, o = best[(sp, b)]
        if engines[(sp, b)] is None:
            ds_ms, ds_ratio = f"{'refused':>10}", f"{'-':>10}  {'':11}"
        else:
            ds_ms, ds_ratio = f"{d:>10.4f}", ratio_cell([r[2] / r[0] for r in t])
        print(f"{real[sp]:>8.1%}{b:>6}{p:>10.4f}{dn:>10.4f}{ds_ms}{o:>10.4f}{ds_ratio}"
              f"{ratio_cell([r[3] / r[0] for r in t])}")
    print("\nms: the best round's median; plan / dense: sprig's packed plan and its dense path on "
          "the same weights;\nds / ort: DeepSparse and ONNX Runtime on the same pruned ONNX "
          "file; ratios: the median over rounds\nof the per-round ratio (> 1: sprig's plan "
          "faster) and its range\n")
    for sp, b in keys:
        print(f"  {real[sp]:.1%} at batch {b}: deepsparse {notes[(sp, b)]}")
    if a.svg:
        panels = []
        for b in batches:
            series = {name: {sp: best[(sp, b)][i] for sp in sparsities}
                      for i, name in enumerate(SWEEP_COLORS)}
            panels.append((f"{m}, batch {b}, {a.threads} threads", series))
        write_chart(a.svg, panels, sparsities, SWEEP_COLORS)
        print(f"chart: {a.svg}")


def run_int8(a, models, batches):
    print(f"sprig {SPRIG}; deepsparse {deepsparse.__version__}; onnxruntime {ort.__version__}; "
          f"threads {a.threads}; pruned {a.amount:.0%} by {a.scope} magnitude, then int8; "
          f"median of {a.repeats} runs per timing; {a.rounds} interleaved rounds")
    keys = [(m, b) for m in models for b in batches]
    with tempfile.TemporaryDirectory() as tmp:
        dense = {m: make_model(tmp, m) for m in models}
        pruned = {m: make_pruned(tmp, m, dense[m][0], a.amount, a.scope) for m in models}
        qdq = {}
        for m in models:
            q = os.path.join(tmp, f"{m}.int8.safetensors")
            qdq[m] = os.path.join(tmp, f"{m}.int8.onnx")
            sprig(["quantize", "--in", pruned[m][0], "--out", q, "--int8-only", "--calibrate",
                   "256", "--quiet"])
            sprig(["export", "--in", q, "--out", qdq[m]])
        ort_q = {m: ort_session(qdq[m], a.threads) for m in models}
        engines, notes = {}, {}
        for m, b in keys:
            engines[(m, b)], notes[(m, b)] = deepsparse_engine(
                qdq[m], INPUT_SHAPES[m], b, a.threads, ort_q[m])
        best = {k: [float("inf")] * 5 for k in keys}  # sprig int8, f32, ds, ort, mixed
        f32_ratios, ds_ratios, ort_ratios, mixed_ratios = ({k: [] for k in keys} for _ in range(4))
        for _ in range(a.rounds):
            for m, b in keys:
                shape = INPUT_SHAPES[m]
                js = bench_sprig(pruned[m][0], b, a.threads, a.repeats, "auto", ["--int8"])
                s, f, x = js["int8_ms"], js["plan_ms"], js["int8_mixed_ms"]
                f32_ratios[(m, b)].append(f / s)
                mixed_ratios[(m, b)].append(f / x)
                d = float("nan")
                if engines[(m, b)] is not None:
                    d = time_deepsparse(engines[(m, b)], shape, b, a.repeats)
                    ds_ratios[(m, b)].append(d / s)
                o = time_ort(ort_q[m], shape, b, a.repeats)
                ort_ratios[(m, b)].append(o / s)
                best[(m, b)] = [min(u, v) for u, v in zip(best[(m, b)], (s, f, d, o, x))]
    print(f"load average after: {os.getloadavg()}\n")
    print(f"{'model':9}{'batch':>5}{'int8 ms':>10}{'mixed ms':>10}{'f32 ms':>10}{'ds ms':>10}"
          f"{'ort ms':>10}{'f32/int8':>10}  {'range':11}{'f32/mixed':>10}  {'range':11}"
          f"{'ds/int8':>10}  {'range':11}{'ort/int8':>10}  range")
    for m, b in keys:
        s, f, d, o, x = best[(m, b)]
        if engines[(m, b)] is None:
            ds_ms, ds_ratio = f"{'refused':>10}", f"{'-':>10}  {'':11}"
        else:
            ds_ms, ds_ratio = f"{d:>10.4f}", ratio_cell(ds_ratios[(m, b)])
        print(f"{m:9}{b:>5}{s:>10.4f}{x:>10.4f}{f:>10.4f}{ds_ms}{o:>10.4f}"
              f"{ratio_cell(f32_ratios[(m, b)])}{ratio_cell(mixed_ratios[(m, b)])}"
              f"{ds_ratio}{ratio_cell(ort_ratios[(m, b)])}")
    print("\nms: the best round's median; int8: sprig's int8 kernels; mixed: sprig quantize's "
          "default plan (int8 or float per layer);\nf32: sprig's float plan of "
          "the same pruned weights;\nds / ort: DeepSparse / ONNX Runtime on the QDQ export; "
          "ratios: the median over rounds of the per-round ratio\n(> 1: sprig int8 faster) "
          "and its range\n")
    for m in models:
        for b in batches:
            print(f"  {m}: deepsparse at batch {b}: {notes[(m, b)]}")


def main():
    global SPRIG, deepsparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sparse", action="store_true",
                   help="sprig's packed plan vs DeepSparse and ONNX Runtime on pruned weights")
    p.add_argument("--models", help="default mlp,cnn2,lenet5 (--sparse: and resnet20)")
    p.add_argument("--batches", help="default 1,8,64,256 (--sparse: 1,64,256)")
    p.add_argument("--amount", type=float, default=0.9,
                   help="--sparse: fraction of the weights pruned (global magnitude)")
    p.add_argument("--scope", choices=("global", "layer"), default="global",
                   help="--sparse: one threshold for all weights, or each layer to --amount")
    p.add_argument("--granularity", default="element",
                   help="--sparse: element (unstructured), or N:M such as 2:4 (its own amount)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                   help="--sparse: time PATH, a pruned checkpoint of MODEL (the main job's "
                        "out/cnn2_final.safetensors, say), instead of MODEL pruned by --amount; "
                        "the ort column still runs the unpruned MODEL (repeatable)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--int8", action="store_true",
                   help="sprig's int8 kernels vs its float plan, DeepSparse and ONNX Runtime on "
                        "the pruned model quantised to int8 (QDQ)")
    p.add_argument("--sweep", metavar="MODEL",
                   help="MODEL's time vs sparsity against DeepSparse and ONNX Runtime")
    p.add_argument("--sparsities", default="0,0.5,0.7,0.9,0.95",
                   help="--sweep: the pruning amounts (0: the unpruned model)")
    p.add_argument("--svg", help="--sweep: write the chart here")
    p.add_argument("--busy", action="store_true",
                   help="dense: time each round quiet and then with one core kept busy by a second "
                        "process, and compare the slowdowns; sparse: keep it busy throughout")
    a = p.parse_args()
    if a.int8 or a.sweep:
        a.sparse = True  # the pruned models, and DeepSparse
    if a.sparse:
        # Before the import: otherwise importing deepsparse looks up this machine's public IP
        # and country and each engine sends a Google Analytics event.
        os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
        try:
            import deepsparse
        except ImportError:
            missing.append("deepsparse==1.8.0")
        except OSError as e:  # deepsparse's own refusal of this OS or CPU
            print(f"inference_vs_runtimes.py: deepsparse cannot run here: {e}", file=sys.stderr)
            sys.exit(2)
    if missing:
        print(f"inference_vs_runtimes.py: {', '.join(missing)} not installed "
              f"(pip install {' '.join(missing)})", file=sys.stderr)
        sys.exit(2)
    SPRIG = os.environ.get("SPRIG", "./build/sprig")
    if a.sweep:
        models = [a.sweep]
        batches = [int(b) for b in (a.batches or "1,64").split(",")]
    elif a.sparse:
        models = (a.models or "mlp,cnn2,lenet5,resnet20").split(",")
        batches = [int(b) for b in (a.batches or "1,64,256").split(",")]
    else:
        models = (a.models or "mlp,cnn2,lenet5").split(",")
        batches = [int(b) for b in (a.batches or "1,8,64,256").split(",")]
    for m in models:
        if m not in INPUT_SHAPES:
            sys.exit(f"{'--sweep' if a.sweep else '--models'}: unknown model {m} (known: {', '.join(INPUT_SHAPES)})")
    given = {}
    for c in a.checkpoint:
        m, sep, path = c.partition("=")
        if not sep or m not in models or not a.sparse or a.int8 or a.sweep:
            sys.exit(f"--checkpoint {c}: wants MODEL=PATH with MODEL one of --models, and --sparse")
        given[m] = path
    if a.svg and not a.sweep:
        sys.exit("--svg: draws --sweep's chart; give --sweep MODEL")
    if a.sweep and a.granularity != "element":
        sys.exit(f"--sweep prunes unstructured to each of --sparsities; --granularity "
                 f"{a.granularity} sets its own amount")
    sparsities = []
    if a.sweep:
        try:
            sparsities = [float(v) for v in a.sparsities.split(",")]
        except ValueError:
            sys.exit(f"--sparsities {a.sparsities}: want numbers in [0, 1) separated by commas")
        if not sparsities or any(not 0 <= v < 1 for v in sparsities):
            sys.exit(f"--sparsities {a.sparsities}: want numbers in [0, 1) separated by commas")
    print(f"machine: {os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    if a.sweep:
        run_sweep(a, a.sweep, batches, sorted(set(sparsities)))
    elif a.int8:
        run_int8(a, models, batches)
    elif a.sparse:
        run_sparse(a, models, batches, given)
    else:
        run_dense(a, models, batches)


if __name__ == "__main__":
    main()
