"""Golden values for lepton-train's optimizers and LR schedules, from PyTorch.

Run: ~/.cache/lepton-bench/venv/bin/python bench/parity/make_optim_golden.py
Writes bench/parity/optim_golden.json (committed), read by `cargo test -p lepton-train`.

Optimizers: a parameter p (6 values) with loss sum(c * p^2 / 2 + d * p), so grad = c * p + d;
5 steps from fixed p0, recording p after each step.
Schedules: the learning rate before each of 20 steps.
"""
import json
import math
import pathlib

import torch

torch.set_default_dtype(torch.float32)
P0 = [0.5, -1.25, 2.0, 0.0, -0.3, 1.1]
C = [1.0, 0.5, 2.0, 0.1, 3.0, 0.7]
D = [0.2, -0.1, 0.0, 0.3, -0.5, 0.05]
STEPS = 5


def run(make_opt, lrs=None):
    p = torch.tensor(P0, requires_grad=True)
    c, d = torch.tensor(C), torch.tensor(D)
    opt = make_opt([p])
    out = []
    for i in range(STEPS):
        if lrs is not None:
            for g in opt.param_groups:
                g["lr"] = lrs[i]
        opt.zero_grad()
        loss = (c * p * p / 2 + d * p).sum()
        loss.backward()
        opt.step()
        out.append(p.detach().tolist())
    return out


optim = {
    "sgd": dict(kind="sgd", lr=0.1, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                steps=run(lambda ps: torch.optim.SGD(ps, lr=0.1))),
    "sgd-momentum": dict(kind="sgd", lr=0.05, momentum=0.9, dampening=0.1, nesterov=False, weight_decay=0.01,
                         steps=run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01))),
    "sgd-nesterov": dict(kind="sgd", lr=0.05, momentum=0.8, dampening=0.0, nesterov=True, weight_decay=0.001,
                         steps=run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.001))),
    "adam": dict(kind="adam", lr=0.01, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0,
                 steps=run(lambda ps: torch.optim.Adam(ps, lr=0.01))),
    "adam-l2": dict(kind="adam", lr=0.02, betas=[0.8, 0.99], eps=1e-6, weight_decay=0.1,
                    steps=run(lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1))),
    "adamw": dict(kind="adamw", lr=0.02, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.1,
                  steps=run(lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=0.1))),
}


def lrs(make_sched, n=20, base=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = make_sched(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


S = torch.optim.lr_scheduler
schedules = {
    # StepLR stepped once per epoch of 4 steps, step_size 2 epochs = every 8 steps.
    "step": dict(spec=dict(kind="step", step_size=2, gamma=0.5), steps_per_epoch=4,
                 lrs=lrs(lambda o: S.LambdaLR(o, lambda t: 0.5 ** (t // 8)))),
    "cosine": dict(spec=dict(kind="cosine", min_lr=0.001), steps_per_epoch=4,
                   lrs=lrs(lambda o: S.CosineAnnealingLR(o, T_max=20, eta_min=0.001))),
    "one-cycle": dict(spec=dict(kind="one-cycle", max_lr=0.5, pct_start=0.25), steps_per_epoch=4,
                      lrs=lrs(lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=20, pct_start=0.25, cycle_momentum=False))),
    # Linear warm-up (start factor 1/W, W=5 steps) chained with cosine over the remaining 15 steps.
    "cosine-warmup": dict(spec=dict(kind="cosine", min_lr=0.0, warmup_steps=5), steps_per_epoch=4,
                          lrs=lrs(lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=4),
                                                               S.CosineAnnealingLR(o, T_max=15)], milestones=[5]))),
}

out = dict(torch=torch.__version__, p0=P0, c=C, d=D, optimizers=optim, schedules=schedules)
path = pathlib.Path(__file__).with_name("optim_golden.json")
path.write_text(json.dumps(out, indent=1) + "\n")
print("wrote", path)
