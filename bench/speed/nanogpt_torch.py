"""PyTorch side of the nanoGPT speed bench (issue 13, acceptance 1): nanoGPT's model.py
(pre-norm blocks, GELU MLP, tied wte/lm_head, bias = True, no dropout), its CPU recipe for
shakespeare_char (4 layers, 4 heads, 128 wide, block 64, batch 12), AdamW (betas 0.9/0.99,
weight decay 0.1 on 2-D tensors only, lr 1e-3 cosine decay to 1e-4), on synthetic char data
(65 symbols, seeded), 2 threads. Prints training tokens/s over STEPS steps after WARMUP.
The lepton side is crates/lepton-nn/examples/nanogpt_speed.rs; bench/speed/nanogpt.sh runs both.

    py=$(bench/pyenv.sh torch numpy)/bin/python; $py bench/speed/nanogpt_torch.py [STEPS] [WARMUP]
"""
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
WARMUP = int(sys.argv[2]) if len(sys.argv) > 2 else 5
V, T, D, H, L, B = 65, 64, 128, 4, 4, 12
LR, MIN_LR, BETAS, WD = 1e-3, 1e-4, (0.9, 0.99), 0.1
torch.set_num_threads(2)
torch.manual_seed(1337)


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
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D)
        self.attn = CausalSelfAttention()
        self.ln_2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, D)
        self.wpe = nn.Embedding(T, D)
        self.h = nn.ModuleList([Block() for _ in range(L)])
        self.ln_f = nn.LayerNorm(D)
        self.lm_head = nn.Linear(D, V, bias=False)
        self.wte.weight = self.lm_head.weight
        self.apply(self._init)

    def _init(self, m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, V), targets.view(-1))


model = GPT()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": WD},
                         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                        lr=LR, betas=BETAS)
data = torch.from_numpy(np.random.default_rng(7).integers(0, V, 200_000).astype(np.int64))
gen = np.random.default_rng(8)
total = WARMUP + STEPS
start = None
for step in range(total):
    if step == WARMUP:
        start = time.perf_counter()
    lr = MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * step / total))
    for g in opt.param_groups:
        g["lr"] = lr
    ix = gen.integers(0, len(data) - T - 1, B)
    x = torch.stack([data[i:i + T] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + T] for i in ix])
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
elapsed = time.perf_counter() - start
print(f"pytorch {torch.__version__}: {STEPS} steps in {elapsed:.2f} s, "
      f"{STEPS * B * T / elapsed:.0f} tokens/s, loss {loss.item():.3f} "
      f"({torch.get_num_threads()} threads)")
