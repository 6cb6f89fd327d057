#!/usr/bin/env bash
# Issue 17, acceptance 2: our attributions against captum's on the same trained MNIST CNN weights,
# same inputs, same thread count: agreement (max |ours − captum| / max |captum|, target 1e-3 for
# integrated gradients) and time per image (target: ours >= 3x faster).
#
#   bench/explain/captum.sh RUN_DIR [IMAGES] [THREADS]
#   ROUNDS=5 METHODS=ig50,saliency IG_BATCH=64 bench/explain/captum.sh RUN_DIR 40 2
#
# RUN_DIR is an examples/mnist-cnn.toml run (spec.toml, best.safetensors, preprocessor.json), e.g.
# the quickstart run. METHODS: a subset of ig50,ig256,saliency,occlusion4x4 (default all).
#
# ROUNDS (default 1) whole rounds, each ours then captum on the same images, each round under
# /tmp/lepton-cpu.lock (LOCK=path to use another file, LOCK= for none; do not wrap this script in
# flock yourself: it would wait for its own lock). With ROUNDS > 1 it prints, per method, each
# round's time of both sides, each side's median over the rounds and the ratio of the medians
# (captum's own time moved 0.89-2.34 ms per saliency image between idle runs: one run decides
# nothing). The agreement is checked in every round; the script exits 1 when integrated gradients
# miss 1e-3 on any image in any round (captum_ref.py prints the worst image's index).
# LEPTON_BENCH_JSON=file appends each round's summary as a JSON line.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: bench/explain/captum.sh RUN_DIR [IMAGES] [THREADS]}
images=${2:-20}
threads=${3:-2}
rounds=${ROUNDS:-1}
lock=${LOCK-/tmp/lepton-cpu.lock}
py=$(bench/pyenv.sh torch numpy captum)/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
nice -n 5 cargo build -q --release -p lepton-explain --example captum_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/captum_bench
one_round() {
    # Our side runs with the process settings `lepton explain` gives itself (lepton-cli/src/tuning.rs:
    # candle's element-wise pool off, glibc keeping freed blocks instead of returning them to the kernel).
    CANDLE_NUM_THREADS=1 GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647 \
        RAYON_NUM_THREADS=$threads "$bin" "$run" "$out/ours.json" "$images" ${IG_BATCH:-64}
    OMP_NUM_THREADS=$threads "$py" bench/explain/captum_ref.py "$run" "$out/ours.json" --threads "$threads" \
        --methods "${METHODS:-ig50,ig256,saliency,occlusion4x4}" --json "$out/rounds.jsonl"
}
status=0
for r in $(seq "$rounds"); do
    echo "== round $r of $rounds ($(date -u +%H:%M:%S) UTC)"
    if [ -n "$lock" ]; then
        # -w: a lock held for more than 15 minutes is a wrapped call (see above) or a stuck job.
        flock -w 900 "$lock" bash -c "$(declare -f one_round); $(declare -p bin run out images threads py); one_round" || status=1
    else
        one_round || status=1
    fi
done
if [ -n "${LEPTON_BENCH_JSON:-}" ]; then
    cat "$out/rounds.jsonl" >>"$LEPTON_BENCH_JSON"
fi
"$py" - "$out/rounds.jsonl" <<'PY'
import json, statistics, sys
rounds = [json.loads(line) for line in open(sys.argv[1])]
if len(rounds) > 1:
    print(f"\n{len(rounds)} rounds; per method: captum and ours ms per image in each round, the medians, captum median / ours median")
    for name in rounds[0]["methods"]:
        c = [r["methods"][name]["captum_ms"] for r in rounds]
        o = [r["methods"][name]["ours_ms"] for r in rounds]
        err = max(r["methods"][name]["max_rel_err"] for r in rounds)
        cm, om = statistics.median(c), statistics.median(o)
        print(f"{name:<13} captum {' '.join(f'{v:.2f}' for v in c)} (median {cm:.2f})")
        print(f"{'':<13} ours   {' '.join(f'{v:.2f}' for v in o)} (median {om:.2f})")
        print(f"{'':<13} ratio of medians {cm / om:.2f}x (per round {' '.join(f'{a / b:.1f}' for a, b in zip(c, o))}), worst rel. error {err:.2e}")
PY
exit $status
