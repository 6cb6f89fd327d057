"""PyTorch's side of bench/speed/run.sh (issue 3): the same workloads as
crates/lepton-train/examples/speed_bench.rs, printed in the same JSON-lines format.

    python bench/speed/torch_bench.py [ROUNDS] [WORKLOADS]   (threads from OMP_NUM_THREADS, default 2)
"""

import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def emit(workload, unit, samples, g):
    """samples: (wall, cpu) seconds per call; g converts seconds to the unit."""
    print(json.dumps({"workload": workload, "unit": unit,
                      "samples": [round(g(w), 4) for w, _ in samples],
                      "cpu_samples": [round(g(c), 4) for _, c in samples]}), flush=True)


def per_call(budget, f):
    """(wall, process CPU) seconds per call of f, averaged over as many calls as fit in about `budget` seconds."""
    t, c = time.perf_counter(), time.process_time()
    n = 0
    while n < 3 or time.perf_counter() - t < budget:
        f()
        n += 1
    return (time.perf_counter() - t) / n, (time.process_time() - c) / n


def lenet_model():
    # bench/speed/lenet.toml
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def lenet(rounds, which):
    torch.manual_seed(0)
    model = lenet_model()
    batch = 64

    def data(b):
        return torch.randn(b, 1, 28, 28), torch.arange(b) % 10

    x, y = data(batch)
    if "train" in which:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        for _ in range(5):
            step()
        emit("lenet-train-b64", "images/s", [per_call(1.5, step) for _ in range(rounds)], lambda t: batch / t)
    if "infer" in which:
        model.eval()
        for b in (64, 1):
            xb, _ = data(b)

            def f():
                with torch.inference_mode():
                    model(xb)

            for _ in range(5):
                f()
            s = [per_call(1.0, f) for _ in range(rounds)]
            if b == 1:
                emit("lenet-infer-b1-latency", "ms", s, lambda t: t * 1e3)
            else:
                emit("lenet-infer-b64", "images/s", s, lambda t, b=b: b / t)


def matmul(rounds):
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    emit("matmul-1024", "GFLOP/s", [per_call(1.0, lambda: a @ b) for _ in range(rounds)], lambda t: 2 * n**3 / t / 1e9)


class Block(nn.Module):
    """GPT-2 pre-norm block with causal self-attention."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        for m in (self.qkv, self.proj, self.fc, self.fc_proj):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(t, 3, self.heads, d // self.heads).permute(1, 2, 0, 3)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(0, 1).reshape(t, d)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


def gpt2(rounds):
    torch.manual_seed(0)
    blocks = nn.Sequential(*[Block(768, 12) for _ in range(12)]).eval()
    x = torch.randn(128, 768)

    def f():
        with torch.inference_mode():
            blocks(x).sum(-1)

    f()
    emit("gpt2-12x768-t128-forward", "ms", [per_call(1.5, f) for _ in range(rounds)], lambda t: t * 1e3)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    which = (sys.argv[2] if len(sys.argv) > 2 else "train,infer,matmul,gpt2").split(",")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), file=sys.stderr)
    lenet(rounds, which)
    if "matmul" in which:
        matmul(rounds)
    if "gpt2" in which:
        gpt2(rounds)


if __name__ == "__main__":
    main()
