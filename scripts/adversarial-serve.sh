#!/usr/bin/env bash
# Issue 12 acceptance 1-3 (the server side of the adversarial suite), on a real `lepton serve`
# on 127.0.0.1 (bench/serve/adversarial.py does the measuring; standard-library Python only):
#   1. 150 token-less connections stalling before 8 MiB: 401 without their body, RSS < 200 MB;
#      a 2e9 Content-Length: 413 in < 100 ms.
#   2. 2,000 idle + 500 slowloris connections: /healthz p99 < 50 ms, the idle ones closed by the
#      timeout, SIGTERM exits within the drain deadline + 1 s.
#   3. two 8 MiB prompts + 32 large (4096x4096 16-bit RGB) PNGs at once: /healthz p99 < 100 ms,
#      RSS growth < 150 MB, each bad request 4xx within 1 s.
# Needs the SmolLM2 GGUF (scripts/fetch-assets.sh models) and trains a small MNIST photon once
# (bench/serve/photon.sh). Run it under the CPU lock on a shared machine:
#   flock /tmp/lepton-cpu.lock scripts/adversarial-serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p lepton-cli
# 2,500 client sockets plus the server's 2,500: raise the open-files limit (soft up to hard).
want=16384
hard=$(ulimit -Hn)
[[ $hard == unlimited || $hard -ge $want ]] || want=$hard
ulimit -n "$want"
echo "ulimit -n $(ulimit -n)"
photon=$(SKIP_BUILD=1 LIMIT=${LIMIT:-2000} bench/serve/photon.sh)
models=$(scripts/fetch-assets.sh models)
gguf=$models/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f $gguf ]] || { echo "missing $gguf: run scripts/fetch-assets.sh models" >&2; exit 1; }
work=$(mktemp -d /tmp/lepton-adversarial.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The photon is served as "mnist" (the name comes from the file name).
ln -s "$photon" "$work/mnist.photon"
python3 bench/serve/adversarial.py target/release/lepton "$work/mnist.photon" "$gguf" "$work"
