#!/usr/bin/env python3
"""The scaling model of docs/scaling.md: predicted efficiency of data-parallel training at N
ranks from measured inputs, beside the points measured on this machine.

A step on N ranks with global batch B (each rank b = B / N samples) takes
    T(N) = C(b) + A(N)                    (the reduction is counted in full: no overlap)
    A(N) = 2 log2(N) alpha + 2 (N - 1) / N x S / beta      (Rabenseifner / ring all-reduce)
where C(b) is one rank's forward + backward + step on b samples, S the gradient bytes, alpha
the per-message latency and beta the bandwidth. Efficiency E(N) = C(B) / (N T(N)).
Strong scaling keeps B (sprig's --batch-size is the global batch); weak scaling grows B = N b.

Usage: python3 bench/scaling_model.py --compute-ms 64:9.0,32:4.7,16:2.5,8:1.4 --bytes 506792
           --alpha-us 2 --beta-gbs 5 [--batch 64] [--ranks 2,8,64,512]
"""
import argparse, math

p = argparse.ArgumentParser()
p.add_argument("--compute-ms", required=True,
               help="per-rank step time in ms by per-rank batch, b:ms,... (measured)")
p.add_argument("--bytes", type=float, required=True, help="gradient bytes all-reduced per step")
p.add_argument("--alpha-us", type=float, required=True, help="all-reduce latency term, us")
p.add_argument("--beta-gbs", type=float, required=True, help="all-reduce bandwidth, GB/s")
p.add_argument("--batch", type=int, default=64, help="global batch (strong) / per rank (weak)")
p.add_argument("--ranks", default="2,8,64,512")
a = p.parse_args()

compute = {int(k): float(v) for k, v in (kv.split(":") for kv in a.compute_ms.split(","))}


def c_ms(b):
    """C(b): measured where available; else the per-sample time of the nearest measured batch
    (small batches cost more per sample, so below the smallest measured one this is optimistic),
    plus nothing for b < 1."""
    if b in compute:
        return compute[b]
    near = min(compute, key=lambda k: abs(math.log(k) - math.log(max(b, 1e-9))))
    return compute[near] / near * b


def allreduce_ms(n):
    if n == 1:
        return 0.0
    return (2 * math.log2(n) * a.alpha_us * 1e-3 +
            2 * (n - 1) / n * a.bytes / (a.beta_gbs * 1e9) * 1e3)


print(f"S = {a.bytes / 1e6:.2f} MB, alpha = {a.alpha_us} us, beta = {a.beta_gbs} GB/s")
print(f"{'ranks':>6} {'strong: b':>10} {'C(b) ms':>8} {'A ms':>7} {'E':>6}   "
      f"{'weak: C ms':>10} {'E':>6}")
base = c_ms(a.batch)
for n in (int(r) for r in a.ranks.split(",")):
    b = a.batch / n
    strong = c_ms(b) if b >= 1 else float("nan")
    ar = allreduce_ms(n)
    e_strong = base / (n * (strong + ar)) if b >= 1 else float("nan")
    e_weak = base / (base + ar)
    print(f"{n:>6} {b:>10.2f} {strong:>8.2f} {ar:>7.3f} {e_strong:>6.0%}   {base:>10.2f} "
          f"{e_weak:>6.0%}")
