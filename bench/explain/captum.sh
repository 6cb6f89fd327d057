#!/usr/bin/env bash
# Issue 17, acceptance 2: our attributions against captum's on the same trained MNIST CNN weights,
# same inputs, same thread count: agreement (max |ours − captum| / max |captum|, target 1e-3 for
# integrated gradients) and time per image (target: ours >= 3x faster).
#
#   bench/explain/captum.sh RUN_DIR [IMAGES] [THREADS]
#   METHODS=ig50,ig256,saliency IG_BATCH=64 bench/explain/captum.sh RUN_DIR   # a subset; our IG batch
#
# RUN_DIR is an examples/mnist-cnn.toml run (spec.toml, best.safetensors, preprocessor.json), e.g.
# the quickstart run. Exits non-zero when integrated gradients miss the 1e-3 agreement on any image
# (captum_ref.py prints the worst image's index). CPU-heavy: run it under `flock /tmp/lepton-cpu.lock` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: bench/explain/captum.sh RUN_DIR [IMAGES] [THREADS]}
images=${2:-20}
threads=${3:-2}
py=$(bench/pyenv.sh torch numpy captum)/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
nice -n 5 cargo build -q --release -p lepton-explain --example captum_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/captum_bench
# Our side runs with the process settings `lepton explain` gives itself (lepton-cli/src/tuning.rs:
# candle's element-wise pool off, glibc keeping freed blocks instead of returning them to the kernel).
CANDLE_NUM_THREADS=1 GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647 \
    RAYON_NUM_THREADS=$threads "$bin" "$run" "$out/ours.json" "$images" ${IG_BATCH:-64}
OMP_NUM_THREADS=$threads "$py" bench/explain/captum_ref.py "$run" "$out/ours.json" --threads "$threads" \
    --methods "${METHODS:-ig50,ig256,saliency,occlusion4x4}" ${LEPTON_BENCH_JSON:+--json "$LEPTON_BENCH_JSON"}
