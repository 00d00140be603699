#!/usr/bin/env python3
"""Reproduces the pruning write-ups with the sprig command and prints Markdown tables.

  seed 002  cnn2, Taylor filter pruning (Molchanov et al. 2017), shrink, fine-tune 5 epochs
  Han       mlp (LeNet-300-100), iterative global magnitude pruning to 92% (Han et al. 2015)
  seed 001  cnn2, L1-norm and FPGM filter pruning at 50% and 75%, shrink, fine-tune

Usage: python3 scripts/reproduce-pruning.py [--sprig build/sprig] [--out out] [--threads 2]
Each step is one `sprig` command, echoed before it runs, so any row can be rerun by hand.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys


def run(cmd):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sprig", default="build/sprig")
    ap.add_argument("--out", default="out")
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    S, T = a.sprig, ["--threads", a.threads, "--json", "--quiet"]

    def summary(path):
        return run([S, "summary", "--in", path, "--json"])

    cnn2 = os.path.join(a.out, "cnn2.safetensors")
    base = run([S, "train", "--model", "cnn2", "--epochs", "5", "--out", cnn2] + T)
    base_flops = summary(cnn2)["flops"]
    base_epoch = sum(base["epoch_seconds"]) / len(base["epoch_seconds"])

    print("\n## Seed 002: Taylor filter pruning of cnn2\n")
    r = run([S, "prune", "--in", cnn2, "--method", "taylor", "--granularity", "filter",
             "--scope", "layer", "--amount", "0.375", "--finetune-epochs", "5", "--shrink",
             "--out", os.path.join(a.out, "cnn2_taylor.safetensors")] + T)
    print("| model | spec | params | test accuracy |\n|---|---|---|---|")
    print(f"| cnn2, 5 epochs | {base['spec']} | {base['params']:,} | {100*base['test_accuracy']:.2f}% |")
    print(f"| Taylor 37.5% filters, shrunk, 5 fine-tuning epochs | {r['spec_after']} | "
          f"{r['params_after']:,} | {100*r['test_accuracy_after']:.2f}% |")
    print(f"\nDifference: {100*(r['test_accuracy_after']-base['test_accuracy']):+.2f} pp "
          f"(seed 002: 126,698 -> 79,120 parameters)")

    print("\n## Han et al. on Fashion-MNIST: mlp, iterative global magnitude pruning\n")
    mlp = os.path.join(a.out, "mlp.safetensors")
    m = run([S, "train", "--model", "mlp", "--epochs", "10", "--out", mlp] + T)
    r = run([S, "prune", "--in", mlp, "--method", "magnitude", "--scope", "global",
             "--schedule", "iterative:0.5,0.75,0.875,0.92", "--amount", "0.92",
             "--finetune-epochs", "2", "--lr", "5e-4",
             "--out", os.path.join(a.out, "mlp_92.safetensors")] + T)
    print("| step | weights pruned | model sparsity | accuracy after pruning | after 2 fine-tuning epochs |")
    print("|---|---|---|---|---|")
    print(f"| dense, 10 epochs | 0% | 0% | | {100*m['test_accuracy']:.2f}% |")
    for s in r["steps"]:
        print(f"| | {100*s['target']:.1f}% | {100*s['sparsity']:.2f}% | "
              f"{100*s['after_prune']:.2f}% | {100*s['after_finetune']:.2f}% |")
    print(f"\nFinal: {r['nonzero_after']:,} of {r['params_before']:,} parameters nonzero, "
          f"test accuracy {100*r['test_accuracy_after']:.2f}%")

    print("\n## Seed 001: L1-norm and FPGM filter pruning of cnn2, shrunk and fine-tuned\n")
    print("| model | spec | params | FLOPs | test accuracy | s / training epoch |")
    print("|---|---|---|---|---|---|")
    print(f"| unpruned | {base['spec']} | {base['params']:,} | {base_flops:,} | "
          f"{100*base['test_accuracy']:.2f}% | {base_epoch:.2f} |")
    for method in ["l1", "fpgm"]:
        for amount in ["0.5", "0.75"]:
            r = run([S, "prune", "--in", cnn2, "--method", method, "--granularity", "filter",
                     "--amount", amount, "--shrink", "--finetune-epochs", "3",
                     "--out", os.path.join(a.out, f"cnn2_{method}_{amount}.safetensors")] + T)
            sec = r["finetune_epoch_seconds"]
            print(f"| {method} {float(amount):.0%}, 3 fine-tuning epochs | {r['spec_after']} | "
                  f"{r['params_after']:,} | {r['flops_after']:,} | "
                  f"{100*r['test_accuracy_after']:.2f}% | {sum(sec)/len(sec):.2f} |")


if __name__ == "__main__":
    main()
