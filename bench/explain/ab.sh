#!/usr/bin/env bash
# Issue 17: our integrated gradients and saliency through the generic candle-autograd path
# (`autograd`), through the piecewise net (lepton-nn's `PiecewiseNet`) compiled on every call
# (`per-call`, the model itself as the scorer) and compiled once and kept (`kept`, an
# `Explainer`, as a loaded model holds it), in one process, alternating, on a trained MNIST CNN
# run directory (the quickstart run of examples/mnist-cnn.toml). Prints median and minimum wall
# ms per image, CPU ms per image (all threads) and the ratios to `kept`.
#
#   bench/explain/ab.sh RUN_DIR [IMAGES] [REPS] [THREADS]
#   PATHS=per-call,kept METHODS=saliency bench/explain/ab.sh RUN_DIR 200 9   # a subset
#
# CPU-heavy: it takes /tmp/lepton-cpu.lock itself for the timed part (~1 minute).
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: bench/explain/ab.sh RUN_DIR [IMAGES] [REPS] [THREADS]}
nice -n 5 cargo build -q --release -p lepton-explain --example explain_ab
bin=${CARGO_TARGET_DIR:-target}/release/examples/explain_ab
# The process settings `lepton explain` and `captum.sh` give our side.
flock /tmp/lepton-cpu.lock env CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=${4:-2} \
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647 \
    "$bin" "$run" "${2:-5}" "${3:-9}"
