"""Cross-checks sprig's safetensors files against an independent reader and writer.

Parses the format by hand (json + struct + numpy), so it needs neither sprig nor the
`safetensors` package. Used by tests/test_safetensors.cpp:

    safetensors_check.py verify FILE   # FILE (written by sprig) holds exactly expected()
    safetensors_check.py write FILE    # writes expected() for sprig to read

expected() must match expected_tensors() in tests/test_safetensors.cpp.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"), "U8": np.dtype("u1")}

METADATA = {"model": "mlp", "note": "\u00fcn\u00efcode \u2713", "json": '{"a": [1, 2]}'}


def expected():
    # Special floats are given as bit patterns so NaN payloads and -0.0 are compared exactly.
    special_bits = [0x7FC00001, 0xFF800000, 0x7F800000, 0x80000000, 0x00000001, 0x7F7FFFFF]
    return {
        "weight": ("F32", (np.arange(12, dtype="<f4") * np.float32(0.25) - np.float32(1.5)).reshape(3, 4)),
        "special": ("F32", np.array(special_bits, dtype="<u4").view("<f4")),
        "labels": ("I32", np.array([-2147483648, -1, 0, 1, 2147483647], dtype="<i4")),
        "mask": ("U8", np.array([[0, 1, 255], [128, 7, 0]], dtype="u1")),
        "scalar": ("F32", np.array(42.5, dtype="<f4")),
        "empty": ("F32", np.zeros((0, 3), dtype="<f4")),
    }


def fail(msg):
    print("safetensors_check.py: " + msg)
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors = {}
    ranges = []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = (info["dtype"], arr)
        ranges.append((begin, end))
    return tensors, meta, n, len(data), sorted(ranges)


def verify(path):
    tensors, meta, header_len, data_len, ranges = read(path)
    if (8 + header_len) % 8 != 0:
        fail("data section starts at %d, not 8-byte aligned" % (8 + header_len))
    pos = 0
    for begin, end in ranges:  # the spec: no holes, no overlaps, nothing trailing
        if begin != pos:
            fail("data range [%d, %d) does not start at %d" % (begin, end, pos))
        pos = end
    if pos != data_len:
        fail("tensors cover %d of %d data bytes" % (pos, data_len))
    if meta != METADATA:
        fail("metadata %r != %r" % (meta, METADATA))
    exp = expected()
    if set(tensors) != set(exp):
        fail("names %s != %s" % (sorted(tensors), sorted(exp)))
    for name, (dtype, want) in exp.items():
        got_dtype, got = tensors[name]
        if got_dtype != dtype:
            fail("%s: dtype %s != %s" % (name, got_dtype, dtype))
        if got.shape != want.shape:
            fail("%s: shape %s != %s" % (name, got.shape, want.shape))
        if got.tobytes() != want.tobytes():
            fail("%s: values %r != %r" % (name, got, want))
    print("safetensors_check.py: %s OK (%d tensors)" % (path, len(tensors)))


def write(path):
    exp = expected()
    # U8 first, so the F32 data after it sit at an odd offset: sprig must not assume alignment.
    # Metadata last and raw UTF-8 (not \u escapes) to differ from what sprig writes.
    order = ["mask", "special", "scalar", "empty", "labels", "weight"]
    header, blobs, offset = {}, [], 0
    for name in order:
        dtype, arr = exp[name]
        blob = np.ascontiguousarray(arr, dtype=DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = METADATA
    text = json.dumps(header, ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("verify", "write"):
        fail("usage: safetensors_check.py verify|write FILE")
    verify(sys.argv[2]) if sys.argv[1] == "verify" else write(sys.argv[2])
