#!/usr/bin/env bash
# The char-LSTM example (examples/shakespeare-lstm.toml) on Shakespeare's plays: validation loss,
# perplexity, bits per character and training tokens/s, from the run's report and metrics.
#
#   STEPS=1500 flock /tmp/lepton-cpu.lock bench/text/shakespeare-lstm.sh
#
# STEPS (default 1500, the example's) shortens the run; LEPTON picks the binary
# (default target/release/lepton). Prints one Markdown table row.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/fetch-assets.sh shakespeare
steps=${STEPS:-1500}
bin=${LEPTON:-${CARGO_TARGET_DIR:-target}/release/lepton}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e "s|^steps = .*|steps = $steps|" -e "s|^log-every = .*|log-every = 10|" -e "s|\"\.\./data/|\"$PWD/data/|" \
    examples/shakespeare-lstm.toml > "$tmp/spec.toml"
start=$(date +%s.%N)
"$bin" train "$tmp/spec.toml" --out "$tmp/run" --no-export >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
end=$(date +%s.%N)
python3 - "$tmp/run" "$steps" "$start" "$end" <<'PY'
import json, statistics, sys
run, steps, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
lines = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
tps = [l["tokens_per_sec"] for l in lines if l["kind"] == "step"]
evals = [l for l in lines if l["kind"] == "epoch"]
rep = json.load(open(f"{run}/report.json"))
print("| steps | wall s | train tokens/s (median of log windows) | last val loss (200 windows) "
      "| final val loss (all windows) | perplexity | bits/char |")
print("|---|---|---|---|---|---|---|")
print(f"| {steps} | {end - start:.0f} | {statistics.median(tps):,.0f} "
      f"| {evals[-1]['val_loss']:.4f} | {rep['loss']:.4f} | {rep['perplexity']:.3f} "
      f"| {rep['bits-per-char']:.4f} |")
PY
