"""captum's side of bench/explain/captum.sh (issue 17, acceptance 2).

Loads the same weights (the run's best.safetensors, read directly) into the PyTorch twin of
examples/mnist-cnn.toml, reads the inputs, targets and our attributions from the JSON written by
`cargo run --release -p lepton-explain --example captum_bench`, runs captum's IntegratedGradients
(50 and 256 steps, its default Gauss-Legendre rule, zero baseline), Saliency (abs) and Occlusion
(4x4 window, stride 1, zero baseline) one image per call, and prints per method: time per image,
ours, the ratio, and the agreement max |ours - captum| / max |captum| (per image, the worst image,
and that image's index). Exits with status 1 when an integrated-gradients method misses the 1e-3
agreement bar on any image (issue 17, acceptance 2).

    py=$(bench/pyenv.sh torch numpy captum)/bin/python
    $py bench/explain/captum_ref.py RUN_DIR OURS.json --threads 2 [--methods ig50,ig256]
"""

import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from captum.attr import IntegratedGradients, Occlusion, Saliency


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", name
        a, b = meta["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(data, dtype="<f4", count=(b - a) // 4, offset=8 + n + a).reshape(meta["shape"]).copy()
        )
    return out


def model():
    # Indices match lepton's `layers.{i}` names (examples/mnist-cnn.toml).
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10),
    )


# Issue 17, acceptance 2: integrated gradients agree with captum's to this relative error on every image.
IG_BAR = 1e-3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("ours")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="append the summary as one JSON line to this file")
    ap.add_argument("--methods", default="ig50,ig256,saliency,occlusion4x4", help="comma-separated subset")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net = model()
    state = {k.replace("layers.", "", 1): v for k, v in load_safetensors(os.path.join(a.run, "best.safetensors")).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(m.endswith("num_batches_tracked") for m in missing), (missing, unexpected)
    net.eval()
    ours = json.load(open(a.ours))
    xs = torch.tensor(ours["inputs"], dtype=torch.float32).reshape(-1, 1, 28, 28)
    targets = ours["targets"]
    with torch.no_grad():
        pred = net(xs).argmax(1).tolist()
    assert pred == targets, "the two models disagree on the predicted classes"
    ig, sal, occ = IntegratedGradients(net), Saliency(net), Occlusion(net)
    methods = {
        "ig50": lambda x, t: ig.attribute(x, baselines=0.0, target=t, n_steps=50),
        "ig256": lambda x, t: ig.attribute(x, baselines=0.0, target=t, n_steps=256),
        "saliency": lambda x, t: sal.attribute(x, target=t),
        "occlusion4x4": lambda x, t: occ.attribute(x, sliding_window_shapes=(1, 4, 4), strides=1, baselines=0.0, target=t),
    }
    summary = {"threads": a.threads, "images": len(targets), "methods": {}}
    print(f"{len(targets)} MNIST test images, {a.threads} threads (ours: {ours['threads']})")
    print(f"{'method':<14}{'captum ms':>10}{'ours ms':>10}{'speed-up':>10}{'max rel err':>13}{'worst image':>13}")
    failed = []
    for name in a.methods.split(","):
        f = methods[name]
        x0 = xs[:1].clone().requires_grad_(name != "occlusion4x4")
        f(x0, targets[0])  # warm-up
        attrs = []
        t0 = time.perf_counter()
        for i, t in enumerate(targets):
            x = xs[i : i + 1].clone()
            attrs.append(f(x, t).detach().reshape(-1).numpy())
        ms = (time.perf_counter() - t0) * 1e3 / len(targets)
        mine = np.asarray(ours["ours"][name]["attributions"], dtype=np.float64)
        theirs = np.asarray(attrs, dtype=np.float64)
        per_image = [np.abs(m - c).max() / max(np.abs(c).max(), 1e-12) for m, c in zip(mine, theirs)]
        worst = int(np.argmax(per_image))
        rel = float(per_image[worst])
        our_ms = ours["ours"][name]["ms_per_image"]
        print(f"{name:<14}{ms:>10.2f}{our_ms:>10.2f}{ms / our_ms:>9.1f}x{rel:>13.2e}{worst:>13}")
        summary["methods"][name] = {
            "captum_ms": ms, "ours_ms": our_ms, "speedup": ms / our_ms, "max_rel_err": rel, "worst_image": worst,
        }
        if name.startswith("ig") and rel > IG_BAR:
            bad = [i for i, r in enumerate(per_image) if r > IG_BAR]
            failed.append(f"{name}: images {bad} differ from captum by more than {IG_BAR:g} (worst: image {worst}, {rel:.2e})")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(summary) + "\n")
    if failed:
        print("AGREEMENT NOT MET:\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
