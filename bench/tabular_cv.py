#!/usr/bin/env python3
"""Issue 2, acceptance 2: 5-fold cross-validation of Lepton side by side with scikit-learn on the
SAME folds (Lepton writes its fold assignment to folds.json).

usage: bench/tabular_cv.py [--lepton target/release/lepton] [--folds 5]
Needs scikit-learn and numpy, e.g. in a venv outside the repo:
    python3 -m venv ~/.cache/lepton-bench/venv && ~/.cache/lepton-bench/venv/bin/pip install scikit-learn numpy
    cargo build --release -p lepton-cli && ~/.cache/lepton-bench/venv/bin/python bench/tabular_cv.py
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [  # spec, csv, label column, task
    ("examples/iris-mlp.toml", "data/tabular/iris.csv", "species", "classification"),
    ("examples/wine-mlp.toml", "data/tabular/wine.csv", "cultivar", "classification"),
    ("examples/breast-cancer-mlp.toml", "data/tabular/breast_cancer.csv", "diagnosis", "classification"),
    ("examples/diabetes-mlp.toml", "data/tabular/diabetes.csv", "progression", "regression"),
]


def load(path, label):
    with open(os.path.join(ROOT, path)) as f:
        rows = list(csv.DictReader(f))
    cols = [c for c in rows[0] if c != label]
    x = np.array([[float(r[c]) for c in cols] for r in rows])
    y = [r[label] for r in rows]
    return x, y


def sklearn_cv(x, y, folds, task):
    n = len(y)
    results = {}
    if task == "classification":
        models = {
            "MLPClassifier": lambda: make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=2000, random_state=0)),
            "LogisticRegression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        }
        y = np.array(y)
        score = accuracy_score
    else:
        models = {
            "MLPRegressor": lambda: make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(64,), max_iter=5000, random_state=0)),
            "LinearRegression": lambda: make_pipeline(StandardScaler(), LinearRegression()),
        }
        y = np.array([float(v) for v in y])
        score = r2_score
    for name, make in models.items():
        scores = []
        for held in folds:
            mask = np.zeros(n, bool)
            mask[held] = True
            m = make().fit(x[~mask], y[~mask])
            scores.append(score(y[mask], m.predict(x[mask])))
        results[name] = (float(np.mean(scores)), float(np.std(scores, ddof=1)))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lepton", default=os.path.join(ROOT, "target/release/lepton"))
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    print(f"{'data set':<16} {'metric':<8} {'lepton (mean ± std)':<22} {'sklearn model':<20} {'sklearn (mean ± std)':<22} {'diff':>7}")
    worst = 0.0
    for spec, path, label, task in CASES:
        with tempfile.TemporaryDirectory() as out:
            t = time.time()
            subprocess.run([args.lepton, "--quiet", "cv", spec, "--folds", str(args.folds), "--out", out], cwd=ROOT, check=True)
            secs = time.time() - t
            folds = json.load(open(os.path.join(out, "folds.json")))
            summary = json.load(open(os.path.join(out, "cv.json")))
        metric = "accuracy" if task == "classification" else "r2"
        ours = summary["mean"][metric], summary["std"][metric]
        x, y = load(path, label)
        ref = sklearn_cv(x, y, folds, task)
        best = max(ref.items(), key=lambda kv: kv[1][0])
        for name, (m, s) in ref.items():
            diff = ours[0] - m
            print(f"{os.path.basename(path):<16} {metric:<8} {ours[0]:.4f} ± {ours[1]:.4f}      {name:<20} {m:.4f} ± {s:.4f}      {diff:+.4f}")
        gap = best[1][0] - ours[0]
        worst = max(worst, gap / (1.0 if task == "classification" else 1.0))
        print(f"{'':<16} lepton cv took {secs:.1f}s; gap to the best sklearn model: {gap:+.4f}")
    print(f"largest gap below the best scikit-learn model: {worst:+.4f}")


if __name__ == "__main__":
    sys.exit(main())
