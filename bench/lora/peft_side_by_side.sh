#!/usr/bin/env bash
# LoRA fine-tuning of SmolLM2-135M-Instruct, PEFT and Lepton side by side in one run (issue 15):
# r=8, alpha=16, q_proj/v_proj, AdamW lr 2e-3 (weight decay 0 on both), STEPS steps of 4x128
# tokens of Shakespeare (the same consecutive windows in file order on both sides), the same
# thread count. Prints trainable parameters, validation loss before/after, tokens/s and peak RSS
# for both and the speed ratio, then the adapter cross-checks (bench/lora/peft_check.py).
# Ours runs once per base precision in PRECISION (default both: `f32` = the dequantized base,
# `quantized` = the GGUF blocks on the integer kernels, QLoRA-style); the cross-checks use the
# adapter of the first one.
#
#   bench/lora/peft_side_by_side.sh      # STEPS=40 THREADS=2 PRECISION="f32 quantized" by default
# Each heavy phase takes the shared CPU lock (/tmp/lepton-cpu.lock) for itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-40} THREADS=${THREADS:-2} BATCH=4 SEQ=128 LR=2e-3 VALW=${VALW:-16}
PRECISION=${PRECISION:-f32 quantized}
py=$(bench/pyenv.sh torch numpy transformers peft gguf)/bin/python
gguf=$(scripts/fetch-assets.sh models)/SmolLM2-135M-Instruct.Q4_1.gguf
scripts/fetch-assets.sh shakespeare >/dev/null
hf=${LEPTON_SMOLLM2_F32:-$HOME/.cache/lepton-bench/smollm2-f32}
work=$(mktemp -d /tmp/lepton-lora-bench.XXXXXX)
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
echo "work folder: $work" >&2
[[ -f $hf/model.safetensors ]] || $py bench/lora/golden.py "$gguf" "$work/golden.json" "$hf" >&2
# 90/10 split by position; a prefix of each is enough for STEPS steps and VALW windows.
$py - "$work" <<'PY'
import sys
t = open("data/shakespeare/input.txt").read()
cut = int(len(t) * 0.9)
open(sys.argv[1] + "/train.txt", "w").write(t[:cut][:200_000])
open(sys.argv[1] + "/val.txt", "w").write(t[cut:][:60_000])
PY
cargo build -q --release -p lepton-cli -p lepton-finetune --bin lepton --example lora_logits
tgt=${CARGO_TARGET_DIR:-target}/release

echo "PEFT ($THREADS threads) ..." >&2
lock="flock /tmp/lepton-cpu.lock"
peft_json=$($lock /usr/bin/time -f "%M" -o "$work/peft.rss" $py bench/lora/peft_train.py "$hf" "$work/train.txt" \
    "$work/val.txt" "$work/peft_adapter" "$STEPS" $BATCH $SEQ $LR "$VALW" "$THREADS" 2>"$work/peft.err" | tail -1)
first=""
for prec in $PRECISION; do
    echo "Lepton, $prec base ($THREADS threads) ..." >&2
    $lock /usr/bin/time -f "%M" -o "$work/lepton-$prec.rss" "$tgt/lepton" --threads "$THREADS" --json finetune "$gguf" \
        --data "$work/train.txt" --val-data "$work/val.txt" --lora-r 8 --lora-alpha 16 --targets q_proj,v_proj \
        --steps "$STEPS" --batch-size $BATCH --seq-len $SEQ --lr $LR --no-shuffle --max-val-windows "$VALW" \
        --base-precision "$prec" --out "$work/run-$prec" >"$work/lepton-$prec.json"
    [[ -n $first ]] || { first=$prec; ln -s "run-$prec" "$work/run"; }
done

$py - "$work" "$peft_json" $PRECISION <<'PY'
import json, sys
w = sys.argv[1]
p = json.loads(sys.argv[2])
p["peak_rss_mb"] = int(open(w + "/peft.rss").read().split()[-1]) / 1024
cols = [("PEFT", p)]
for prec in sys.argv[3:]:
    l = json.load(open(f"{w}/run-{prec}/report.json"))
    l["peak_rss_mb"] = int(open(f"{w}/lepton-{prec}.rss").read().split()[-1]) / 1024
    cols.append((f"Lepton {prec}", l))
print(f"{'':26}" + "".join(f"{n:>18}" for n, _ in cols))
for k in ["trainable_params", "train_windows", "val_windows", "val_loss_before", "val_loss_after", "tokens_per_s", "peak_rss_mb"]:
    f = (lambda v: f"{v:18.4f}") if isinstance(p[k], float) else (lambda v: f"{v:18}")
    print(f"{k:26}" + "".join(f(r[k]) for _, r in cols))
drop = lambda r: 100 * (r["val_loss_before"] - r["val_loss_after"]) / r["val_loss_before"]
print(f"{'relative val-loss drop %':26}" + "".join(f"{drop(r):18.2f}" for _, r in cols))
for n, l in cols[1:]:
    print(f"{n}: val loss after - PEFT's: {l['val_loss_after'] - p['val_loss_after']:+.4f} nats; "
          f"tokens/s ratio to PEFT: {l['tokens_per_s'] / p['tokens_per_s']:.2f}x; "
          f"peak RSS ratio to PEFT: {l['peak_rss_mb'] / p['peak_rss_mb']:.2f}x")
PY

# Cross-checks on a 48-token probe from the validation text.
$py - "$hf" "$work" <<'PY'
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = tok(open(sys.argv[2] + "/val.txt").read()[:400], add_special_tokens=False)["input_ids"][:48]
json.dump(ids, open(sys.argv[2] + "/probe.json", "w"))
PY
CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=$THREADS $lock "$tgt/examples/lora_logits" "$gguf" "$work/run/adapter" "$work/probe.json" "$work/ll.json" 16
CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=$THREADS $lock "$tgt/examples/lora_logits" "$gguf" "$work/peft_adapter" "$work/probe.json" "$work/lp.json" 16
"$tgt/lepton" --quiet lora merge "$gguf" "$work/run/adapter" -o "$work/merged"
$lock $py bench/lora/peft_check.py "$hf" "$work/probe.json" "$work/run/adapter" "$work/ll.json" \
    "$work/peft_adapter" "$work/lp.json" "$work/merged" 16 "$THREADS"
