#!/usr/bin/env python3
"""Max relative difference (max |a-b| / max |b|) between the model weights of two run
directories' last checkpoints. Reads safetensors with the standard library only."""
import json, struct, sys
from array import array


def load(run):
    path = f"{run}/checkpoints/last.safetensors"
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or not name.startswith("model."):
            continue
        assert meta["dtype"] == "F32", (name, meta["dtype"])
        a, b = meta["data_offsets"]
        out[name] = array("f", data[a:b])
    return out


a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys(), (sorted(a), sorted(b))
diff = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
scale = max(abs(y) for k in b for y in b[k])
steps = json.load(open(f"{sys.argv[1]}/checkpoints/last.json"))["step"]
print(f"{len(a)} tensors, {steps} steps: max relative difference {diff / scale:.3e}")
if len(sys.argv) > 3:
    tol = float(sys.argv[3])
    if not diff / scale <= tol:
        sys.exit(f"FAIL: {diff / scale:.3e} > {tol:.0e}")
