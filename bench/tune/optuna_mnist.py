"""Optuna (TPE sampler + SuccessiveHalvingPruner, min resource 1 epoch, reduction factor 3) on the
same MNIST MLP, space and budget as bench/tune/mnist-mlp.toml + space.toml, on exactly the samples
lepton trains and validates on: the spec's training and validation sets after its split and
preprocessing, written by `cargo run -p lepton-tune --example export_split` (2,400 training and
600 validation images of the stratified 3,000, normalised with the training split's mean and std).
27 epochs, SGD with momentum, batch 64; rungs at epochs 1, 3, 9 (as lepton's ASHA: none at the
last epoch). Prints one JSON line: the best validation accuracy over every reported epoch of every
trial (as lepton's best), the best completed trial's, epochs trained, wall time.
    optuna_mnist.py TRIALS JOBS SPLIT_DIR SEED"""
import json, sys, threading, time

import numpy as np
import optuna
import torch

trials, jobs, split, seed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.set_num_threads(1)
meta = json.load(open(f"{split}/split.json"))


def load(name):
    n = meta[name]["n"]
    x = np.fromfile(f"{split}/{name}-x.f32", dtype="<f4").reshape(n, -1)
    y = np.fromfile(f"{split}/{name}-y.u32", dtype="<u4").astype(np.int64)
    return torch.from_numpy(x.copy()), torch.from_numpy(y)


xt, yt = load("train")
xv, yv = load("validation")
EPOCHS = 27
lock = threading.Lock()
best_seen = [0.0]
epochs_run = 0


def objective(trial):
    global epochs_run
    lr = trial.suggest_float("lr", 1e-4, 0.5, log=True)
    mom = trial.suggest_float("momentum", 0.0, 0.95)
    width = trial.suggest_int("width", 16, 256)
    torch.manual_seed(trial.number)
    model = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom)
    g = torch.Generator().manual_seed(trial.number)
    best = 0.0
    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
        with lock:
            epochs_run += 1
        model.eval()
        with torch.no_grad():
            acc = (model(xv).argmax(1) == yv).float().mean().item()
        if not np.isfinite(loss.item()):
            acc = 0.0
        best = max(best, acc)
        with lock:
            best_seen[0] = max(best_seen[0], acc)
        trial.report(acc, epoch)
        if epoch < EPOCHS and trial.should_prune():
            raise optuna.TrialPruned()
    return best


optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(
    direction="maximize",
    sampler=optuna.samplers.TPESampler(seed=seed),
    pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
)
t0 = time.time()
study.optimize(objective, n_trials=trials, n_jobs=jobs)
print(json.dumps({"best": best_seen[0], "best_completed": study.best_value, "epochs_run": epochs_run,
                  "epochs_full": trials * EPOCHS,
                  "seconds": time.time() - t0}))
