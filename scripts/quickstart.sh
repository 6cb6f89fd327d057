#!/usr/bin/env bash
# Quickstart: build Lepton, train the MNIST CNN on the embedded data, evaluate it, serve it and
# classify real test-set digits with curl: the whole loop.
#
# By default training is one epoch of the spec's schedule (about 20 s of training on 2 idle
# cores, ~98.9 % test accuracy), so the first run shows everything in about two minutes after the
# build. FULL=1 trains the spec's full schedule (15 epochs, 99.5 %, about 26 minutes on 2 cores);
# EPOCHS=N picks any other length. PORT (default 8080) sets where the server listens.
#
#   scripts/quickstart.sh           # the short run
#   FULL=1 scripts/quickstart.sh    # the full-accuracy run
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p lepton-cli
lepton=${CARGO_TARGET_DIR:-target}/release/lepton
run=runs/quickstart

epochs_arg=()
if [[ -n ${EPOCHS:-} ]]; then
    epochs_arg=(--epochs "$EPOCHS")
elif [[ ${FULL:-0} != 1 ]]; then
    epochs_arg=(--epochs 1)
fi
rm -rf "$run"
start=$SECONDS
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
echo "quickstart: train, evaluate, serve and call in $((SECONDS - start)) s"
[[ ${FULL:-0} == 1 || -n ${EPOCHS:-} ]] || echo "quickstart: FULL=1 scripts/quickstart.sh trains the full schedule (99.5 %)"
