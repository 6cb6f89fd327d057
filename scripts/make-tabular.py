#!/usr/bin/env python3
"""Turns scikit-learn's bundled data files into plain CSVs with a header row and a named label column.

usage: make-tabular.py SKLEARN_DATA_DIR OUT_DIR   (stdlib only; run by scripts/fetch-assets.sh)
"""
import csv
import gzip
import os
import sys

src, out = sys.argv[1], sys.argv[2]

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WINE = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
        "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
        "od280_od315_of_diluted_wines", "proline"]
CANCER = [f"{stat}_{name}" for stat in ("mean", "se", "worst") for name in (
    "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
    "concave_points", "symmetry", "fractal_dimension")]
DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def sklearn_csv(name, features, label, names=None):
    """sklearn's first line is `n_samples,n_features,class names...`; then rows of features + int target."""
    with open(os.path.join(src, name)) as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    classes = names or head[2:]
    assert len(body) == int(head[0]), f"{name}: {len(body)} rows, header says {head[0]}"
    return [features + [label]] + [r[:-1] + [classes[int(r[-1])]] for r in body]


def write(name, rows):
    with open(os.path.join(out, name), "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    print(f"make-tabular: {name}: {len(rows) - 1} rows")


write("iris.csv", sklearn_csv("iris.csv", IRIS, "species"))
write("wine.csv", sklearn_csv("wine_data.csv", WINE, "cultivar", ["class_0", "class_1", "class_2"]))
write("breast_cancer.csv", sklearn_csv("breast_cancer.csv", CANCER, "diagnosis"))

with gzip.open(os.path.join(src, "digits.csv.gz"), "rt") as f:
    digits = [r for r in csv.reader(f) if r]
write("digits.csv", [[f"p{i}" for i in range(64)] + ["digit"]]
      + [[str(int(float(v))) for v in r[:64]] + [str(int(float(r[64])))] for r in digits])

with gzip.open(os.path.join(src, "diabetes_data_raw.csv.gz"), "rt") as f:
    x = [r.split() for r in f.read().splitlines() if r.strip()]
with gzip.open(os.path.join(src, "diabetes_target.csv.gz"), "rt") as f:
    y = [r.strip() for r in f.read().splitlines() if r.strip()]
assert len(x) == len(y) == 442
write("diabetes.csv", [DIABETES + ["progression"]] + [r + [t] for r, t in zip(x, y)])
