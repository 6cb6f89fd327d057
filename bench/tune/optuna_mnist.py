"""Optuna (TPE sampler + SuccessiveHalvingPruner, min resource 1 epoch, reduction factor 3) on the
same MNIST MLP, space and budget as bench/tune/mnist-mlp.toml + space.toml: 3,000 stratified
training images, 20 % for validation, 27 epochs, SGD with momentum, batch 64.
Prints one JSON line: best validation accuracy, epochs trained, wall time."""
import gzip, json, sys, time

import numpy as np
import optuna
import torch

trials, jobs = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
root = sys.argv[3]


def idx(name):
    with gzip.open(f"{root}/{name}", "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


x, y = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
rng = np.random.default_rng(3)
keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:300] for c in range(10)])
keep = rng.permutation(keep)
x = torch.tensor((x[keep].reshape(-1, 784) / 255.0 - 0.1307) / 0.3081, dtype=torch.float32)
y = torch.tensor(y[keep], dtype=torch.long)
n_val = 600
xv, yv, xt, yt = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
epochs_run = 0


def objective(trial):
    global epochs_run
    lr = trial.suggest_float("lr", 1e-4, 0.5, log=True)
    mom = trial.suggest_float("momentum", 0.0, 0.95)
    width = trial.suggest_int("width", 16, 256)
    torch.manual_seed(trial.number)
    model = torch.nn.Sequential(torch.nn.Linear(784, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom)
    g = torch.Generator().manual_seed(trial.number)
    best = 0.0
    for epoch in range(27):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
        epochs_run += 1
        model.eval()
        with torch.no_grad():
            acc = (model(xv).argmax(1) == yv).float().mean().item()
        if not np.isfinite(loss.item()):
            acc = 0.0
        best = max(best, acc)
        trial.report(acc, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return best


optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(
    direction="maximize",
    sampler=optuna.samplers.TPESampler(seed=0),
    pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
)
t0 = time.time()
study.optimize(objective, n_trials=trials, n_jobs=jobs)
print(json.dumps({"best": study.best_value, "epochs_run": epochs_run, "epochs_full": trials * 27,
                  "seconds": time.time() - t0}))
