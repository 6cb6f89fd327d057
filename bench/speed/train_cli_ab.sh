#!/usr/bin/env bash
# A/B of two `lepton` binaries on `lepton train SPEC` (issue 19): OLD and NEW alternate (A B A B ...),
# each a fresh process with its default process settings and `--threads T`; prints per run the epoch
# seconds (metrics.jsonl: training + validation pass), the process's CPU time (it also covers data loading
# and the final test evaluation), page faults and system time, then the medians. Run it under the shared
# lock; on a busy machine the wall times swing with the load and the CPU times are the steadier measure.
#
#   flock /tmp/lepton-cpu.lock bench/speed/train_cli_ab.sh OLD NEW [SPEC] [EPOCHS]   # mnist-cnn, 1 epoch
#   ROUNDS=3 THREADS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1
new=$2
spec=${3:-examples/mnist-cnn.toml}
epochs=${4:-1}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "A=$old B=$new, $spec, $epochs epoch(s), $threads threads, $rounds rounds, load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 0; r < rounds; r++)); do
    for side in A B; do
        bin=$old
        [[ $side == B ]] && bin=$new
        /usr/bin/time -o "$work/$side-$r.time" -f "%U %S %R" \
            "$bin" --threads "$threads" --quiet train "$spec" --epochs "$epochs" --out "$work/$side-$r" --no-export
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
from pathlib import Path

work, rounds = Path(sys.argv[1]), int(sys.argv[2])
res = {}
for side in "AB":
    rows = []
    for r in range(rounds):
        ep = [json.loads(l) for l in (work / f"{side}-{r}" / "metrics.jsonl").read_text().splitlines()]
        ep = [e for e in ep if e.get("kind") == "epoch"]
        user, sys_s, faults = (work / f"{side}-{r}.time").read_text().split()[-3:]
        secs = sum(e["seconds"] for e in ep)
        cpu = float(user) + float(sys_s)
        rows.append((secs, cpu, float(sys_s), int(faults), [e["val_loss"] for e in ep]))
        print(f"{side} round {r}: epochs {secs:.2f} s, process CPU {cpu:.1f} s (system {float(sys_s):.2f} s), "
              f"{int(faults):,} page faults")
    res[side] = rows
for i, what in [(0, "epoch wall time"), (1, "process CPU time (user + system)")]:
    m = {s: statistics.median(r[i] for r in rows) for s, rows in res.items()}
    print(f"median {what}: A {m['A']:.2f} s, B {m['B']:.2f} s, B is {100 * (m['A'] / m['B'] - 1):+.1f} % faster")
same = all(a[4] == b[4] for a, b in zip(res["A"], res["B"]))
print("validation losses bit for bit the same in A and B:", same)
PY
