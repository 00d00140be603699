#!/usr/bin/python3
"""Dense vs sparse Linear layers and whole pruned models: sprig against PyTorch and SciPy.

For Linear 784x300 and 4096x4096 (in x out) at batch 1, 64, 256 and sparsity 0..99% it times,
one after the other on the same machine:
  sprig dense     sprig's gemm                  (`sprig bench linear --json`: dense_ms)
  sprig csr       sprig's CSR kernel            (`sprig bench linear --json`: sparse_ms)
  torch dense     torch.nn.functional.linear
  torch csr       W.to_sparse_csr() @ x^T       (torch.sparse CSR)
  scipy csr       scipy.sparse.csr_matrix @ x^T (single-threaded: SciPy's sparse products are)
and for whole models (mlp pruned to 92%, cnn2 pruned) `sprig bench model` at batch 1 and 256.
Each time is the median of repeated runs after a warm-up; slow cells stop repeating after
--budget seconds. Prints a Markdown report (tables, break-even sparsity per shape) and writes an
SVG plot of time vs sparsity for 4096x4096 at batch 1 and 64.

  /usr/bin/python3 bench/sparse_sweep.py --sprig build/sprig --threads 2 \
      --markdown /tmp/sweep.md --svg bench/sparse_sweep.svg
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy
import scipy.sparse
import torch
import torch.nn.functional as F

from svg_chart import write_chart

SHAPES = [(784, 300), (4096, 4096)]  # (in, out)
BATCHES = [1, 64, 256]
SPARSITIES = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
METHODS = ["sprig dense", "sprig csr", "torch dense", "torch csr", "scipy csr"]
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
COLORS = {"sprig dense": "#1f77b4", "sprig csr": "#d62728", "torch dense": "#2ca02c",
          "torch csr": "#9467bd", "scipy csr": "#ff7f0e"}


def median_ms(fn, repeats, budget_s):
    """Median ms of fn after one warm-up; stops early once budget_s seconds are spent."""
    fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < repeats:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - start > budget_s:
            break
    return statistics.median(samples)


def sprig_json(sprig, args):
    out = subprocess.run([sprig] + args + ["--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def masked_weight(rows, cols, sparsity, rng):
    """(rows, cols) float32 in [-1, 1) with exactly round(sparsity * n) zeros."""
    w = rng.uniform(-1.0, 1.0, size=rows * cols).astype(np.float32)
    w[w == 0] = 0.5
    k = int(round(sparsity * rows * cols))
    w[rng.permutation(rows * cols)[:k]] = 0.0
    return w.reshape(rows, cols)


def linear_cell(a, n_in, n_out, batch, sparsity, rng):
    """All five methods for one shape, batch and sparsity; returns {method: ms}."""
    repeats = a.repeats if n_in * n_out * batch < 4096 * 4096 * 16 else max(3, a.repeats // 4)
    j = sprig_json(a.sprig, ["bench", "linear", "--in", str(n_in), "--out", str(n_out),
                             "--batch", str(batch), "--sparsity", str(sparsity), "--format", "csr",
                             "--threads", str(a.threads), "--repeats", str(repeats)])
    r = {"sprig dense": j["dense_ms"], "sprig csr": j["sparse_ms"]}
    w = masked_weight(n_out, n_in, sparsity, rng)
    x = rng.uniform(-1.0, 1.0, size=(batch, n_in)).astype(np.float32)
    wt, xt = torch.from_numpy(w), torch.from_numpy(x)
    xt_t = xt.t().contiguous()  # (in, batch) for the sparse @ dense forms
    with torch.no_grad():
        r["torch dense"] = median_ms(lambda: F.linear(xt, wt), repeats, a.budget)
        wcsr = wt.to_sparse_csr()
        r["torch csr"] = median_ms(lambda: wcsr @ xt_t, repeats, a.budget)
    ws = scipy.sparse.csr_matrix(w)
    xs = np.ascontiguousarray(x.T)
    r["scipy csr"] = median_ms(lambda: ws @ xs, repeats, a.budget)
    return r


def break_even(rows):
    """Lowest sparsity at which sprig csr beats sprig dense, or None."""
    for s, r in sorted(rows.items()):
        if r["sprig csr"] < r["sprig dense"]:
            return s
    return None


def svg_plot(results, path):
    """Two panels (4096x4096 at batch 1 and 64): ms (log scale) vs sparsity, one line per method."""
    panels = []
    for n_in, n_out, batch in [(4096, 4096, 1), (4096, 4096, 64)]:
        cells = results.get((n_in, n_out, batch), {})  # {sparsity: {method: ms}}
        panels.append((f"Linear {n_in}x{n_out}, batch {batch}",
                       {m: {s: r[m] for s, r in cells.items()} for m in METHODS}))
    write_chart(path, panels, SPARSITIES, COLORS)


def model_rows(a, workdir):
    """Trains mlp and cnn2 for one epoch, prunes them, and runs `sprig bench model`."""
    s = a.sprig
    rows = []
    run = lambda *args: subprocess.run([s] + list(args), check=True, capture_output=True, text=True)
    mlp, cnn = os.path.join(workdir, "mlp.safetensors"), os.path.join(workdir, "cnn2.safetensors")
    run("train", "--model", "mlp", "--epochs", "1", "--threads", str(a.threads), "--quiet",
        "--out", mlp)
    run("train", "--model", "cnn2", "--epochs", "1", "--threads", str(a.threads), "--quiet",
        "--out", cnn)
    models = [("mlp, global magnitude 92%", mlp, ["--scope", "global", "--amount", "0.92"]),
              ("cnn2, global magnitude 90%", cnn, ["--scope", "global", "--amount", "0.9"]),
              ("cnn2, Taylor filters 37.5% (shrunk by the plan)", cnn,
               ["--method", "taylor", "--granularity", "filter", "--amount", "0.375"])]
    for k, (label, base, flags) in enumerate(models):
        pruned = os.path.join(workdir, f"pruned{k}.safetensors")
        run("prune", "--in", base, *flags, "--quiet", "--out", pruned)
        packed = os.path.join(workdir, f"packed{k}.safetensors")
        pack = sprig_json(s, ["pack", "--in", pruned, "--out", packed, "--threads", str(a.threads)])
        acc_dense = sprig_json(s, ["eval", "--in", pruned])["test_accuracy"]
        acc_packed = sprig_json(s, ["run", "--in", packed, "--threads", str(a.threads)])
        for batch in (1, 256):
            j = sprig_json(s, ["bench", "model", pruned, "--batch", str(batch), "--threads",
                               str(a.threads), "--repeats", str(a.repeats)])
            rows.append({"model": label, "batch": batch, "dense_ms": j["dense_ms"],
                         "plan_ms": j["plan_ms"], "speedup": j["speedup"],
                         "sparsity": j["sparsity"], "max_rel_diff": j["max_rel_diff"],
                         "plan": ", ".join(f'{l["name"]} {l["format"]}' for l in j["layers"]),
                         "packed_ratio": pack["ratio"], "packed_bytes": pack["packed_bytes"],
                         "dense_file_bytes": pack["dense_file_bytes"],
                         "dense_gzip_bytes": pack["dense_gzip_bytes"],
                         "acc_dense": acc_dense, "acc_packed": acc_packed["test_accuracy"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def parse_progress(path):
    """Results from the lines "4096x4096 b64 s0.9: sprig dense 1.0, sprig csr 0.5, ..."."""
    results = {}
    with open(path) as f:
        for line in f:
            head, sep, rest = line.partition(": ")
            parts = head.split()
            if not sep or len(parts) != 3 or "x" not in parts[0] or not parts[1].startswith("b"):
                continue
            n_in, n_out = map(int, parts[0].split("x"))
            cell = {}
            for item in rest.strip().split(", "):
                name, _, v = item.rpartition(" ")
                cell[name] = float(v)
            results.setdefault((n_in, n_out, int(parts[1][1:])), {})[float(parts[2][1:])] = cell
    return results


def torch_blas():
    """Which libblas.so.3 this process loaded (PyTorch's dense products go through it)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "libblas" in line or "libopenblas" in line}
        return ", ".join(sorted(os.path.realpath(l) for l in libs)) or "unknown"
    except OSError:
        return "unknown"


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sprig", default="./build/sprig")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per cell and method")
    ap.add_argument("--svg", default="bench/sparse_sweep.svg")
    ap.add_argument("--markdown", default="", help="also write the report here")
    ap.add_argument("--no-models", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blas", choices=["openblas", "system"], default="openblas",
                    help="BLAS behind PyTorch dense: OpenBLAS (when installed; the stronger "
                         "baseline) or the system's libblas.so.3 as it is")
    ap.add_argument("--replot", default="",
                    help="only redraw the SVG from the progress lines (stderr) of an earlier run")
    ap.add_argument("--quick", action="store_true",
                    help="784x300 at batch 1 and 64, sparsity 0 and 90%%, no models (a smoke test)")
    a = ap.parse_args()
    global SHAPES, BATCHES, SPARSITIES
    if a.quick:
        SHAPES, BATCHES, SPARSITIES, a.no_models = [(784, 300)], [1, 64], [0.0, 0.9], True
    # Debian's torch calls whatever libblas.so.3 resolves to; the alternative here may be the
    # reference netlib BLAS. Re-running with OpenBLAS's directory first picks OpenBLAS without
    # touching the system setting.
    if a.blas == "openblas" and os.path.exists(OPENBLAS + "/libblas.so.3") and \
            os.environ.get("SPRIG_SWEEP_BLAS") != "openblas":
        env = dict(os.environ, SPRIG_SWEEP_BLAS="openblas", OPENBLAS_NUM_THREADS=str(a.threads),
                   LD_LIBRARY_PATH=OPENBLAS + ":" + os.environ.get("LD_LIBRARY_PATH", ""))
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    if not os.access(a.sprig, os.X_OK):
        sys.exit(f"sparse_sweep.py: no sprig binary at {a.sprig} (build it, or pass --sprig)")
    if a.replot:
        svg_plot(parse_progress(a.replot), a.svg)
        return
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    start_machine = machine()
    results = {}
    for n_in, n_out in SHAPES:
        for batch in BATCHES:
            cells = results.setdefault((n_in, n_out, batch), {})
            for s in SPARSITIES:
                cells[s] = linear_cell(a, n_in, n_out, batch, s, rng)
                print(f"{n_in}x{n_out} b{batch} s{s}: " +
                      ", ".join(f"{m} {v:.4f}" for m, v in cells[s].items()), file=sys.stderr)
    models = [] if a.no_models else model_rows(a, tempfile.mkdtemp(prefix="sprig_sweep_"))
    svg_plot(results, a.svg)

    md = [f"Machine: {start_machine}; sprig and PyTorch {torch.__version__} with {a.threads} "
          f"threads (PyTorch's BLAS: {torch_blas()}), SciPy {scipy.__version__} single-threaded; "
          f"NumPy {np.__version__}. "
          f"Median of up to {a.repeats} runs after a warm-up (fewer where a run is slow).", ""]
    md.append("Milliseconds per forward of one Linear layer (x (batch, in) -> (batch, out)):")
    md.append("")
    md.append("| in x out | batch | sparsity | " + " | ".join(METHODS) +
              " | sprig csr vs sprig dense | sprig csr vs torch dense |")
    md.append("|---|---|---|" + "---|" * (len(METHODS) + 2))
    for (n_in, n_out, batch), cells in results.items():
        for s, r in cells.items():
            md.append(f"| {n_in}x{n_out} | {batch} | {int(round(100 * s))}% | " +
                      " | ".join(f"{r[m]:.4f}" for m in METHODS) +
                      f" | {r['sprig dense'] / r['sprig csr']:.2f}x"
                      f" | {r['torch dense'] / r['sprig csr']:.2f}x |")
    md += ["", "Break-even (lowest swept sparsity where sprig csr beats sprig dense):", "",
           "| in x out | batch | break-even |", "|---|---|---|"]
    for (n_in, n_out, batch), cells in results.items():
        be = break_even(cells)
        md.append(f"| {n_in}x{n_out} | {batch} | {'none' if be is None else f'{int(round(100 * be))}%'} |")
    if models:
        md += ["", "Whole models (`sprig bench model`, dense = the masked model run dense, "
               "plan = the auto inference plan; accuracy on the Fashion-MNIST test set):", "",
               "| model | batch | sparsity | dense ms | plan ms | speedup | plan | packed / dense file "
               "| gzip / dense file | accuracy dense / packed |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in models:
            md.append(f"| {r['model']} | {r['batch']} | {100 * r['sparsity']:.1f}% | "
                      f"{r['dense_ms']:.4f} | {r['plan_ms']:.4f} | {r['speedup']:.2f}x | {r['plan']} | "
                      f"{100 * r['packed_ratio']:.1f}% ({r['packed_bytes']} B) | "
                      f"{100 * r['dense_gzip_bytes'] / r['dense_file_bytes']:.1f}% | "
                      f"{100 * r['acc_dense']:.2f}% / {100 * r['acc_packed']:.2f}% |")
    md += ["", f"Load average at the end: {os.getloadavg()[0]:.2f}. Plot: `{a.svg}`."]
    text = "\n".join(md) + "\n"
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
