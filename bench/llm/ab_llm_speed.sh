#!/usr/bin/env bash
# A/B of two builds of the `llm_speed` example (lepton-llm) on one GGUF model: runs OLD and NEW
# alternately ROUNDS times under the shared CPU lock (prefill and decode only, CLIENTS = 0) and
# prints the median prefill and decode tokens/s of each and the speed-up new/old.
#
#   bench/llm/ab_llm_speed.sh OLD_BINARY NEW_BINARY MODEL.gguf [ROUNDS=5] [THREADS=2] [PROMPT=200] [DECODE=64]
#
# Build the two binaries with `cargo build --release -p lepton-llm --example llm_speed` at the two
# commits and copy them aside (e.g. /tmp/ab-old/, /tmp/ab-new/).
set -euo pipefail
old=$1 new=$2 model=$3 rounds=${4:-5} threads=${5:-2} prompt=${6:-200} decode=${7:-64}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 0; i < rounds; i++)); do
  for v in old new; do
    bin=$old
    [[ $v == new ]] && bin=$new
    flock /tmp/lepton-cpu.lock env RAYON_NUM_THREADS="$threads" "$bin" "$model" "$prompt" "$decode" 0 >>"$tmp/$v"
  done
done
python3 - "$tmp/old" "$tmp/new" "$(basename "$model")" <<'PY'
import json, statistics, sys
def read(p):
    runs = [json.loads(l) for l in open(p) if l.startswith("{")]
    return [r["prefill_tokens_per_s"] for r in runs], [r["decode_tokens_per_s"] for r in runs]
(op, od), (np_, nd) = read(sys.argv[1]), read(sys.argv[2])
m = statistics.median
print(f"{sys.argv[3]}: prefill old {m(op):.1f} new {m(np_):.1f} tok/s = {m(np_) / m(op):.2f}x; decode old {m(od):.1f} new {m(nd):.1f} tok/s = {m(nd) / m(od):.2f}x ({len(op)} runs each)")
print("  prefill old", [round(v, 1) for v in op], "new", [round(v, 1) for v in np_])
print("  decode  old", [round(v, 1) for v in od], "new", [round(v, 1) for v in nd])
PY
