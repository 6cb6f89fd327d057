"""PyTorch side of the character language-model benchmarks of issue 13 (`bench/seq/char_lm.sh`).

Trains on the same text, split and evaluation windows as `lepton train`:
- `gpt`: nanoGPT's `model.py` semantics (pre-norm blocks, GELU MLP, tied embeddings, `bias = False`
  as nanoGPT's train.py default (--bias to add them). By default the init and optimizer are
  lepton's (examples/shakespeare-gpt.toml): PyTorch's default layer init with the embedding tables
  N(0, 0.02), weight decay on every parameter, warm-up lr·(t+1)/W. `--nanogpt` gives nanoGPT's
  own: init
  N(0, 0.02) with c_proj scaled by 1/sqrt(2 n_layer)), AdamW (betas 0.9/0.99, weight decay 0.1 on
  matrices only), linear warm-up then cosine decay to lr/10, gradient clipping 1.0, no dropout.
- `lstm` / `gru`: embedding -> 2-layer nn.LSTM / nn.GRU -> linear, AdamW, cosine decay, clip 1.

Data: the text file, characters in code-point order as ids, the first 90 % for training (random
windows of block+1 characters, one generator seeded with --seed), the last 10 % for validation:
every non-overlapping window of block+1 characters (stride block) of the validation part, as
lepton's final report (or --eval-windows evenly spaced ones), their mean next-character
cross-entropy (nats). Prints one JSON line at the end.

    py=$(bench/pyenv.sh torch numpy)/bin/python
    $py bench/seq/char_lm_torch.py --text data/shakespeare/input.txt --model gpt --steps 2000
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--text", required=True)
p.add_argument("--model", choices=["gpt", "lstm", "gru"], default="gpt")
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--block", type=int, default=64)
p.add_argument("--batch", type=int, default=12)
p.add_argument("--layers", type=int, default=4)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--width", type=int, default=128)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--min-lr", type=float, default=None, help="default lr/10")
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--beta2", type=float, default=0.99)
p.add_argument("--weight-decay", type=float, default=0.1)
p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--eval-windows", type=int, default=0, help="0: every window (as lepton's final report)")
p.add_argument("--val-fraction", type=float, default=0.1)
p.add_argument("--seed", type=int, default=1337)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--bias", action="store_true", help="GPT: biases in linear and layer-norm layers")
p.add_argument("--nanogpt", action="store_true", help="nanoGPT's init, decay groups and warm-up")
p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)

text = open(args.text, encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n_val = round(len(data) * args.val_fraction)
train, val = data[: len(data) - n_val], data[len(data) - n_val :]
V, T = len(chars), args.block


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        b = args.bias
        self.ln_1, self.ln_2 = nn.LayerNorm(d, bias=b), nn.LayerNorm(d, bias=b)
        self.c_attn, self.attn_proj = nn.Linear(d, 3 * d, bias=b), nn.Linear(d, d, bias=b)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d, bias=b), nn.Linear(4 * d, d, bias=b)
        self.h = h

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        d = args.width
        self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList(Block(d, args.heads) for _ in range(args.layers))
        self.ln_f = nn.LayerNorm(d, bias=args.bias)
        self.lm_head = nn.Linear(d, V, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, prm in self.named_parameters():
            if not args.nanogpt:
                if name in ("wte.weight", "wpe.weight"):
                    nn.init.normal_(prm, 0.0, 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(prm)
            elif prm.dim() == 2:
                std = 0.02 / math.sqrt(2 * args.layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(prm, 0.0, std)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.ln_f(x))


class Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        d = args.width
        self.emb = nn.Embedding(V, d)
        self.rnn = cell(d, d, num_layers=args.layers, batch_first=True)
        self.head = nn.Linear(d, V)

    def forward(self, idx):
        y, _ = self.rnn(self.emb(idx))
        return self.head(y)


model = Gpt() if args.model == "gpt" else Recurrent(nn.LSTM if args.model == "lstm" else nn.GRU)
decay = [q for q in model.parameters() if q.dim() >= 2 or not args.nanogpt]
no_decay = [q for q in model.parameters() if q.dim() < 2 and args.nanogpt]
opt = torch.optim.AdamW(
    [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
    lr=args.lr,
    betas=(0.9, args.beta2),
)
min_lr = args.min_lr if args.min_lr is not None else args.lr / 10


def lr_at(step):
    if step < args.warmup:
        return args.lr * (step + 1) / (args.warmup + (1 if args.nanogpt else 0))
    ratio = (step - args.warmup) / max(1, args.steps - args.warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(ratio, 1.0))) * (args.lr - min_lr)


def batch(gen):
    ix = torch.randint(len(train) - T - 1, (args.batch,), generator=gen)
    x = torch.stack([train[i : i + T] for i in ix])
    y = torch.stack([train[i + 1 : i + T + 1] for i in ix])
    return x, y


@torch.no_grad()
def val_loss():
    model.eval()
    n = (len(val) - 1) // T  # non-overlapping windows of T+1 tokens, stride T (lepton's window_starts)
    m = args.eval_windows
    starts = [i * T for i in range(n)] if m == 0 or n <= m else [(k * n // m) * T for k in range(m)]
    total = 0.0
    for s in range(0, len(starts), 64):
        ix = starts[s : s + 64]
        x = torch.stack([val[i : i + T] for i in ix])
        y = torch.stack([val[i + 1 : i + T + 1] for i in ix])
        total += F.cross_entropy(model(x).view(-1, V), y.view(-1), reduction="sum").item()
    model.train()
    return total / (len(starts) * T)


gen = torch.Generator().manual_seed(args.seed)
start = time.perf_counter()
steps = 0
for step in range(args.steps):
    for g in opt.param_groups:
        g["lr"] = lr_at(step)
    x, y = batch(gen)
    loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
    opt.step()
    steps += 1
    if args.time_limit and time.perf_counter() - start > args.time_limit:
        break
train_s = time.perf_counter() - start
vl = val_loss()
print(json.dumps({
    "runtime": "pytorch", "model": args.model, "steps": steps, "train_seconds": round(train_s, 2),
    "tokens_per_second": round(steps * args.batch * T / train_s),
    "val_loss": round(vl, 4), "bits_per_char": round(vl / math.log(2), 4), "vocab": V,
    "parameters": sum(q.numel() for q in model.parameters()), "threads": torch.get_num_threads(),
}))
