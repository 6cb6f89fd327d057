#!/usr/bin/env bash
# Issue 17: our integrated gradients and saliency through the piecewise net (lepton-nn's
# `PiecewiseNet`) against the generic candle-autograd path every model took before, in one
# process, alternating, on a trained MNIST CNN run directory (the quickstart run of
# examples/mnist-cnn.toml). Prints median and minimum wall ms per image, CPU ms per image (both
# threads) and the ratios.
#
#   bench/explain/ab.sh RUN_DIR [IMAGES] [REPS] [THREADS]
#
# CPU-heavy: it takes /tmp/lepton-cpu.lock itself for the timed part (~1 minute).
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: bench/explain/ab.sh RUN_DIR [IMAGES] [REPS] [THREADS]}
nice -n 5 cargo build -q --release -p lepton-explain --example explain_ab
bin=${CARGO_TARGET_DIR:-target}/release/examples/explain_ab
flock /tmp/lepton-cpu.lock env RAYON_NUM_THREADS=${4:-2} "$bin" "$run" "${2:-5}" "${3:-9}"
