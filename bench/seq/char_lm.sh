#!/usr/bin/env bash
# Issue 13, acceptance 1 and 2: a character language model on Shakespeare's plays trained by
# `lepton train` (the committed example spec) and by PyTorch (bench/seq/char_lm_torch.py: the same
# model, data, split, validation windows, optimizer and schedule), one after the other under the
# CPU lock, same threads. Prints each side's JSON line and the ratios.
#
#   bench/seq/char_lm.sh gpt            # examples/shakespeare-gpt.toml, 2,000 steps
#   bench/seq/char_lm.sh lstm [STEPS]   # examples/shakespeare-lstm.toml, 1,500 steps
#   bench/seq/char_lm.sh gru  [STEPS]   # the LSTM example with `gru` layers
#
# LEPTON picks the binary (default target/release/lepton), THREADS the threads (default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?usage: $0 gpt|lstm|gru [STEPS]}
threads=${THREADS:-2}
bin=${LEPTON:-${CARGO_TARGET_DIR:-target}/release/lepton}
py=$(bench/pyenv.sh torch numpy)/bin/python
scripts/fetch-assets.sh shakespeare
text=$PWD/data/shakespeare/input.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
case $model in
    gpt) example=examples/shakespeare-gpt.toml steps=${2:-2000}
         torch_args=(--model gpt --block 64 --batch 12 --layers 4 --heads 4 --width 128 --lr 1e-3
                     --min-lr 1e-4 --warmup 100 --beta2 0.99 --weight-decay 0.1) ;;
    lstm|gru) example=examples/shakespeare-lstm.toml steps=${2:-1500}
         torch_args=(--model "$model" --block 64 --batch 32 --layers 2 --width 256 --lr 3e-3
                     --min-lr 3e-4 --warmup 0 --beta2 0.999 --weight-decay 0.01) ;;
    *) echo "usage: $0 gpt|lstm|gru [STEPS]" >&2; exit 2 ;;
esac
sed -e "s|^steps = .*|steps = $steps|" -e "s|^path = .*|path = \"$text\"|" \
    -e "s|type = \"lstm\"|type = \"$([[ $model == gru ]] && echo gru || echo lstm)\"|" \
    "$example" > "$tmp/spec.toml"

lepton() {
    local start end
    start=$(date +%s.%N)
    "$bin" train "$tmp/spec.toml" --threads "$threads" --out "$tmp/run" --no-export >"$tmp/log" 2>&1 \
        || { cat "$tmp/log" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 - "$tmp/run" "$model" "$start" "$end" <<'PY'
import json, math, statistics, sys
run, model, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
lines = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
steps = [l for l in lines if l["kind"] == "step"]
rep = json.load(open(f"{run}/report.json"))
print(json.dumps({"runtime": "lepton", "model": model, "steps": steps[-1]["step"],
    "wall_seconds": round(end - start, 1),
    "tokens_per_second": round(statistics.median(l["tokens_per_sec"] for l in steps)),
    "val_loss": round(rep["loss"], 4), "bits_per_char": round(rep["loss"] / math.log(2), 4)}))
PY
}

ours=$(flock /tmp/lepton-cpu.lock bash -c "$(declare -f lepton); $(declare -p tmp bin threads model); lepton")
echo "$ours"
theirs=$(flock /tmp/lepton-cpu.lock "$py" bench/seq/char_lm_torch.py --text "$text" --steps "$steps" \
    --threads "$threads" "${torch_args[@]}")
echo "$theirs"
python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"tokens/s lepton/pytorch: {a['tokens_per_second'] / b['tokens_per_second']:.2f}x; "
      f"val loss lepton - pytorch: {a['val_loss'] - b['val_loss']:+.4f}")
PY
