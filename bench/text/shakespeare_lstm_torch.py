#!/usr/bin/env python3
"""PyTorch reference for examples/shakespeare-lstm.toml, with Lepton's data rules:

- text: data/shakespeare/input.txt (scripts/fetch-assets.sh shakespeare); characters sorted by code
  point are the ids; the last 10 % (rounded) validates, split by position;
- training: STEPS steps of 32 random windows of 65 characters (inputs 64, next-character targets);
- model: Embedding(80, 256) -> LSTM(256, 256, 2 layers, batch_first) -> Linear(256, 80);
- AdamW(lr 3e-3, weight decay 0.01), cosine from 3e-3 to 3e-4 over the steps, clip_grad_norm 1;
- validation: the same fixed windows as lepton_data::text::window_starts (stride 64, at most 200
  evenly spaced every 250 steps; every window at the end).

    py=$(bench/pyenv.sh torch numpy)/bin/python
    STEPS=1500 flock /tmp/lepton-cpu.lock $py bench/text/shakespeare_lstm_torch.py

Prints one Markdown table row (same columns as bench/text/shakespeare-lstm.sh). EMB_UNIFORM=1
initialises the embedding as lepton-nn's init_seeded does today (see bench/RESULTS.md).
"""
import math
import os
import statistics
import time

import torch
from torch import nn

STEPS = int(os.environ.get("STEPS", "1500"))
T, B, EVAL_EVERY, EVAL_WINDOWS = 64, 32, 250, 200
torch.manual_seed(1337)
torch.set_num_threads(int(os.environ.get("THREADS", os.cpu_count() or 1)))

here = os.path.dirname(os.path.abspath(__file__))
text = open(os.path.join(here, "../../data/shakespeare/input.txt"), encoding="utf-8").read()
chars = sorted(set(text))
index = {c: i for i, c in enumerate(chars)}
ids = torch.tensor([index[c] for c in text], dtype=torch.long)
n_val = round(len(ids) * 0.1)
train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]


def window_starts(n, max_windows):
    if n < T + 1:
        return []
    k = (n - 1) // T
    if k <= max_windows:
        return [i * T for i in range(k)]
    return [(j * k // max_windows) * T for j in range(max_windows)]


class CharLstm(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.emb = nn.Embedding(v, 256)
        self.lstm = nn.LSTM(256, 256, num_layers=2, batch_first=True)
        self.out = nn.Linear(256, v)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        return self.out(h)


model = CharLstm(len(chars))
if os.environ.get("EMB_UNIFORM"):
    # What lepton_nn::init_seeded does to an embedding today (its rank-2 rule for linear
    # weights: U(+-1/sqrt(embedding-dim))) instead of nn.Embedding's N(0, 1).
    nn.init.uniform_(model.emb.weight, -1 / 16, 1 / 16)
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
loss_fn = nn.CrossEntropyLoss()


def lr_at(step):
    x = min(step / max(STEPS, 1), 1.0)
    return 3e-4 + (3e-3 - 3e-4) * (1 + math.cos(math.pi * x)) / 2


@torch.no_grad()
def evaluate(max_windows, batch=200):
    model.eval()
    starts = window_starts(len(val), max_windows)
    total = 0.0
    for a in range(0, len(starts), batch):
        s = torch.tensor(starts[a : a + batch])
        w = torch.stack([val[i : i + T + 1] for i in s.tolist()])
        logits = model(w[:, :T])
        total += loss_fn(logits.reshape(-1, len(chars)), w[:, 1:].reshape(-1)).item() * len(s)
    model.train()
    return total / len(starts)


gen = torch.Generator().manual_seed(1337)
rates, window_tokens, window_start = [], 0, time.perf_counter()
start = time.perf_counter()
last_val = float("nan")
for step in range(STEPS):
    s = torch.randint(0, len(train) - T, (B,), generator=gen)
    w = torch.stack([train[i : i + T + 1] for i in s.tolist()])
    for g in opt.param_groups:
        g["lr"] = lr_at(step)
    logits = model(w[:, :T])
    loss = loss_fn(logits.reshape(-1, len(chars)), w[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    window_tokens += B * T
    if (step + 1) % 10 == 0:
        rates.append(window_tokens / (time.perf_counter() - window_start))
        window_tokens, window_start = 0, time.perf_counter()
    if (step + 1) % EVAL_EVERY == 0 or step + 1 == STEPS:
        last_val = evaluate(EVAL_WINDOWS)
        window_start = time.perf_counter()
final = evaluate(10**9)
wall = time.perf_counter() - start
print("| steps | wall s | train tokens/s (median of log windows) | last val loss (200 windows) "
      "| final val loss (all windows) | perplexity | bits/char |")
print("|---|---|---|---|---|---|---|")
print(f"| {STEPS} | {wall:.0f} | {statistics.median(rates):,.0f} | {last_val:.4f} | {final:.4f} "
      f"| {math.exp(final):.3f} | {final / math.log(2):.4f} |")
