#!/usr/bin/env bash
# Same-run A/B of the CNN training step: the lepton-train examples built from an older commit (A)
# against the working tree (B), alternating A B A B, medians of ROUNDS runs each. Workloads: the
# LeNet training step of `speed_bench` (bench/speed/lenet.toml, batch 64, images/s) and one
# training step of examples/mnist-cnn.toml (`step_timing`, batch 128, samples/s).
#
#   OLD=/path/to/old/examples bench/speed/ab_layers.sh     # ROUNDS=6 THREADS=2 STEPS=20
#
# OLD holds `speed_bench` and `step_timing` built from the base commit, for example:
#   git archive BASE | tar -x -C /tmp/old && (cd /tmp/old && cargo build --release -p lepton-train \
#     --example speed_bench --example step_timing) && cp target/release/examples/{speed_bench,step_timing} OLD
# Run it under the shared CPU lock: flock /tmp/lepton-cpu.lock bench/speed/ab_layers.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${OLD:?set OLD to the directory of the old speed_bench and step_timing}
rounds=${ROUNDS:-6}
threads=${THREADS:-2}
steps=${STEPS:-20}
cargo build --release -q -p lepton-train --example speed_bench --example step_timing
new=${CARGO_TARGET_DIR:-target}/release/examples
export RAYON_NUM_THREADS=$threads CANDLE_NUM_THREADS=1
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
# "wall cpu": images/s from wall-clock time and from the process's CPU time (robust to a loaded machine).
lenet() { "$1/speed_bench" 1 train | sed -n 's/.*"samples": \[\([0-9.]*\)\], "cpu_samples": \[\([0-9.]*\)\].*/\1 \2/p'; }
cnn() { "$1/step_timing" examples/mnist-cnn.toml 128 "$steps" | sed -n 's/.*; \([0-9.]*\) samples\/s/\1/p'; }
declare -a la lb lac lbc ca cb
echo "threads $threads, $rounds rounds, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < rounds; i++)); do
    read -r w c <<<"$(lenet "$old")"
    la+=("$w") lac+=("$c")
    read -r w c <<<"$(lenet "$new")"
    lb+=("$w") lbc+=("$c")
    ca+=("$(cnn "$old")")
    cb+=("$(cnn "$new")")
    echo "round $((i + 1)): lenet A ${la[-1]} B ${lb[-1]} images/s; mnist-cnn A ${ca[-1]} B ${cb[-1]} samples/s"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
report() {
    local a b
    a=$(median "${@:2:$rounds}")
    b=$(median "${@:$((rounds + 2))}")
    printf '%-34s A %10.1f  B %10.1f  B/A %.3f\n' "$1" "$a" "$b" "$(echo "$b / $a" | bc -l)"
}
report "lenet-train-b64 (images/s)" "${la[@]}" "${lb[@]}"
report "lenet-train-b64 (images/CPU-s)" "${lac[@]}" "${lbc[@]}"
report "mnist-cnn step b128 (samples/s)" "${ca[@]}" "${cb[@]}"
