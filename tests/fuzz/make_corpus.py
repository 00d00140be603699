#!/usr/bin/env python3
"""Hand-made seeds for tests/fuzz/corpus (run by make_corpus.sh): IDX files of every element
type, gzip variants and malformed ones; safetensors edge cases; model specs; train_state edge
cases (from the states make_corpus.sh extracted from real runs); fuzz_resume edit sequences."""
import gzip
import json
import os
import re
import struct
import sys

out = sys.argv[1]


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)


# ---- IDX: 00 00 <type> <rank>, big-endian uint32 dims, big-endian elements -----------------
def idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


u8 = idx(0x08, [2, 3, 3], bytes(range(18)))
put("fuzz_idx", "u8-3d", u8)
put("fuzz_idx", "u8-1d-labels", idx(0x08, [5], bytes([0, 9, 3, 3, 7])))
put("fuzz_idx", "i8", idx(0x09, [4], bytes([0x80, 0xFF, 0, 0x7F])))
put("fuzz_idx", "i16", idx(0x0B, [2, 2], struct.pack(">4h", -32768, -1, 0, 32767)))
put("fuzz_idx", "i32", idx(0x0C, [3], struct.pack(">3i", -2**31, 0, 2**31 - 1)))
put("fuzz_idx", "f32", idx(0x0D, [1, 1, 2, 2], struct.pack(">4f", 0.5, -1e30, float("inf"), 0)))
put("fuzz_idx", "f64", idx(0x0E, [2], struct.pack(">2d", 1e300, float("nan"))))
put("fuzz_idx", "u8-gzip", gzip.compress(u8, mtime=0))
put("fuzz_idx", "u8-gzip-2-members", gzip.compress(u8[:7], mtime=0) + gzip.compress(u8[7:], mtime=0))
put("fuzz_idx", "gzip-truncated", gzip.compress(u8, mtime=0)[:-6])
put("fuzz_idx", "truncated-data", u8[:-3])
put("fuzz_idx", "trailing-bytes", u8 + b"\x00\x01")
put("fuzz_idx", "huge-dims", idx(0x08, [0xFFFFFFFF, 0xFFFFFFFF], b"\x01"))
put("fuzz_idx", "rank-0", bytes([0, 0, 8, 0]))

# ---- safetensors: u64 little-endian header length, JSON header, data -----------------------
def st(header, data=b""):
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


put("fuzz_safetensors", "empty-header", st({}))
put("fuzz_safetensors", "metadata-only", st({"__metadata__": {"format": "pt"}}))
put("fuzz_safetensors", "f32-i32-u8", st({
    "__metadata__": {"spec": "flatten linear(2)"},
    "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "i": {"dtype": "I32", "shape": [1], "data_offsets": [16, 20]},
    "m": {"dtype": "U8", "shape": [2, 2], "data_offsets": [20, 24]},
}, struct.pack("<4f", 1, -2, 0.5, 0) + struct.pack("<i", -7) + bytes([1, 0, 1, 1])))
put("fuzz_safetensors", "zero-size", st({
    "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
    "s": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]},
}, b"\x05"))
put("fuzz_safetensors", "overlap", st({
    "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
    "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]},
}, b"abc"))
# A PyTorch BatchNorm's state: num_batches_tracked is I64, which only the skip path accepts.
put("fuzz_safetensors", "torch-bn-state", st({
    "bn.num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
    "bn.running_var": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
}, struct.pack("<qf", 3, 1.5)))
put("fuzz_safetensors", "bad-dtype", st({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}, b"xx"))

# ---- model specs -------------------------------------------------------------------------
specs = {
    "zoo-mlp": "mlp",
    "zoo-lenet5": "lenet5",
    "cnn2": "conv(8,3,pad=1) relu conv(16,3,pad=1) relu flatten linear(10)",
    "all-args": "conv(4, 3, stride=2, pad=1, dilation=1, bias=0) relu maxpool(2, stride=1, pad=1) "
                "conv2d(out=3, kernel=2) flatten dense(5, bias=0) relu linear(out=2)",
    "flat": "linear(16) relu linear(3)",
    "dilated": "conv(2,3,dilation=2) maxpool(kernel=3,stride=2) flatten linear(1)",
    "bad-arg": "conv(8,3,pad=1,pad=2) relu",
    "bad-neg": "conv(-1,3) linear(0)",
    "bad-paren": "conv(8,3 relu flatten",
}
for name, text in specs.items():
    put("fuzz_model_spec", name, text)

# ---- train_state JSON (train/train_state.h): edge cases of the adam state sprig train wrote ----
with open(os.path.join(out, "fuzz_train_state", "adam-mid-epoch.json")) as f:
    adam = json.load(f)


def state(name, edit):
    s = json.loads(json.dumps(adam))
    edit(s)
    put("fuzz_train_state", name, json.dumps(s, separators=(",", ":")))


def old_format(s):  # a file from before the recipe fields and --limit-test
    for k in ("lr_step_size", "lr_milestones", "lr_gamma", "warmup_epochs", "augment", "bn_l1",
              "limit_test"):
        del s["config"][k]
    del s["config"]["optimizer"]["bn_weight_decay"]


state("old-format", old_format)
state("version-2", lambda s: s.update(version=2))
state("seed-max", lambda s: s["config"].update(seed=2**64 - 1))
state("seed-negative", lambda s: s["config"].update(seed=-1))
state("epochs-float", lambda s: s["config"].update(epochs=1e300))
state("epoch-unsigned", lambda s: s.update(epoch=2**64 - 1))
state("milestones-float", lambda s: s["config"].update(lr_schedule="multistep",
                                                       lr_milestones=[1.5, 1e300]))
state("steps-differ", lambda s: s.update(optimizer_steps=2**62))
state("model-other", lambda s: s["config"].update(model="linear(25000000)"))
state("model-spelled", lambda s: s["config"].update(model="Dense(8) ReLU linear(out=1, bias=1)"))
state("optimizer-unknown", lambda s: s["config"]["optimizer"].update(name="rmsprop"))
state("history-nested", lambda s: s.update(history=[[[[{}]]]]))
compact = json.dumps(adam, separators=(",", ":"))
put("fuzz_train_state", "lr-inf", re.sub(r'"lr":[-+.0-9e]+', '"lr":1e999', compact, count=1))
put("fuzz_train_state", "model-bad-utf8",
    compact.encode().replace(b'"linear(8) relu linear(1)"', b'"linear(8)\xff\xfe"'))
put("fuzz_train_state", "deep-nesting", '{"version":1,"config":' + "[" * 20000 + "]" * 20000 + "}")
put("fuzz_train_state", "not-an-object", "[1,2]")
put("fuzz_train_state", "empty", "")

# ---- fuzz_resume: byte 0 picks the checkpoint (0 adam, 1 sgd, 2 conv), then edits ------------
# (op % 6; see fuzz_resume.cpp). Tensors: the optimizer and rewind tensors in file order; JSON
# nodes: every node of the state in preorder with keys sorted. The three checkpoints' states
# have the shape of the adam state above, but the conv one has one milestone.
def nodes(j, at=""):
    found = [at] if at else []
    if isinstance(j, dict):
        for k in sorted(j):
            found += nodes(j[k], at + "/" + k)
    elif isinstance(j, list):
        for i, v in enumerate(j):
            found += nodes(v, at + "/" + str(i))
    return found


conv_state = json.loads(json.dumps(adam))
conv_state["config"]["lr_milestones"] = [2]
node = [{p: i for i, p in enumerate(nodes(j))} for j in (adam, adam, conv_state)]


def special(base, tensor, element, value):  # value: an index into fuzz_resume's special()
    return bytes([base, 1, tensor]) + struct.pack("<H", element) + bytes([value])


def set_json(base, path, text):
    return bytes([base, 2, node[base][path], len(text)]) + text.encode()


NAN, INF, HUGE, MINUS_ONE = 0, 1, 3, 8
resume = {
    "adam": b"\x00",
    "sgd": b"\x01",
    "conv": b"\x02",
    "adam-nan-exp-avg": special(0, 0, 0, NAN),
    "adam-huge-exp-avg": special(0, 0, 3, HUGE),
    "adam-negative-exp-avg-sq": special(0, 1, 2, MINUS_ONE),
    "sgd-inf-momentum": special(1, 4, 0, INF),
    "sgd-huge-momentum": special(1, 4, 1, HUGE),
    "sgd-nan-rewind": special(1, 0, 0, NAN),
    "conv-huge-exp-avg": special(2, 0, 5, HUGE),
    "adam-as-sgd": set_json(0, "/config/optimizer/name", '"sgd"'),
    "adam-lr-1000": set_json(0, "/config/optimizer/lr", "1000"),
    "adam-model-mlp": set_json(0, "/config/model", '"mlp"'),
    "sgd-no-momentum": set_json(1, "/config/optimizer/momentum", "0"),
    "conv-steps-0": set_json(2, "/optimizer_steps", "0"),
    "conv-no-bn-l1": set_json(2, "/config/bn_l1", "0"),
    "adam-drop-exp-avg-sq": bytes([0, 5, 1]),
    "adam-no-history": bytes([0, 3, node[0]["/history"]]),
    "adam-text-garbage": bytes([0, 4, 0, 0, 2]) + b"}}}",
    "adam-raw-bytes": bytes([0, 0, 0, 0, 0, 3]) + struct.pack("<f", 1e38),
    # Several edits, so inputs of that length are tried from the start.
    "sgd-many-edits": special(1, 5, 7, HUGE) + special(1, 6, 1, 12)[1:] +
                      special(1, 7, 0, 14)[1:] + set_json(1, "/config/optimizer/lr", "1000")[1:] +
                      set_json(1, "/config/optimizer/nesterov", "false")[1:] +
                      bytes([0, 8, 0x20, 0, 7]) + struct.pack("<2f", 3e38, -3e38),
    "conv-many-edits": special(2, 1, 3, 13) + special(2, 2, 9, HUGE)[1:] +
                       set_json(2, "/config/lr_gamma", "1e300")[1:] +
                       set_json(2, "/config/lr_milestones/0", "1")[1:],
}
for name, data in resume.items():
    put("fuzz_resume", name, data)
