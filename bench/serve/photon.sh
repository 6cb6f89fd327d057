#!/usr/bin/env bash
# Prints the path of an MNIST CNN photon for the serving benchmarks, training it first if missing:
# examples/mnist-cnn.toml (same layers) for 1 epoch on LIMIT (default 6000) training images. The
# accuracy does not matter for throughput; scripts/serve-e2e.sh checks the labels.
# Also builds target/release/lepton (SKIP_BUILD=1: use the binary as it is). Override with PHOTON=path.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p lepton-cli >&2
if [[ -n ${PHOTON:-} ]]; then
    echo "$PHOTON"
    exit 0
fi
out=runs/serve-bench
if [[ ! -f $out/mnist.photon ]]; then
    mkdir -p "$out"
    sed -e "s|^path = \"../data/mnist\"|path = \"$PWD/data/mnist\"|" \
        -e "s|^validation-split = .*|&\nlimit = ${LIMIT:-6000}|" examples/mnist-cnn.toml >"$out/spec.toml"
    rm -rf "$out/run"
    target/release/lepton train "$out/spec.toml" --out "$out/run" --epochs 1 --quiet >&2
    target/release/lepton export "$out/run" -o "$out/mnist.photon" --quiet >&2
fi
echo "$PWD/$out/mnist.photon"
