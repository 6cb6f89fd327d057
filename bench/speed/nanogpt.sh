#!/usr/bin/env bash
# nanoGPT training speed, lepton vs PyTorch (issue 13, acceptance 1): the CPU recipe of
# shakespeare_char (4 layers, 4 heads, 128 wide, block 64, batch 12, AdamW, cosine decay, tied
# embeddings) on synthetic char data, 2 threads each, run alternately RUNS times (each run under
# the shared CPU lock), median tokens/s of each and their ratio.
#
#   bench/speed/nanogpt.sh [RUNS=5] [STEPS=40]
#
# CANDLE_NUM_THREADS=1: candle 0.11 runs its element-wise ops on a spinning barrier pool, which
# on a shared, oversubscribed machine waits for descheduled workers (5x slower steps measured
# at load 11 on 2 cores); the GEMMs and our kernels still use the 2 rayon threads. PyTorch gets
# the same treatment, OMP_WAIT_POLICY=PASSIVE (its OpenMP workers otherwise spin too: 520-665
# tokens/s measured at load 10-11 against 3,828 passive). Both get the same glibc malloc
# tunables: without them every step's ~1 MB activations come from fresh mmap'd pages (page faults
# and zeroing were ~10 % of a lepton step; backward 37.5 -> 26.3 ms measured at load 2).
export GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=1073741824
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
steps=${2:-40}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
nice -n 5 cargo build -q --release -p lepton-nn --example nanogpt_speed
py=$(bench/pyenv.sh torch numpy)/bin/python
ours=() theirs=()
for ((i = 1; i <= runs; i++)); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    l=$(CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=2 flock /tmp/lepton-cpu.lock \
        "$CARGO_TARGET_DIR/release/examples/nanogpt_speed" "$steps" 3)
    t=$(OMP_WAIT_POLICY=PASSIVE flock /tmp/lepton-cpu.lock "$py" bench/speed/nanogpt_torch.py "$steps" 3)
    echo "run $i (load $load): $l"
    echo "run $i (load $load): $t"
    ours+=("$(sed -E 's/.*, ([0-9]+) tokens\/s.*/\1/' <<<"$l")")
    theirs+=("$(sed -E 's/.*, ([0-9]+) tokens\/s.*/\1/' <<<"$t")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
mo=$(median "${ours[@]}")
mt=$(median "${theirs[@]}")
echo "median of $runs: lepton $mo tokens/s, pytorch $mt tokens/s, ratio $(awk -v a="$mo" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')x"
