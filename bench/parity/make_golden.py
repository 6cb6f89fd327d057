"""PyTorch parity goldens for Lepton: a LeNet-style CNN trained with plain SGD.

Run (needs torch + numpy; CI does not, the outputs are committed):
    ~/.cache/lepton-bench/venv/bin/python bench/parity/make_golden.py

Writes, beside this script:
  lenet_golden.npz   the initial weights (PyTorch state_dict names, `layers.{i}.weight`), the
                     10 fixed batches `x` f32 [80, 1, 28, 28] (the first 80 MNIST training images,
                     normalised with mean 0.1307 / std 0.3081) and labels `y` i64 [80], and the
                     weights after the last step (`final.layers.{i}.weight`)
  lenet_golden.json  the loss curve (the batch loss at each of the 50 steps) and the setup

Step i uses batch i % 10; lr 0.05, no momentum, mean cross-entropy.
`cargo test -p lepton-train` (tests/it/parity.rs) trains the same model with lepton-nn's layers and
lepton-train's SGD from these files and compares the curve to 1e-4 relative.
"""
import gzip
import json
import pathlib

import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent
MNIST = HERE.parent.parent / "data" / "mnist"
BATCH, NBATCH, STEPS, LR, SEED = 8, 10, 50, 0.05, 1234

torch.manual_seed(SEED)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.layers(x)


def read_idx(name):
    with gzip.open(MNIST / name, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


n = BATCH * NBATCH
images = read_idx("train-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0
x = ((images - 0.1307) / 0.3081).astype(np.float32).reshape(n, 1, 28, 28)
y = read_idx("train-labels-idx1-ubyte.gz")[:n].astype(np.int64)

model = LeNet()
init = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
opt = torch.optim.SGD(model.parameters(), lr=LR)
xt, yt = torch.from_numpy(x), torch.from_numpy(y)
losses = []
for step in range(STEPS):
    b = step % NBATCH
    xb, yb = xt[b * BATCH:(b + 1) * BATCH], yt[b * BATCH:(b + 1) * BATCH]
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(xb), yb)
    loss.backward()
    opt.step()
    losses.append(loss.item())

arrays = dict(x=x, y=y, **init)
arrays.update({f"final.{k}": v.detach().numpy() for k, v in model.state_dict().items()})
np.savez(HERE / "lenet_golden.npz", **arrays)
(HERE / "lenet_golden.json").write_text(json.dumps(dict(
    torch=torch.__version__, batch=BATCH, batches=NBATCH, steps=STEPS, lr=LR, seed=SEED,
    layers=["conv2d 1->6 k5", "relu", "maxpool2d 2", "conv2d 6->16 k5", "relu", "maxpool2d 2",
            "flatten", "linear 256->120", "relu", "linear 120->84", "relu", "linear 84->10"],
    losses=losses), indent=1) + "\n")
print("losses:", [round(l, 4) for l in losses[:5]], "...", [round(l, 4) for l in losses[-3:]])
