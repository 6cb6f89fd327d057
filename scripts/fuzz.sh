#!/usr/bin/env bash
# Fuzzes the data parsers (MNIST IDX, CSV) and the spec TOML (parse, validate, shape inference)
# with cargo-fuzz / libFuzzer for SECONDS each (default 180), with a 2 GiB RSS limit and a 1 GiB
# single-allocation limit (an allocation above it is reported as a crash). Installs cargo-fuzz from crates.io when missing; runs on the stable toolchain through
# RUSTC_BOOTSTRAP (cargo-fuzz needs nightly-only sanitizer flags). Seeds the corpora with real
# files: the first records of the embedded MNIST test set and the tabular CSVs.
#
#   scripts/fuzz.sh            # both targets, 180 s each
#   SECONDS_EACH=600 scripts/fuzz.sh idx
#   SECONDS_EACH=600 scripts/fuzz.sh spec
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
secs=${SECONDS_EACH:-180}
targets=("$@")
((${#targets[@]})) || targets=(idx csv spec)

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
    spec)
        # Every example spec, plus the crafted huge-size cases of issue 12.
        for f in examples/*.toml; do cp "$f" "$dir/"; done
        printf '[data]\nformat = "mnist"\npath = "x"\n[model]\n[[model.layers]]\ntype = "flatten"\n[[model.layers]]\ntype = "linear"\nout-features = 1000000000000\n' > "$dir/huge-linear.toml"
        printf '[data]\nformat = "csv"\npath = "x.csv"\n[model]\ninput = [3, 4096, 4096]\n[[model.layers]]\ntype = "conv2d"\nout-channels = 4096\nkernel = 3\n[train]\nbatch-size = 1048576\n' > "$dir/huge-conv.toml"
        ;;
    esac
}

for t in "${targets[@]}"; do
    seed_corpus "$t"
    echo "fuzz: $t for ${secs}s"
    cargo fuzz run -O "$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024
done
