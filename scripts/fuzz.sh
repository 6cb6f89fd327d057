#!/usr/bin/env bash
# Fuzzes the data parsers (MNIST IDX, CSV) and the photon open path with cargo-fuzz / libFuzzer
# for SECONDS each (default 180), with libFuzzer's RSS and per-allocation limits (RSS_MB, default
# 2048; MALLOC_MB, default 1024: an allocation above it is reported as a crash). Installs cargo-fuzz from crates.io when missing; runs on the stable toolchain through
# RUSTC_BOOTSTRAP (cargo-fuzz needs nightly-only sanitizer flags). Seeds the corpora with real
# files: the first records of the embedded MNIST test set, the tabular CSVs, and photons trained
# on iris and diabetes (2 epochs) plus a small CNN photon made here (photon seeds come as a whole
# file, mode `A`, and as header + weights for the re-signing mode; see fuzz_targets/photon.rs).
#
#   scripts/fuzz.sh            # both targets, 180 s each
#   SECONDS_EACH=600 scripts/fuzz.sh idx
#   SECONDS_EACH=600 RSS_MB=1024 MALLOC_MB=512 flock /tmp/lepton-cpu.lock scripts/fuzz.sh photon
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
secs=${SECONDS_EACH:-180}
targets=("$@")
((${#targets[@]})) || targets=(idx csv photon)
rss=${RSS_MB:-2048}
malloc=${MALLOC_MB:-1024}

seed_corpus() { # seed_corpus TARGET
    local dir=fuzz/corpus/$1
    mkdir -p "$dir"
    case $1 in
    idx)
        # Small valid IDX files cut from the real test set: header with a reduced count + records.
        python3 - "$dir" <<'PY'
import gzip, struct, sys, os
out = sys.argv[1]
imgs = gzip.open("data/mnist/t10k-images-idx3-ubyte.gz").read()
labs = gzip.open("data/mnist/t10k-labels-idx1-ubyte.gz").read()
open(os.path.join(out, "images-3"), "wb").write(struct.pack(">IIII", 0x803, 3, 28, 28) + imgs[16:16 + 3 * 784])
open(os.path.join(out, "labels-3"), "wb").write(struct.pack(">II", 0x801, 3) + labs[8:11])
PY
        ;;
    csv)
        for f in data/tabular/*.csv; do head -c 4096 "$f" > "$dir/$(basename "$f")"; done
        ;;
    photon)
        local tmp
        tmp=$(mktemp -d)
        # LEPTON=path/to/lepton uses an existing binary instead of building one.
        local lepton=(cargo run -q -p lepton-cli --)
        [[ -n ${LEPTON:-} ]] && lepton=("$LEPTON")
        for spec in iris-mlp diabetes-mlp; do
            "${lepton[@]}" --quiet train "examples/$spec.toml" --epochs 2 --out "$tmp/$spec"
        done
        python3 - "$dir" "$tmp"/*/model.photon <<'PY'
import hashlib, json, os, struct, sys
out, photons = sys.argv[1], sys.argv[2:]

def split(raw):
    n = struct.unpack("<Q", raw[12:20])[0]
    start = 52 + n + (64 - (52 + n) % 64) % 64
    return json.loads(raw[52:52 + n]), raw[start:]

def safetensors(tensors):  # name -> (shape, values)
    meta, data = {}, b""
    for name, (shape, values) in sorted(tensors.items()):
        meta[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * len(values)]}
        data += struct.pack(f"<{len(values)}f", *values)
    head = json.dumps(meta).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    return struct.pack("<Q", len(head)) + head + data

def whole(manifest, weights):
    manifest = dict(manifest, weights_len=len(weights), weights_sha256=hashlib.sha256(weights).hexdigest())
    header = json.dumps(manifest, separators=(",", ":")).encode()
    pre = b"LEPTONPH" + struct.pack("<IQ", 1, len(header)) + hashlib.sha256(header).digest() + header
    return pre + b"\0" * ((64 - len(pre) % 64) % 64) + weights

def seed(name, manifest, weights):
    header = json.dumps(manifest, separators=(",", ":")).encode()
    open(os.path.join(out, name + "-resign"), "wb").write(b"R" + struct.pack("<I", len(header)) + header + weights)
    open(os.path.join(out, name + "-file"), "wb").write(b"A" + whole(manifest, weights))

for path in photons:
    m, w = split(open(path, "rb").read())
    seed(m["name"], m, w)
    cnn = m
# A small CNN on 1x6x6 images: conv, batch norm, pool, residual, flatten, linear.
cnn = dict(cnn, name="cnn", input_shape=[1, 6, 6],
           preprocessor={"kind": "image", "channels": 1, "height": 6, "width": 6, "mean": [0.5], "std": [0.25], "class_names": ["a", "b", "c"]},
           loss={"kind": "cross-entropy", "label-smoothing": 0.0},
           model={"layers": [{"type": "conv2d", "out-channels": 2, "kernel": 3, "padding": 1},
                             {"type": "batch-norm2d"}, {"type": "relu"}, {"type": "max-pool2d", "kernel": 2},
                             {"type": "residual", "layers": [{"type": "conv2d", "out-channels": 2, "kernel": 1}]},
                             {"type": "flatten"}, {"type": "linear", "out-features": 3}]})
t = {"layers.0.weight": ([2, 1, 3, 3], [0.1] * 18), "layers.0.bias": ([2], [0.0] * 2),
     "layers.1.weight": ([2], [1.0] * 2), "layers.1.bias": ([2], [0.0] * 2),
     "layers.1.running_mean": ([2], [0.0] * 2), "layers.1.running_var": ([2], [1.0] * 2),
     "layers.4.layers.0.weight": ([2, 2, 1, 1], [0.5] * 4), "layers.4.layers.0.bias": ([2], [0.0] * 2),
     "layers.6.weight": ([3, 18], [0.01] * 54), "layers.6.bias": ([3], [0.0] * 3)}
seed("cnn", cnn, safetensors(t))
PY
        rm -rf "$tmp"
        ;;
    esac
}

for t in "${targets[@]}"; do
    seed_corpus "$t"
    echo "fuzz: $t for ${secs}s"
    dict=()
    [[ -f fuzz/$t.dict ]] && dict=(-dict="fuzz/$t.dict")
    cargo fuzz run -O "$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb="$rss" \
        -malloc_limit_mb="$malloc" "${dict[@]}"
done
