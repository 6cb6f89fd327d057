#!/usr/bin/env bash
# A/B of two builds of the `qmatmul_speed` example (lepton-llm) on the same shapes: runs OLD and NEW
# alternately ROUNDS times under the shared CPU lock and prints each shape's median microseconds
# and the speed-up old/new.
#
#   bench/llm/ab_qmatmul.sh OLD_BINARY NEW_BINARY [SHAPE_PREFIX=gemma] [ROUNDS=5] [THREADS=2] [ROWS=1,8,64]
#
# Build the two binaries with `cargo build --release -p lepton-llm --example qmatmul_speed` at the
# two commits and copy them aside (e.g. /tmp/ab-old/, /tmp/ab-new/).
set -euo pipefail
old=$1 new=$2 only=${3:-gemma} rounds=${4:-5} threads=${5:-2} rows=${6:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 0; i < rounds; i++)); do
  for v in old new; do
    bin=$old
    [[ $v == new ]] && bin=$new
    flock /tmp/lepton-cpu.lock env RAYON_NUM_THREADS="$threads" "$bin" "$only" $rows >>"$tmp/$v"
  done
done
python3 - "$tmp/old" "$tmp/new" <<'PY'
import re, statistics, sys
def read(p):
    d = {}
    for line in open(p):
        m = re.match(r"(.+?)\s+m=\s*(\d+):\s+([\d.]+) us", line)
        if m:
            d.setdefault((m[1].strip(), int(m[2])), []).append(float(m[3]))
    return d
o, n = read(sys.argv[1]), read(sys.argv[2])
for k in [k for k in o if k in n]:
    a, b = statistics.median(o[k]), statistics.median(n[k])
    print(f"{k[0]:26} m={k[1]:3}: old {a:8.1f} us, new {b:8.1f} us, speed-up {a / b:.2f}x ({len(o[k])} runs each)")
PY
