"""Runs sprig's ONNX exports in onnxruntime and compares with sprig's own outputs.

Used by tests/test_onnx_export.cpp:

    onnx_check.py [--rtol R] [--qdq] LABEL MODEL.onnx DATA.safetensors [LABEL MODEL.onnx DATA ...]

DATA holds "input" (N, ...) and "logits" (N, classes), both F32, written by sprig (read here by
hand with json + struct + numpy, so the `safetensors` package is not needed). Each model is run
with onnxruntime's CPUExecutionProvider on the whole batch and on its first sample alone (the
batch dimension is symbolic); every output element must satisfy
|ort - sprig| <= R * max(1, |sprig|), R = 1e-5 unless --rtol says otherwise (deep QDQ exports:
float sums in another order can move a later layer's input across a uint8 rounding boundary,
one step apart). Prints the largest errors per model; exits 1 on any
mismatch or missing module (a missing onnxruntime is a failure, not a skip).

--qdq (int8 models exported as QuantizeLinear / DequantizeLinear pairs): each model is run twice,
as written (graph optimisations off: DequantizeLinear, the float op, QuantizeLinear, which is how
ONNX defines it) and as onnxruntime fuses it into its int8 kernels (QLinearConv, ...). The fused
run is compared only on CPUs with VNNI: without it onnxruntime's uint8 x int8 kernels multiply
with VPMADDUBSW, whose pairwise int16 sums saturate (onnxruntime's quantization guide says so),
and its outputs then differ from the definition by whole quantisation steps.
"""
import json
import struct
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # the C++ side looks for a python that has both; say which is missing
    print(f"onnx_check.py: {e} (install with: bash scripts/setup.sh --test)")
    sys.exit(1)

RTOL = 1e-5


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])
    return out


def cpu_has_vnni():
    """True where onnxruntime's uint8 x int8 kernels sum exactly (AVX-512 VNNI or AVX-VNNI), or
    off x86, where VPMADDUBSW does not exist."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags or "sse2" not in flags


def check(label, model_path, data_path, rtol, fused=True):
    data = read_safetensors(data_path)
    x, ref = data["input"], data["logits"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if not fused:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    problems = []
    if [i.name for i in inputs] != ["input"] or [o.name for o in outputs] != ["logits"]:
        problems.append(f"graph inputs {[i.name for i in inputs]}, outputs {[o.name for o in outputs]}")
    elif inputs[0].shape != ["N"] + list(x.shape[1:]):
        problems.append(f"input shape {inputs[0].shape}, expected {['N'] + list(x.shape[1:])}")
    if problems:
        return problems, 0.0, 0.0
    (got,) = sess.run(["logits"], {"input": x})
    (one,) = sess.run(["logits"], {"input": x[:1]})
    if got.shape != ref.shape or one.shape != (1,) + ref.shape[1:]:
        return [f"output shapes {got.shape} / {one.shape}, expected {ref.shape}"], 0.0, 0.0
    if not np.all(np.isfinite(ref)) or not np.any(ref):
        return ["sprig's reference logits are not finite or all zero"], 0.0, 0.0
    max_abs, max_rel = 0.0, 0.0
    for run, out, want in (("batch", got, ref), ("first sample alone", one, ref[:1])):
        err = np.abs(out.astype(np.float64) - want.astype(np.float64))
        scale = np.maximum(1.0, np.abs(want.astype(np.float64)))
        max_abs = max(max_abs, float(err.max()))
        max_rel = max(max_rel, float((err / scale).max()))
        bad = err > rtol * scale
        if bad.any() or not np.all(np.isfinite(out)):
            idx = np.unravel_index(int(np.argmax(err / scale)), err.shape)
            problems.append(
                f"{run}: {int(bad.sum())} elements off, worst at {tuple(int(i) for i in idx)}: "
                f"onnxruntime {out[idx]!r} vs sprig {want[idx]!r}"
            )
    return problems, max_abs, max_rel


def main(argv):
    rtol, qdq = RTOL, False
    while argv and argv[0] in ("--rtol", "--qdq"):
        if argv[0] == "--qdq":
            qdq, argv = True, argv[1:]
        elif len(argv) >= 2:
            rtol, argv = float(argv[1]), argv[2:]
        else:
            break
    runs = [("", True)]  # (what the line says of the run, graph optimisations on)
    if qdq:
        runs = [(" as written", False)]
        if cpu_has_vnni():
            runs.append((" fused", True))
        else:
            print("onnx_check: this CPU lacks VNNI: onnxruntime's fused int8 kernels saturate "
                  "(VPMADDUBSW), so only the QDQ graph as written is compared")
    if len(argv) < 3 or len(argv) % 3:
        print(__doc__)
        return 2
    failed = False
    for i in range(0, len(argv), 3):
        label, model_path, data_path = argv[i : i + 3]
        for how, fused in runs:
            try:
                problems, max_abs, max_rel = check(label, model_path, data_path, rtol, fused)
            except Exception as e:  # a model onnxruntime refuses to load is a failure to report
                problems, max_abs, max_rel = [f"{type(e).__name__}: {e}"], 0.0, 0.0
            status = "ok" if not problems else "FAIL"
            print(
                f"onnx_check: {label}{how}: {status}: max |diff| {max_abs:.3g}, "
                f"max |diff|/max(1,|ref|) {max_rel:.3g} (tolerance {rtol:g}; "
                f"onnxruntime {ort.__version__})"
            )
            for p in problems:
                print(f"onnx_check: {label}{how}: {p}")
            failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
