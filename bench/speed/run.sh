#!/usr/bin/env bash
# Issue 3 side by side: Lepton (crates/lepton-train/examples/speed_bench.rs) and PyTorch CPU
# (bench/speed/torch_bench.py) on the same workloads, same thread count, alternating A B A B in one
# run; prints medians, ratios against the issue's targets and the fraction of the physical limit, once from
# wall-clock time and once from each process's CPU time (with THREADS=1 the CPU-time table is robust to a
# shared, loaded machine; with more threads it also counts time spent spin-waiting).
#
#   bench/speed/run.sh                 # THREADS=2 ROUNDS=3 REPEATS=2 WORKLOADS=train,infer,matmul,gpt2
#
# PyTorch is installed from PyPI (CPU wheel) into the cached venv of bench/pyenv.sh, outside the repo.
# Both sides get the same environment: THREADS threads (RAYON/OMP/MKL), CANDLE_NUM_THREADS=1 (candle's
# own spinning elementwise pool only competes with rayon on 2 cores), and glibc malloc tunables that keep
# freed memory instead of returning it to the kernel (no page faults on every large tensor).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
repeats=${REPEATS:-2}
workloads=${WORKLOADS:-train,infer,matmul,gpt2}

cargo build --release -q -p lepton-train --example speed_bench
py=$(PIP_INDEX_URL=${PIP_INDEX_URL:-https://download.pytorch.org/whl/cpu} \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-https://pypi.org/simple} bench/pyenv.sh torch numpy)/bin/python

export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads CANDLE_NUM_THREADS=1
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "threads $threads, $rounds rounds x $repeats repeats, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < repeats; i++)); do
    "${CARGO_TARGET_DIR:-target}"/release/examples/speed_bench "$rounds" "$workloads" >>"$out/ours.jsonl"
    "$py" bench/speed/torch_bench.py "$rounds" "$workloads" >>"$out/torch.jsonl"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" bench/speed/report.py "$out/ours.jsonl" "$out/torch.jsonl"
