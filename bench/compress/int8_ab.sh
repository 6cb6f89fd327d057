#!/usr/bin/env bash
# Our int8 CNN path, old binary against new, alternating under the shared lock (issue 16, session 10):
# each round runs `lepton compress --quantize int8` with OLD then NEW on the same run, and reads the
# report's batch-64 throughput and batch-1 latency of the f32 and the int8 model (timed in turn in
# the same process). Prints every round and the medians; the int8/f32 ratio is the load-robust one.
#
#   OLD=/tmp/lepton-old NEW=target/release/lepton RUN=runs/quickstart ROUNDS=5 bench/compress/int8_ab.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${OLD:?OLD=path of the old lepton binary}
new=${NEW:-${CARGO_TARGET_DIR:-target}/release/lepton}
run=${RUN:-runs/quickstart}
rounds=${ROUNDS:-5}
out=${OUT:-/tmp/lepton-int8-ab}
export RAYON_NUM_THREADS=${THREADS:-2}
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
    for side in old new; do
        bin=$old
        [[ $side == new ]] && bin=$new
        flock /tmp/lepton-cpu.lock "$bin" --json compress "$run" -o "$out/$side.photon" --quantize int8 \
            --calibration-samples 256 --calibration minmax --force > "$out/$side.$r.json"
    done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
res = {s: [json.load(open(f"{out}/{s}.{r}.json")) for r in range(1, rounds + 1)] for s in ("old", "new")}
for s, rs in res.items():
    for r in rs:
        print(f"{s}: f32 {r['before']['throughput']:8.0f}/s  int8 {r['after']['throughput']:8.0f}/s  "
              f"batch-1 {r['after']['latency_ms']:.3f} ms  int8/f32 {r['after']['throughput'] / r['before']['throughput']:.2f}")
med = {s: (statistics.median(r["after"]["throughput"] for r in rs),
           statistics.median(r["after"]["throughput"] / r["before"]["throughput"] for r in rs),
           statistics.median(r["after"]["latency_ms"] for r in rs)) for s, rs in res.items()}
for s, (t, q, l) in med.items():
    print(f"median {s}: int8 {t:,.0f} samples/s at batch 64, {q:.2f}x its f32, batch-1 {l:.3f} ms")
print(f"new / old int8 throughput: {med['new'][0] / med['old'][0]:.2f}x (int8/f32 ratio {med['new'][1] / med['old'][1]:.2f}x)")
PY
