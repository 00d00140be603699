#!/usr/bin/env python3
"""Hand-made seeds for tests/fuzz/corpus (run by make_corpus.sh): IDX files of every element
type, gzip variants and malformed ones; safetensors edge cases; model specs."""
import gzip
import json
import os
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
