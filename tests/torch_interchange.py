#!/usr/bin/python3
"""sprig <-> PyTorch interchange through safetensors files with PyTorch-style names.

Usage: /usr/bin/python3 tests/torch_interchange.py SPRIG_BINARY FASHION_MNIST_DIR

1. PyTorch builds cnn2 from sprig's own description of it (`sprig summary --model cnn2
   --json`), initialises it with a fixed torch seed and saves its state_dict as safetensors;
   `sprig predict` loads that file and its logits for a batch of real test images match
   PyTorch's within 1e-5 relative to the logits' scale.
2. Weights with the wrong shape make `sprig predict` fail with one line naming the tensor and
   both shapes.
3. sprig trains cnn2 briefly; PyTorch loads sprig's checkpoint (strict: every parameter, no
   extras besides sprig's optimizer state) and evaluates it on the whole Fashion-MNIST test
   set. The count of correct predictions must equal `sprig eval`'s exactly; a difference of at
   most 2 of 10,000 is tolerated only where the two argmaxes are float near-ties (top-2 logits
   within 1e-4), which the script checks and reports.

4. ResNet-20 (bench/torch_resnet.py, pytorch_resnet_cifar10's names) with BatchNorm statistics
   from a few training-mode passes: its state_dict, num_batches_tracked (int64) included, goes
   to `sprig predict --model resnet20`, whose logits must match PyTorch's eval-mode ones within
   1e-5 of their scale; a state_dict without a running_var, or with a tensor the model does not
   have, is one line naming it.
5. sprig trains resnet20 briefly (one epoch on a few hundred images); the PyTorch twin loads
   the checkpoint with load_state_dict(strict=True) (only num_batches_tracked, which sprig does
   not keep, is added) and gets the same count of correct test predictions as `sprig eval`.

Under the sanitizers (tests/CMakeLists.txt sets SPRIG_TEST_SANITIZED=1 in that build) sprig runs
30-40x slower: parts 3 and 5 then compare on the first 1,000 test images, and part 5 trains on
128 images. The Release run keeps the whole test set.

Needs Debian's python3-torch (/usr/bin/python3); fails when it is missing. Debian has no
python3-safetensors, so the format (8-byte little-endian header length, JSON header, raw
little-endian data) is read and written by hand below, with numpy.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import torch
except ImportError:
    sys.exit("torch_interchange: PyTorch is not importable by " + sys.executable +
             " (install Debian's python3-torch: bash scripts/setup.sh --test)")

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST, as sprig normalises it
DTYPES = {"F32": np.float32, "I32": np.int32, "U8": np.uint8, "I64": np.int64}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = np.dtype(DTYPES[e["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=dt).reshape(e["shape"])
    return out, meta


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def sprig(*args):
    r = subprocess.run([SPRIG, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("torch_interchange: sprig " + " ".join(args) + " failed:\n" + r.stdout + r.stderr)
    return r.stdout


def torch_model_from_sprig(zoo_name):
    """The PyTorch twin of a sprig model, layer by layer from `sprig summary --json`, so the
    state_dict keys ("0.weight", "2.bias", ...) are sprig's parameter names."""
    s = json.loads(sprig("summary", "--model", zoo_name, "--json").strip().splitlines()[-1])
    shape = s["input_shape"]
    layers = []
    for layer in s["layers"]:
        spec = layer["spec"]
        kind, _, rest = spec.partition("(")
        args = [a for a in rest.rstrip(")").split(",") if a]
        pos = [int(a) for a in args if "=" not in a]
        kw = {k: int(v) for k, v in (a.split("=") for a in args if "=" in a)}
        if kind == "conv":
            layers.append(torch.nn.Conv2d(shape[0], pos[0], pos[1], stride=kw.get("stride", 1),
                                          padding=kw.get("pad", 0),
                                          dilation=kw.get("dilation", 1),
                                          bias=kw.get("bias", 1) != 0))
        elif kind == "linear":
            layers.append(torch.nn.Linear(shape[0], pos[0], bias=kw.get("bias", 1) != 0))
        elif kind == "relu":
            layers.append(torch.nn.ReLU())
        elif kind == "flatten":
            layers.append(torch.nn.Flatten())
        elif kind == "maxpool":
            layers.append(torch.nn.MaxPool2d(pos[0], stride=kw.get("stride") or None,
                                             padding=kw.get("pad", 0)))
        else:
            sys.exit("torch_interchange: no PyTorch twin for sprig layer '" + spec + "'")
        shape = layer["output_shape"]
    return torch.nn.Sequential(*layers), s


def close(a, b, what):
    """Within 1e-5 of the reference logits' scale (an element-wise relative bound would be
    meaningless for logits near 0)."""
    scale = float(np.abs(b).max())
    err = float(np.abs(a - b).max())
    print(f"{what}: max |sprig - torch| = {err:.3g}, logit scale {scale:.3g}, "
          f"relative {err / scale:.3g}")
    if not err <= 1e-5 * scale:
        sys.exit(f"torch_interchange: {what}: logits differ by {err:.3g} "
                 f"(> 1e-5 x {scale:.3g})")


def main():
    torch.set_num_threads(2)
    test_x = read_idx(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))
    test_y = read_idx(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    x_all = ((test_x.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD))
    x_all = x_all.astype(np.float32).reshape(-1, 1, 28, 28)[:TEST_IMAGES]
    test_y = test_y[:TEST_IMAGES]
    with tempfile.TemporaryDirectory(prefix="sprig_torch_") as tmp:
        start = time.perf_counter()
        check_all(tmp, x_all, test_y)
        middle = time.perf_counter()
        check_resnet(tmp, x_all[:RESNET_TEST_IMAGES], test_y[:RESNET_TEST_IMAGES])
        print(f"seconds: cnn2 {middle - start:.1f}, resnet20 {time.perf_counter() - middle:.1f}")
    print("torch_interchange: OK")


def check_all(tmp, x_all, test_y):

    # 1. PyTorch-initialised weights -> sprig predict.
    torch.manual_seed(1234)
    net, summary = torch_model_from_sprig("cnn2")
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    n_params = sum(v.size for v in sd.values())
    assert n_params == summary["params"], (n_params, summary["params"])
    weights = os.path.join(tmp, "torch_cnn2.safetensors")
    save_safetensors(weights, sd)
    batch = x_all[:64]
    inp = os.path.join(tmp, "input.safetensors")
    save_safetensors(inp, {"input": batch})
    out = os.path.join(tmp, "logits.safetensors")
    sprig("predict", "--in", weights, "--model", "cnn2", "--input-shape", "1,28,28", "--input",
          inp, "--out", out, "--threads", "2")
    got, _ = load_safetensors(out)
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(batch)).numpy()
    assert got["logits"].shape == want.shape, (got["logits"].shape, want.shape)
    close(got["logits"], want, "torch-initialised cnn2, 64 test images")

    # 2. A shape mismatch is one line naming the tensor and both shapes.
    bad = dict(sd)
    bad["2.weight"] = np.zeros((16, 8, 5, 5), np.float32)
    bad_path = os.path.join(tmp, "bad.safetensors")
    save_safetensors(bad_path, bad)
    r = subprocess.run([SPRIG, "predict", "--in", bad_path, "--model", "cnn2", "--input", inp,
                        "--out", os.path.join(tmp, "never.safetensors")],
                       capture_output=True, text=True)
    msg = r.stdout + r.stderr
    if (r.returncode == 0 or msg.count("\n") != 1 or "2.weight" not in msg
            or "(16, 8, 5, 5)" not in msg or "(16, 8, 3, 3)" not in msg):
        sys.exit("torch_interchange: a wrong shape was not reported as expected: " + msg)
    if os.path.exists(os.path.join(tmp, "never.safetensors")):
        sys.exit("torch_interchange: predict wrote an output despite the error")

    # 3. sprig-trained checkpoint -> PyTorch, on the whole test set.
    ck = os.path.join(tmp, "sprig_cnn2.safetensors")
    sprig("train", "--model", "cnn2", "--epochs", "1", "--limit-train", "1920",
          "--batch-size", "64", "--seed", "5", "--threads", "2", "--quiet", "--data-dir", DATA,
          "--limit-test", str(len(x_all)), "--out", ck)
    ev = json.loads(sprig("eval", "--in", ck, "--json", "--threads", "2", "--data-dir", DATA,
                          "--limit-test", str(len(x_all))).strip().splitlines()[-1])
    assert ev["samples"] == len(x_all), ev
    sprig_correct = round(ev["test_accuracy"] * ev["samples"])
    tensors, meta = load_safetensors(ck)
    assert meta.get("format") == "sprig-checkpoint-1", meta
    extra = [k for k in tensors if k not in sd and not k.startswith("optim.")]
    if extra:
        sys.exit("torch_interchange: sprig's checkpoint has tensors PyTorch does not know: " +
                 ", ".join(extra))
    trained = torch_model_from_sprig("cnn2")[0]
    trained.load_state_dict({k: torch.from_numpy(tensors[k].copy()) for k in sd}, strict=True)
    trained.eval()
    with torch.no_grad():
        logits = torch.cat([trained(torch.from_numpy(x_all[i:i + 500]))
                            for i in range(0, len(x_all), 500)]).numpy()
    pred = logits.argmax(1)
    torch_correct = int((pred == test_y).sum())
    print(f"test set: sprig eval {sprig_correct} correct, PyTorch {torch_correct} correct "
          f"of {len(test_y)}")

    # The same logits from both, per sample, on the first 2,000 test images.
    few = min(2000, len(x_all))
    inp2 = os.path.join(tmp, "input2.safetensors")
    save_safetensors(inp2, {"input": x_all[:few]})
    out2 = os.path.join(tmp, "logits2.safetensors")
    sprig("predict", "--in", ck, "--input", inp2, "--out", out2, "--threads", "2")
    close(load_safetensors(out2)[0]["logits"], logits[:few], f"sprig-trained cnn2, {few} images")

    if sprig_correct != torch_correct:
        top2 = np.sort(logits, 1)[:, -2:]
        near_ties = int((top2[:, 1] - top2[:, 0] < 1e-4).sum())
        print(f"differing by {abs(sprig_correct - torch_correct)}; {near_ties} near-ties")
        if abs(sprig_correct - torch_correct) > min(2, near_ties):
            sys.exit("torch_interchange: accuracies differ beyond float near-ties")


def torch_resnet(name):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
    import torch_resnet  # the PyTorch twin of sprig's zoo ResNets, same module names
    return torch_resnet.build(name, 1)


def expect_error(args, words, what):
    r = subprocess.run([SPRIG, *args], capture_output=True, text=True)
    msg = r.stdout + r.stderr
    if (r.returncode == 0 or msg.count("\n") != 1 or not msg.startswith("sprig: error:")
            or not all(w in msg for w in words)):
        sys.exit(f"torch_interchange: {what} was not reported as expected: {msg}")
    print(f"{what}: {msg.strip()}")


def check_resnet(tmp, x_all, test_y):
    # 4. A PyTorch resnet20 with BatchNorm statistics that matter -> sprig predict.
    torch.manual_seed(4321)
    net = torch_resnet("resnet20")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.3)
        net.train()
        for i in range(3):  # moves running_mean / running_var and num_batches_tracked
            net(torch.from_numpy(x_all[64 * i:64 * (i + 1)]) * 1.5 + 0.2)
    net.eval()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    assert sd["bn1.num_batches_tracked"].dtype == np.int64 and int(sd["bn1.num_batches_tracked"]) == 3
    weights = os.path.join(tmp, "torch_resnet20.safetensors")
    save_safetensors(weights, sd)
    batch = x_all[256:320]  # not among the 192 the statistics came from
    inp = os.path.join(tmp, "resnet_input.safetensors")
    save_safetensors(inp, {"input": batch})
    out = os.path.join(tmp, "resnet_logits.safetensors")
    sprig("predict", "--in", weights, "--model", "resnet20", "--input-shape", "1,28,28",
          "--input", inp, "--out", out, "--threads", "2")
    with torch.no_grad():
        want = net(torch.from_numpy(batch)).numpy()
    close(load_safetensors(out)[0]["logits"], want, "torch resnet20 (BN statistics), 64 test images")

    bad = dict(sd)
    del bad["layer2.1.bn1.running_var"]
    bad["fc.weight"] = np.zeros((10, 64), np.float32)
    bad_path = os.path.join(tmp, "bad_resnet.safetensors")
    save_safetensors(bad_path, bad)
    never = os.path.join(tmp, "never.safetensors")
    expect_error(["predict", "--in", bad_path, "--model", "resnet20", "--input", inp, "--out",
                  never], ["'layer2.1.bn1.running_var' (32)"], "a missing running_var")
    del bad["fc.weight"]
    bad["layer2.1.bn1.running_var"] = sd["layer2.1.bn1.running_var"]
    bad["linear.num_batches_tracked"] = np.zeros((), np.int64)
    save_safetensors(bad_path, bad)
    expect_error(["predict", "--in", bad_path, "--model", "resnet20", "--input", inp, "--out",
                  never], ["'linear.num_batches_tracked'", "not parameters or buffers"],
                 "num_batches_tracked without a BatchNorm")
    if os.path.exists(never):
        sys.exit("torch_interchange: predict wrote an output despite the error")

    # 5. A sprig-trained resnet20 -> the PyTorch twin (strict), the whole test set.
    ck = os.path.join(tmp, "sprig_resnet20.safetensors")
    sprig("train", "--model", "resnet20", "--epochs", "1", "--limit-train", str(RESNET_TRAIN),
          "--batch-size", "32", "--seed", "6", "--threads", "2", "--quiet", "--data-dir", DATA,
          "--limit-test", str(len(x_all)), "--out", ck)
    ev = json.loads(sprig("eval", "--in", ck, "--json", "--threads", "2", "--data-dir", DATA,
                          "--limit-test", str(len(x_all))).strip().splitlines()[-1])
    assert ev["samples"] == len(x_all), ev
    sprig_correct = round(ev["test_accuracy"] * ev["samples"])
    tensors, meta = load_safetensors(ck)
    twin = torch_resnet("resnet20")
    want_keys = set(twin.state_dict())
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items() if not k.startswith("optim.")}
    if any(k.endswith("num_batches_tracked") for k in state):
        sys.exit("torch_interchange: sprig wrote a num_batches_tracked")
    for k in want_keys:  # the one thing sprig does not keep (see nn/layers.h BatchNorm)
        if k.endswith(".num_batches_tracked"):
            state[k] = torch.tensor(0, dtype=torch.int64)
    twin.load_state_dict(state, strict=True)
    twin.eval()
    with torch.no_grad():
        logits = torch.cat([twin(torch.from_numpy(x_all[i:i + 1000]))
                            for i in range(0, len(x_all), 1000)]).numpy()
    torch_correct = int((logits.argmax(1) == test_y).sum())
    print(f"resnet20 trained by sprig on {RESNET_TRAIN} images: sprig eval {sprig_correct} "
          f"correct, PyTorch {torch_correct} correct of {len(test_y)}")
    if sprig_correct != torch_correct:
        top2 = np.sort(logits, 1)[:, -2:]
        near_ties = int((top2[:, 1] - top2[:, 0] < 1e-4).sum())
        print(f"differing by {abs(sprig_correct - torch_correct)}; {near_ties} near-ties")
        if abs(sprig_correct - torch_correct) > min(2, near_ties):
            sys.exit("torch_interchange: resnet20 accuracies differ beyond float near-ties")


SANITIZED = os.environ.get("SPRIG_TEST_SANITIZED") == "1"
TEST_IMAGES = 1000 if SANITIZED else 10000  # of Fashion-MNIST's 10,000
RESNET_TRAIN = 128 if SANITIZED else 512
# The resnet20 checks evaluate on these (at least 320: they take a batch from 256); under ASan
# each of its two evaluations of 1,000 images took about a minute.
RESNET_TEST_IMAGES = 320 if SANITIZED else TEST_IMAGES

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    SPRIG, DATA = sys.argv[1], sys.argv[2]
    main()
