"""PyTorch's own int8 on the same MNIST CNN weights as a Lepton package (issue 16, acceptance 1).

Loads the f32 weights from OUR `.photon` (examples/mnist-cnn.toml trained by `lepton train`; the
layer indices of the spec are the indices of the nn.Sequential below, so the state_dict names
match), normalises the MNIST test set with the package's stored mean/std, and measures on the
same threads, side by side:
- f32 (eager),
- `torch.ao.quantization.quantize_dynamic` (int8 Linear layers),
- static post-training int8 (fbgemm/x86, conv+bn+relu fused, `--calibration` training images),
test accuracy, serialised state_dict size, batch-1 latency and batch-64 throughput (medians).

    py=$(bench/pyenv.sh torch numpy)/bin/python
    $py bench/compress/mnist_cnn_torch.py --photon RUN/model.photon --threads 2 [--json out.json]
"""

import argparse
import gzip
import io
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "..", "data", "mnist")


def idx(name):
    with gzip.open(os.path.join(MNIST, name)) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def read_photon(path):
    """The manifest and the f32 tensors of a photon (byte layout: lepton-photon's lib.rs)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"LEPTONPH", "not a photon"
    (hlen,) = struct.unpack("<Q", raw[12:20])
    manifest = json.loads(raw[52 : 52 + hlen])
    start = 52 + hlen
    start += (-start) % 64
    blob = raw[start : start + manifest["weights_len"]]
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{name}: {info['dtype']} (give the f32 package)"
        a, b = info["data_offsets"]
        tensors[name] = np.frombuffer(blob[8 + n + a : 8 + n + b], dtype="<f4").reshape(info["shape"]).copy()
    return manifest, tensors


class Net(nn.Module):
    def __init__(self, quant=False):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub() if quant else nn.Identity()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10),
        )
        self.dequant = torch.ao.quantization.DeQuantStub() if quant else nn.Identity()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


def load(tensors, quant=False):
    net = Net(quant)
    sd = {"body." + k[len("layers.") :]: torch.from_numpy(v) for k, v in tensors.items()}
    net.load_state_dict(sd, strict=False)
    missing = set(net.state_dict()) - set(sd) - {k for k in net.state_dict() if "num_batches" in k}
    assert not missing, missing
    return net.eval()


def accuracy(net, x, y, bs=1000):
    with torch.inference_mode():
        right = sum((net(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum().item() for i in range(0, len(x), bs))
    return 100.0 * right / len(x)


def size(net):
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.tell()


def timing(net, x, reps):
    out = {}
    with torch.inference_mode():
        for b in (1, 64):
            xb = x[:b]
            net(xb)
            t = []
            for _ in range(reps):
                s = time.perf_counter()
                net(xb)
                t.append(time.perf_counter() - s)
            t.sort()
            out[b] = t[len(t) // 2]
    return {"latency_ms": out[1] * 1e3, "throughput": 64 / out[64]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photon", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calibration", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    manifest, tensors = read_photon(a.photon)
    pre = manifest["preprocessor"]
    pre = pre.get("Image", pre.get("image", pre))
    mean, std = pre["mean"][0], pre["std"][0]
    norm = lambda imgs: torch.from_numpy(((imgs.astype(np.float32) / 255.0 - mean) / std)[:, None])
    xt, yt = norm(idx("t10k-images-idx3-ubyte.gz")), torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    xtrain = norm(idx("train-images-idx3-ubyte.gz")[: a.calibration])

    results = {}
    f32 = load(tensors)
    results["torch-f32"] = {"accuracy": accuracy(f32, xt, yt), "size_bytes": size(f32), **timing(f32, xt, a.reps)}

    dyn = torch.ao.quantization.quantize_dynamic(load(tensors), {nn.Linear}, dtype=torch.qint8)
    results["torch-dynamic-int8"] = {"accuracy": accuracy(dyn, xt, yt), "size_bytes": size(dyn), **timing(dyn, xt, a.reps)}

    engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    torch.backends.quantized.engine = engine
    st = load(tensors, quant=True)
    st.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    torch.ao.quantization.fuse_modules(st.body, [["0", "1", "2"], ["4", "5", "6"], ["10", "11"]], inplace=True)
    torch.ao.quantization.prepare(st, inplace=True)
    with torch.inference_mode():
        for i in range(0, len(xtrain), 256):
            st(xtrain[i : i + 256])
    torch.ao.quantization.convert(st, inplace=True)
    results["torch-static-int8"] = {
        "accuracy": accuracy(st, xt, yt),
        "size_bytes": size(st),
        "calibration": a.calibration,
        "engine": engine,
        **timing(st, xt, a.reps),
    }
    results["threads"] = a.threads
    results["torch"] = torch.__version__
    text = json.dumps(results, indent=2)
    print(text)
    if a.json:
        open(a.json, "w").write(text + "\n")


if __name__ == "__main__":
    main()
