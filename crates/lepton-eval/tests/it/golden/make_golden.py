#!/usr/bin/env python3
"""Writes sklearn.json: random labels/probabilities and scikit-learn's metrics on them, the
reference for lepton-eval's tests. Run with scikit-learn installed:
    ~/.cache/lepton-bench/venv/bin/python crates/lepton-eval/tests/it/golden/make_golden.py
"""
import json
import os

import numpy as np
from sklearn import metrics

rng = np.random.default_rng(0)
cases = []
for n, k in [(50, 3), (200, 2), (120, 10)]:
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + np.eye(k)[y] * 1.5
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p = np.round(p, 2)  # ties in the scores, as real models have
    p = p / p.sum(1, keepdims=True)
    p = p.astype(np.float32)
    pred = p.argmax(1)
    prec, rec, f1, sup = metrics.precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
    case = {
        "k": k, "y": y.tolist(), "probs": p.ravel().tolist(),
        "accuracy": metrics.accuracy_score(y, pred),
        "precision": prec.tolist(), "recall": rec.tolist(), "f1": f1.tolist(), "support": sup.tolist(),
        "macro_f1": metrics.f1_score(y, pred, average="macro", zero_division=0),
        "weighted_f1": metrics.f1_score(y, pred, average="weighted", zero_division=0),
        "confusion": metrics.confusion_matrix(y, pred, labels=list(range(k))).tolist(),
        "log_loss": metrics.log_loss(y, p.astype(np.float64), labels=list(range(k))),
    }
    if k == 2:
        case["roc_auc"] = metrics.roc_auc_score(y, p[:, 1])
    if k > 5:
        case["top5"] = metrics.top_k_accuracy_score(y, p, k=5, labels=list(range(k)))
    cases.append(case)
yt = rng.normal(size=100) * 10
yp = yt + rng.normal(size=100) * 3
reg = {"y": yt.astype(np.float32).tolist(), "pred": yp.astype(np.float32).tolist()}
reg["r2"] = metrics.r2_score(np.array(reg["y"], np.float64), np.array(reg["pred"], np.float64))
reg["mae"] = metrics.mean_absolute_error(reg["y"], reg["pred"])
reg["mse"] = metrics.mean_squared_error(reg["y"], reg["pred"])
with open(os.path.join(os.path.dirname(__file__), "sklearn.json"), "w") as f:
    json.dump({"classification": cases, "regression": reg}, f)
