#!/usr/bin/env python3
"""ONNX Runtime's time per node on an exported sprig model, to set beside sprig's own per-layer
timings (`sprig bench conv`, `perf`): where the two runtimes spend their time, layer by layer.

    python3 bench/ort_node_times.py model.onnx --batch 64 --threads 1 [--runs 20]

Runs the model `--runs` times on random input with onnxruntime's profiler on and prints, per node,
the median of its `_kernel_time` over the runs, largest first, and their sum. Installs nothing
(`pip install onnxruntime`); says so when it is missing.
"""
import argparse
import collections
import json
import os
import statistics
import sys
import tempfile


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="an ONNX file (sprig export)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="intra_op_num_threads")
    p.add_argument("--runs", type=int, default=20)
    a = p.parse_args()
    if a.batch < 1 or a.threads < 1 or a.runs < 1:
        sys.exit("ort_node_times: --batch, --threads and --runs must be at least 1")
    if not os.path.isfile(a.model):
        sys.exit(f"ort_node_times: no such file: {a.model}")
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        sys.exit(f"ort_node_times: needs numpy and onnxruntime (pip install onnxruntime): {e}")

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "ort")
        try:
            s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own classes for unreadable models
            sys.exit(f"ort_node_times: onnxruntime cannot load {a.model}: {e}")
        inp = s.get_inputs()[0]
        shape = [a.batch] + [int(d) for d in inp.shape[1:]]
        x = np.random.default_rng(1).random(shape, dtype=np.float32)
        for _ in range(a.runs):
            s.run(None, {inp.name: x})
        with open(s.end_profiling()) as f:
            events = json.load(f)

    times = collections.defaultdict(list)  # (node, op) -> microseconds, one per run
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))].append(e["dur"])
    rows = sorted(((statistics.median(d) / 1000, op, n) for (n, op), d in times.items()), reverse=True)
    print(f"{a.model}: batch {a.batch}, {a.threads} threads, onnxruntime {ort.__version__}, "
          f"median of {a.runs} runs")
    for ms, op, name in rows:
        print(f"{ms:9.3f} ms  {op:16s} {name}")
    print(f"{sum(r[0] for r in rows):9.3f} ms  total of the nodes")


if __name__ == "__main__":
    main()
