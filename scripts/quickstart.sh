#!/usr/bin/env bash
# Quickstart: build Lepton, train the MNIST CNN on the embedded data, evaluate it, serve it and
# classify a real test-set digit with curl. Set EPOCHS=N for a shorter run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p lepton-cli
lepton=target/release/lepton
run=runs/quickstart

epochs_arg=()
[[ -n ${EPOCHS:-} ]] && epochs_arg=(--epochs "$EPOCHS")
rm -rf "$run"
"$lepton" train examples/mnist-cnn.toml --out "$run" "${epochs_arg[@]}"
"$lepton" eval "$run/model.photon"
"$lepton" inspect "$run/model.photon"

port=${PORT:-8080}
"$lepton" serve "$run/model.photon" --listen "127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

for digit in examples/images/mnist-test-*.png; do
    echo "POST $digit"
    curl -fsS --data-binary "@$digit" -H 'content-type: image/png' \
        "http://127.0.0.1:$port/v1/models/model/predict"
    echo
done
