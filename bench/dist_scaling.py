#!/usr/bin/env python3
"""Scaling over MPI ranks on one machine, 1 rank x T threads against N ranks x T threads
(mpirun), run in turn (1, N, 1, N, ...) so both see the same machine load.

- epoch (default): a data-parallel training epoch, same model, data, batch (the global batch),
  optimizer and seed. Epoch time is training only (sprig train --json's epoch_seconds;
  evaluation excluded). Also the model's gradient bytes all-reduced per step.
- --sweep [gradual]: the wall time of `sprig experiment gradual-vs-instant` with 2 seeds x 1
  sparsity x 2 step counts = 4 trials (and 2 pretrained models), spread over the ranks.
- --sweep l1-vs-fpgm: `sprig experiment l1-vs-fpgm` from a trained --base (made once, before
  the rounds), l1 and fpgm at 50% and 75% = 4 variants of 1 fine-tuning epoch.
- --sweep search: `sprig experiment iterative` from the same --base, 4 trials proposed 2 at a
  time (--trial-batch 2 on both sides, so both run the same search), 2 pruning steps and 1
  fine-tuning epoch each.

Usage: SPRIG=build/sprig python3 bench/dist_scaling.py [--sweep [NAME]] [--model cnn2] [--ranks 2]
           [--threads 1] [--rounds 3] [--limit-train N] [--batch-size 64]
Speed-up = 1-rank seconds / N-rank seconds per pair, and the median; efficiency = speed-up / N.
"""
import argparse, json, os, statistics, subprocess, sys, time

p = argparse.ArgumentParser()
p.add_argument("--model", default="cnn2")
p.add_argument("--ranks", type=int, default=2)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--limit-train", type=int, default=0)
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--sweep", nargs="?", const="gradual", choices=["gradual", "l1-vs-fpgm", "search"])
a = p.parse_args()
sprig = os.environ.get("SPRIG", "build/sprig")
# One thread per rank: Open MPI's default binds each rank to a core. More: let them float.
mpirun = ["mpirun", "--oversubscribe", "--allow-run-as-root"]
if a.threads > 1:
    mpirun += ["--bind-to", "none"]


def epoch(ranks):
    cmd = [sprig, "train", "--model", a.model, "--epochs", "1", "--threads", str(a.threads),
           "--batch-size", str(a.batch_size), "--limit-test", "1000", "--json", "--quiet"]
    if a.limit_train:
        cmd += ["--limit-train", str(a.limit_train)]
    if ranks > 1:
        cmd = mpirun + ["-np", str(ranks)] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    return j["epoch_seconds"][0], j["params"], j["train_samples"]


TMP = "/tmp/sprig-dist-scaling"
COMMON = ["--threads", str(a.threads), "--local-store", TMP + "/mlruns", "--report",
          TMP + "/report.html"]


def sweep_command():
    # The experiments' own sample defaults differ; a trial here is a full epoch unless limited.
    samples = ["--train-samples", str(a.limit_train or 60000)]
    if a.sweep == "gradual":
        return [sprig, "experiment", "gradual-vs-instant", "--model", a.model, "--seeds", "2",
                "--sparsities", "0.9", "--steps", "1,4", "--epochs", "1", "--pretrain-epochs",
                "1", "--test-samples", "2000", "--eval-samples", "1000"] + samples + COMMON
    base = f"{TMP}/base-{a.model}-{a.limit_train}.safetensors"
    if not os.path.exists(base):
        subprocess.run([sprig, "train", "--model", a.model, "--epochs", "1", "--quiet",
                        "--threads", str(a.threads), "--limit-test", "2000", "--out", base]
                       + (["--limit-train", str(a.limit_train)] if a.limit_train else []),
                       check=True, capture_output=True)
    if a.sweep == "l1-vs-fpgm":
        return [sprig, "experiment", "l1-vs-fpgm", "--base", base, "--amounts", "0.5,0.75",
                "--finetune-epochs", "1", "--test-samples", "2000"] + samples + COMMON
    return [sprig, "experiment", "iterative", "--base", base, "--total-trials", "4",
            "--initial-trials", "2", "--trial-batch", "2", "--max-epochs", "1",
            "--prune-iterations", "2", "--test-samples", "2000"] + samples + COMMON


def sweep(ranks):
    cmd = sweep_command()
    if ranks > 1:
        cmd = mpirun + ["-np", str(ranks)] + cmd
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


if a.sweep:
    what = {"gradual": "gradual-vs-instant sweep: 2 seeds x 2 variants = 4 trials of 1 epoch "
                       "(+2 pretrainings)",
            "l1-vs-fpgm": "l1-vs-fpgm from a trained base: 4 variants of 1 fine-tuning epoch",
            "search": "iterative search from a trained base: 4 trials (2 at a time) of 2 "
                      "pruning steps and 1 fine-tuning epoch"}[a.sweep]
    os.makedirs(TMP, exist_ok=True)
    sweep_command()  # makes the base model before the clock starts
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {a.model} {what}, "
          f"{a.threads} thread(s) per rank, 1 rank vs {a.ranks} ranks; wall time of the command")
    speedups = []
    for r in range(a.rounds):
        one, many = sweep(1), sweep(a.ranks)
        speedups.append(one / many)
        print(f"round {r + 1}: 1 rank {one:.2f} s, {a.ranks} ranks {many:.2f} s, speed-up "
              f"{one / many:.2f}x, load {os.getloadavg()[0]:.2f}")
    med = statistics.median(speedups)
    print(f"median speed-up {med:.2f}x (efficiency {med / a.ranks:.0%})")
    sys.exit(0)

print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {a.model}, batch "
      f"{a.batch_size}, {a.threads} thread(s) per rank, 1 rank vs {a.ranks} ranks")
speedups = []
for r in range(a.rounds):
    one, params, samples = epoch(1)
    many, _, _ = epoch(a.ranks)
    speedups.append(one / many)
    print(f"round {r + 1}: 1 rank {one:.2f} s, {a.ranks} ranks {many:.2f} s, speed-up "
          f"{one / many:.2f}x, load {os.getloadavg()[0]:.2f}")
med = statistics.median(speedups)
steps = -(-samples // a.batch_size)
print(f"median speed-up {med:.2f}x (efficiency {med / a.ranks:.0%}); {samples} samples, {steps} "
      f"steps; {params} parameters = {4 * params / 1e6:.2f} MB all-reduced per step")
