#!/usr/bin/env bash
# Issue 13, acceptance 2 (speed): the char-LSTM and char-GRU training step, Lepton
# (crates/lepton-nn/examples/rnn_speed.rs) against PyTorch's nn.LSTM / nn.GRU
# (bench/speed/rnn_torch.py), the same model, batch and optimizer, THREADS threads each, alternating
# ours / PyTorch ROUNDS times under the shared CPU lock; prints the median tokens/s of each side and
# the ratio, by wall-clock time and by each process's CPU time (on a shared, loaded machine the CPU
# time is the robust one; with 2 threads it also counts spin-waiting, on both sides).
#
#   bench/speed/rnn.sh                 # THREADS=2 ROUNDS=5 STEPS=20 KINDS=lstm,gru
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
rounds=${ROUNDS:-5}
steps=${STEPS:-20}
kinds=${KINDS:-lstm,gru}

nice -n 5 cargo build --release -q -p lepton-nn --example rnn_speed
py=$(PIP_INDEX_URL=${PIP_INDEX_URL:-https://download.pytorch.org/whl/cpu} \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-https://pypi.org/simple} bench/pyenv.sh torch numpy)/bin/python
bin=${CARGO_TARGET_DIR:-target}/release/examples/rnn_speed

# The same environment as bench/speed/run.sh: THREADS threads for rayon and OpenMP, candle's own
# element-wise pool off, glibc malloc keeping freed memory.
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads CANDLE_NUM_THREADS=1
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() {
    echo "threads $threads, $rounds rounds of $steps steps, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    for ((i = 0; i < rounds; i++)); do
        "$bin" "$kinds" "$steps" 1 | tee -a "$out"
        "$py" bench/speed/rnn_torch.py "$kinds" "$steps" 1 | tee -a "$out"
    done
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}
if [[ ${LEPTON_CPU_LOCKED:-} == 1 ]]; then
    run
else
    export -f run
    export bin py kinds steps rounds threads out
    LEPTON_CPU_LOCKED=1 flock /tmp/lepton-cpu.lock bash -c run
fi
"$py" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for kind in dict.fromkeys(r["kind"] for r in rows):
    for key, what in (("tokens_per_s", "wall"), ("cpu_tokens_per_s", "cpu")):
        med = {i: statistics.median(r[key] for r in rows if r["kind"] == kind and r["impl"] == i)
               for i in ("lepton", "pytorch")}
        n = sum(1 for r in rows if r["kind"] == kind and r["impl"] == "lepton")
        print(f"{kind} ({what} time, median of {n}): lepton {med['lepton']:.0f} tokens/s, "
              f"pytorch {med['pytorch']:.0f} tokens/s, ratio {med['lepton'] / med['pytorch']:.2f}x "
              f"(target >= 1.2x)")
PY
