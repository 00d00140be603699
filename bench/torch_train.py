#!/usr/bin/env python3
"""Reference trainer: the same models and data as `sprig train`, in PyTorch.

Reads Fashion-MNIST straight from the IDX gzip files (no torchvision, no
downloads), trains `cnn2`, `mlp` or a CIFAR ResNet of bench/torch_resnet.py
(resnet20/32/56, option A; resnet20b, option B), and prints per epoch the mean train loss,
the test accuracy and the seconds spent in the training loop (evaluation is
not timed). With --json the last line of stdout is one JSON object.

Run with a Python that has torch, e.g.
    /usr/bin/python3 bench/torch_train.py --model cnn2 --epochs 5 --json
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_resnet  # noqa: E402  (the twin of sprig's zoo ResNets)

# Fashion-MNIST statistics of x/255 over the training set.
FASHION_MEAN = 0.2860
FASHION_STD = 0.3530


def read_idx(path):
    """Parse an IDX file (gzip or raw) into a numpy uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims}, got {arr.size} bytes")
    return arr.reshape(dims)


def find_file(data_dir, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{stem}(.gz) not found in {data_dir}")


def load_split(data_dir, prefix, normalize):
    images = read_idx(find_file(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_file(data_dir, f"{prefix}-labels-idx1-ubyte"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # N,1,28,28
    if normalize == "standard":
        x = (x - FASHION_MEAN) / FASHION_STD
    y = torch.from_numpy(labels.astype(np.int64))
    return x.contiguous(), y


def build_model(name):
    if name == "cnn2":
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 28 * 28, 10))
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 300), nn.ReLU(),
            nn.Linear(300, 100), nn.ReLU(),
            nn.Linear(100, 10))
    if name in torch_resnet.ZOO:
        return torch_resnet.build(name, 1)
    raise ValueError(f"unknown model {name}")


def evaluate(model, x, y, batch_size=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            out = model(x[i:i + batch_size])
            correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train()
    return 100.0 * correct / x.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["cnn2", "mlp"] + sorted(torch_resnet.ZOO), default="cnn2")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="L2 penalty, not on BatchNorm scales and shifts (as sprig's default)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: lr * (1 + cos(pi t / T)) / 2 per step, as sprig")
    p.add_argument("--limit-test", type=int, default=0,
                   help="evaluate on the first N test images only (0 = all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=0,
                   help="use only the first N training images (0 = all)")
    p.add_argument("--normalize", choices=["none", "standard"], default="standard")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary object as the last stdout line")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(args.seed)

    x_train, y_train = load_split(args.data_dir, "train", args.normalize)
    x_test, y_test = load_split(args.data_dir, "t10k", args.normalize)
    if args.limit_train > 0:
        x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    if args.limit_test > 0:
        x_test, y_test = x_test[:args.limit_test], y_test[:args.limit_test]
    n = x_train.shape[0]

    model = build_model(args.model)
    params = sum(t.numel() for t in model.parameters())
    norm = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    rest = [p for p in model.parameters() if all(p is not q for q in norm)]
    groups = [{"params": rest, "weight_decay": args.weight_decay},
              {"params": norm, "weight_decay": 0.0}]
    if args.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=args.lr)
    else:
        opt = torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum)
    steps_per_epoch = (n + args.batch_size - 1) // args.batch_size
    total_steps = args.epochs * steps_per_epoch

    print(f"pytorch {torch.__version__}  model={args.model} params={params} "
          f"train={n} test={x_test.shape[0]} batch={args.batch_size} "
          f"opt={args.optimizer} lr={args.lr} threads={torch.get_num_threads()} "
          f"normalize={args.normalize}")

    gen = torch.Generator().manual_seed(args.seed)
    epoch_seconds, test_acc, train_loss = [], [], []
    model.train()
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        t0 = time.perf_counter()
        # Last partial batch is kept. Batch gathering is inside the timed loop,
        # as it is part of an epoch in any framework.
        for i in range(0, n, args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            if args.lr_schedule == "cosine":
                t = (epoch - 1) * steps_per_epoch + i // args.batch_size
                for g in opt.param_groups:
                    g["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * t / total_steps))
            opt.step()
            loss_sum += loss.item() * idx.shape[0]
        secs = time.perf_counter() - t0
        acc = evaluate(model, x_test, y_test)
        epoch_seconds.append(round(secs, 3))
        test_acc.append(round(acc, 2))
        train_loss.append(round(loss_sum / n, 4))
        print(f"epoch {epoch}  train_loss {loss_sum / n:.4f}  "
              f"test_acc {acc:.2f}%  epoch_s {secs:.2f}", flush=True)

    if args.json:
        print(json.dumps({
            "framework": "pytorch",
            "model": args.model,
            "epochs": args.epochs,
            "epoch_seconds": epoch_seconds,
            "train_seconds": round(sum(epoch_seconds), 3),
            "test_accuracy": test_acc,
            "train_loss": train_loss,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "normalize": args.normalize,
            "params": params,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
