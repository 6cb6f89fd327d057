#!/usr/bin/env python3
"""The reference for issue 4's load benchmark: the same model served the usual Python way
(FastAPI + uvicorn + PyTorch CPU). It reads a Lepton .photon file directly (header JSON + the
safetensors blob with PyTorch state_dict names), builds the same layers in torch, loads the same
weights and applies the same preprocessing (grey, resize, /255, (x - mean) / std), so both servers
compute the same function. Same route and answer shape as Lepton's /v1 predict.

  LEPTON_PHOTON=model.photon TORCH_THREADS=1 uvicorn reference_server:app --workers 2 --port 18490
  python reference_server.py --flops model.photon      # forward FLOPs per sample
  python reference_server.py --check model.photon a.png ...  # print top label per file
"""
import io
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "U8": np.uint8}


def read_photon(path):
    """(manifest dict, {name: tensor}) from a .photon file (format version 1)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"LEPTONPH", f"{path}: not a photon"
    (version,) = struct.unpack("<I", data[8:12])
    assert version == 1, f"{path}: format version {version}"
    (hlen,) = struct.unpack("<Q", data[12:20])
    manifest = json.loads(data[52:52 + hlen])
    at = 52 + hlen
    at += (64 - at % 64) % 64
    blob = data[at:at + manifest["weights_len"]]
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        s, e = t["data_offsets"]
        arr = np.frombuffer(blob[base + s:base + e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return manifest, tensors


def build(layers, shape):
    """torch modules for Lepton layer specs; returns (modules, output shape, forward FLOPs)."""
    mods, flops = [], 0
    for l in layers:
        t = l["type"]
        if t == "conv2d":
            c, h, w = shape
            k, s, p, d, g = l["kernel"], l.get("stride", 1), l.get("padding", 0), l.get("dilation", 1), l.get("groups", 1)
            m = nn.Conv2d(c, l["out-channels"], k, s, p, d, g, l.get("bias", True))
            oh, ow = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
            shape = [l["out-channels"], oh, ow]
            flops += 2 * l["out-channels"] * oh * ow * (c // g) * k * k
        elif t in ("max-pool2d", "avg-pool2d"):
            c, h, w = shape
            k, p = l["kernel"], l.get("padding", 0)
            s = l.get("stride") or k
            m = (nn.MaxPool2d if t == "max-pool2d" else nn.AvgPool2d)(k, s, p)
            shape = [c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1]
        elif t == "batch-norm2d":
            m = nn.BatchNorm2d(shape[0], eps=l.get("eps", 1e-5))
        elif t == "batch-norm1d":
            m = nn.BatchNorm1d(shape[0], eps=l.get("eps", 1e-5))
        elif t == "linear":
            m = nn.Linear(shape[-1], l["out-features"], l.get("bias", True))
            flops += 2 * shape[-1] * l["out-features"]
            shape = shape[:-1] + [l["out-features"]]
        elif t == "flatten":
            m = nn.Flatten()
            shape = [int(np.prod(shape))]
        elif t == "dropout":
            m = nn.Dropout(l["p"])
        elif t == "relu":
            m = nn.ReLU()
        elif t == "global-avg-pool":
            m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            shape = [shape[0]]
        else:
            raise SystemExit(f"reference_server: layer type {t} not supported here")
        mods.append(m)
    return mods, shape, flops


class Net(nn.Module):
    def __init__(self, manifest):
        super().__init__()
        mods, _, self.flops = build(manifest["model"]["layers"], manifest["input_shape"])
        self.layers = nn.Sequential(*mods)

    def forward(self, x):
        return self.layers(x)


def load(path):
    manifest, tensors = read_photon(path)
    net = Net(manifest)
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert not missing and not unexpected, f"weights do not fit: missing {missing}, unexpected {unexpected}"
    net.eval()
    return manifest, net


def preprocess(body, pre):
    from PIL import Image
    c, h, w = pre["channels"], pre["height"], pre["width"]
    img = Image.open(io.BytesIO(body))
    img = img.convert("L" if c == 1 else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if c == 1 else a.transpose(2, 0, 1)
    mean = np.asarray(pre["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(pre["std"], dtype=np.float32)[:, None, None]
    return torch.from_numpy(((a - mean) / std)[None].copy())


if len(sys.argv) > 2 and sys.argv[1] == "--flops":
    print(Net(read_photon(sys.argv[2])[0]).flops)
    sys.exit(0)
if len(sys.argv) > 2 and sys.argv[1] == "--check":
    manifest, net = load(sys.argv[2])
    pre = manifest["preprocessor"]
    for f in sys.argv[3:]:
        with torch.inference_mode():
            p = torch.softmax(net(preprocess(open(f, "rb").read(), pre)), -1)[0]
        print(f, pre["class_names"][int(p.argmax())], f"{float(p.max()):.6f}")
    sys.exit(0)

from fastapi import FastAPI, HTTPException, Request  # noqa: E402

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
MANIFEST, NET = load(os.environ["LEPTON_PHOTON"])
PRE = MANIFEST["preprocessor"]
CLASSES = PRE["class_names"]
app = FastAPI()


@app.get("/empty")
async def empty():
    return {}


def preprocess_json(body, pre):
    """`{"inputs": [[raw pixels 0-255, C*H*W], ...]}`, as `lepton serve` takes it."""
    c, h, w = pre["channels"], pre["height"], pre["width"]
    a = np.asarray(json.loads(body)["inputs"], dtype=np.float32).reshape(-1, c, h, w) / 255.0
    mean = np.asarray(pre["mean"], dtype=np.float32)[None, :, None, None]
    std = np.asarray(pre["std"], dtype=np.float32)[None, :, None, None]
    return torch.from_numpy((a - mean) / std)


@app.post("/v1/models/{name}/predict")
async def predict(name: str, request: Request, top_k: int = 3):
    body = await request.body()
    is_json = request.headers.get("content-type", "").startswith("application/json")
    try:
        x = preprocess_json(body, PRE) if is_json else preprocess(body, PRE)
    except Exception as e:  # noqa: BLE001
        raise HTTPException(400, f"request body: {e}")
    with torch.inference_mode():
        probs = torch.softmax(NET(x), -1)
    out = []
    for p in probs:
        vals, idx = torch.topk(p, min(top_k, len(CLASSES)))
        top = [{"label": CLASSES[int(i)], "probability": float(v)} for v, i in zip(vals, idx)]
        out.append({"label": top[0]["label"], "probability": top[0]["probability"], "top_k": top})
    return {"model": name, "predictions": out}
