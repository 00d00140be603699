#!/usr/bin/env python3
"""A/B of two sprig binaries (e.g. a build of an older revision against the working tree's) on
`sprig bench model`: the packed plan's time of each model at each batch, the two binaries run
one after the other, the pair repeated --rounds times (interleaved, so a change of load hits
both), median per side. Prints old and new ms and old/new (> 1: the new binary is faster).

  git worktree add /tmp/old REV && cmake -S /tmp/old -B /tmp/old/build -DCMAKE_BUILD_TYPE=Release
  cmake --build /tmp/old/build -j2 --target sprig
  python3 bench/ab_binaries.py --old /tmp/old/build/sprig --new build/sprig \\
      --models mlp90.safetensors,cnn2_c90.safetensors --batches 1,64 --format csr
"""
import argparse
import json
import statistics
import subprocess
import sys


def plan_ms(exe, model, batch, args):
    cmd = [exe, "bench", "model", "--in", model, "--batch", str(batch), "--format", args.format,
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ab_binaries: {' '.join(cmd)} failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])["plan_ms"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="the baseline sprig binary")
    p.add_argument("--new", required=True, help="the sprig binary compared with it")
    p.add_argument("--models", required=True, help="comma-separated checkpoints")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--format", default="auto", help="bench model --format")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20, help="bench model --repeats")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    cases = [(m, int(b)) for m in args.models.split(",") for b in args.batches.split(",")]
    times = {}
    for _ in range(args.rounds):
        for model, batch in cases:
            for side, exe in (("old", args.old), ("new", args.new)):
                times.setdefault((model, batch, side), []).append(plan_ms(exe, model, batch, args))
    print(f"{args.threads} threads, --format {args.format}, median of {args.rounds} rounds")
    for model, batch in cases:
        old = statistics.median(times[(model, batch, "old")])
        new = statistics.median(times[(model, batch, "new")])
        print(f"{model.split('/')[-1]:28s} batch {batch:<4d} old {old:.4f} ms  new {new:.4f} ms  "
              f"old/new {old / new:.3f}")


if __name__ == "__main__":
    main()
