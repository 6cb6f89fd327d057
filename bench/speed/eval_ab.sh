#!/usr/bin/env bash
# Issue 19: the eval-mode forward of a trained CNN on loaded weights (what `lepton serve` runs) in
# two builds of `crates/lepton-nn/examples/eval_forward.rs` (e.g. main's and this branch's),
# alternating old/new ROUNDS times under /tmp/lepton-cpu.lock; prints each run and, per batch
# size, the medians and their ratio (old time / new time).
#
#   bench/speed/eval_ab.sh OLD_BIN NEW_BIN RUN_DIR [ROUNDS]
#
# Build a side with `cargo build --release -p lepton-nn --example eval_forward` and copy
# `$CARGO_TARGET_DIR/release/examples/eval_forward` away before building the other side.
# RUN_DIR: a run of examples/mnist-cnn.toml (spec.toml, best.safetensors), e.g. runs/quickstart.
set -euo pipefail
old=${1:?usage: eval_ab.sh OLD_BIN NEW_BIN RUN_DIR [ROUNDS]}
new=${2:?}
run=${3:?}
rounds=${4:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
settings=(CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=${THREADS:-2}
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296)
for r in $(seq "$rounds"); do
    for side in old new; do
        bin=$old
        [ "$side" = new ] && bin=$new
        flock /tmp/lepton-cpu.lock env "${settings[@]}" "$bin" "$run" 700 | sed "s/^/$side /" | tee -a "$out"
    done
done
python3 - "$out" <<'PY'
import collections, statistics, sys
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, _, batch, _, _, us, *_ = line.replace(":", "").replace(",", "").split()
    t[(side, int(batch))].append(float(us))
for b in sorted({b for _, b in t}):
    o, n = statistics.median(t[("old", b)]), statistics.median(t[("new", b)])
    print(f"batch {b}: old median {o:.1f} us, new {n:.1f} us: {o / n:.2f}x")
PY
