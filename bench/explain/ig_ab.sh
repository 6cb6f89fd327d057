#!/usr/bin/env bash
# Issue 17: integrated gradients of two builds of `captum_bench` (e.g. the previous commit's and
# this one's), alternating old/new, same process settings as `captum.sh` gives our side; prints
# each run's ms per image and the medians and their ratio (old / new).
#
#   bench/explain/ig_ab.sh OLD_BIN NEW_BIN RUN_DIR [IMAGES] [ROUNDS] [METHOD]
#
# Build a binary with `cargo build --release -p lepton-explain --example captum_bench` and copy
# `$CARGO_TARGET_DIR/release/examples/captum_bench` away before building the other side.
# METHOD: ig50 (default), ig256 or saliency (give saliency a few hundred IMAGES: 40 take ~20 ms).
# THREADS (default 2): the rayon threads of both sides. CPU-heavy: takes /tmp/lepton-cpu.lock itself.
set -euo pipefail
old=${1:?usage: ig_ab.sh OLD_BIN NEW_BIN RUN_DIR [IMAGES] [ROUNDS] [METHOD]}
new=${2:?}
run=${3:?}
images=${4:-40}
rounds=${5:-7}
method=${6:-ig50}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
settings=(CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=${THREADS:-2} METHODS=$method
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647)
one() { env "${settings[@]}" "$1" "$run" "$out/o.json" "$images" 64 2>&1 | sed -n 's/.*: \([0-9.]*\) ms per image/\1/p'; }
flock /tmp/lepton-cpu.lock bash -c "$(declare -f one); $(declare -p settings run out images)
    for r in \$(seq $rounds); do echo \"old \$(one $old)\"; echo \"new \$(one $new)\"; done" | tee "$out/t"
python3 - "$out/t" "$method" <<'PY'
import statistics, sys
t = {"old": [], "new": []}
for line in open(sys.argv[1]):
    k, v = line.split()
    t[k].append(float(v))
o, n = statistics.median(t["old"]), statistics.median(t["new"])
print(f"{sys.argv[2]}: old median {o:.2f} ms/image (min {min(t['old']):.2f}), new median {n:.2f} (min {min(t['new']):.2f}): {o / n:.2f}x")
PY
