#!/usr/bin/env python3
"""Writes gpt.json beside itself: a tiny nanoGPT (model.py semantics: pre-norm blocks, GELU MLP,
tied wte/lm_head; 2 layers, 2 heads, 32 wide, vocabulary 17, block 8, float64), its weights made
by a generator both sides compute exactly (an LCG per parameter name), a batch of token ids and
targets, the logits, the loss, every parameter's gradient, and the weights after 3 AdamW steps
(nanoGPT's configure_optimizers: weight decay on the 2-D tensors only), for tests/it/transformer.rs.

    py=$(bench/pyenv.sh torch numpy)/bin/python; $py crates/lepton-nn/tests/it/golden/gpt.py
"""
import json
import math
import pathlib

import torch
import torch.nn as nn
from torch.nn import functional as F

V, T, D, H, L, B = 17, 8, 32, 2, 2, 2
LR, BETAS, WD, STEPS = 1e-2, (0.9, 0.99), 0.1, 3


class LayerNorm(nn.Module):
    def __init__(self, ndim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(D, 3 * D)
        self.c_proj = nn.Linear(D, D)

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(D, dim=2)
        k = k.view(b, t, H, c // H).transpose(1, 2)
        q = q.view(b, t, H, c // H).transpose(1, 2)
        v = v.view(b, t, H, c // H).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(D, 4 * D)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * D, D)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = LayerNorm(D)
        self.attn = CausalSelfAttention()
        self.ln_2 = LayerNorm(D)
        self.mlp = MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, D), wpe=nn.Embedding(T, D),
            h=nn.ModuleList([Block() for _ in range(L)]), ln_f=LayerNorm(D)))
        self.lm_head = nn.Linear(D, V, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, V), targets.view(-1))


def values(name, n):
    """n values for parameter `name`: an LCG seeded by the name (exact integers, so the Rust test
    makes the same numbers); norm weights 1 ± 0.1, norm biases ± 0.1, others ± 0.3."""
    x = sum((i + 1) * ord(c) for i, c in enumerate(name)) % 2**32
    out = []
    for _ in range(n):
        x = (1664525 * x + 1013904223) % 2**32
        u = (x >> 8) / 2**24 * 2 - 1
        if ".ln_" in name and name.endswith("weight"):
            out.append(1 + 0.1 * u)
        elif ".ln_" in name:
            out.append(0.1 * u)
        else:
            out.append(0.3 * u)
    return out


def fmt(t):
    return [float(f"{v:.8e}") for v in t.detach().flatten().tolist()]


torch.manual_seed(0)
model = GPT().double()
params = dict(model.named_parameters())  # wte and lm_head share one entry
with torch.no_grad():
    for name, p in params.items():
        p.copy_(torch.tensor(values(name, p.numel()), dtype=torch.float64).view_as(p))
idx = torch.tensor([[(3 * i + 5 * b) % V for i in range(T)] for b in range(B)])
targets = torch.tensor([[(7 * i + 2 * b + 1) % V for i in range(T)] for b in range(B)])
logits, loss = model(idx, targets)
loss.backward()
grads = {n: fmt(p.grad) for n, p in params.items()}
decay = [p for p in params.values() if p.dim() >= 2]
no_decay = [p for p in params.values() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                         {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=BETAS, eps=1e-8)
losses = []
for _ in range(STEPS):
    opt.zero_grad()
    _, l = model(idx, targets)
    losses.append(l.item())
    l.backward()
    opt.step()
golden = {
    "vocab": V, "block": T, "width": D, "heads": H, "layers": L,
    "lr": LR, "betas": BETAS, "weight_decay": WD, "steps": STEPS,
    "ids": idx.tolist(), "targets": targets.tolist(),
    "logits": fmt(logits), "loss": loss.item(), "step_losses": losses,
    "shapes": {n: list(p.shape) for n, p in params.items()},
    "grads": grads,
    "after": {n: fmt(p) for n, p in params.items()},
}
path = pathlib.Path(__file__).with_name("gpt.json")
path.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
print(f"wrote {path}: loss {loss.item():.6f}, step losses {losses}")
