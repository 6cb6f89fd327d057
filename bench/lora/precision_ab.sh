#!/usr/bin/env bash
# Ours against ours: LoRA training of SmolLM2-135M-Instruct (Q4_1 GGUF) with the f32 base vs the
# quantized base (--base-precision), alternating ROUNDS times, each run under the shared CPU lock;
# prints every run, then the medians of training tokens/s and peak RSS and the speed-up.
# Same setting as bench/lora/peft_side_by_side.sh (r=8, alpha=16, q_proj/v_proj, 4x128 tokens,
# AdamW 2e-3, the same windows in file order).
#
#   bench/lora/precision_ab.sh           # ROUNDS=3 STEPS=4 THREADS=2 by default; LEPTON=binary
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-4} THREADS=${THREADS:-2}
gguf=$(scripts/fetch-assets.sh models)/SmolLM2-135M-Instruct.Q4_1.gguf
scripts/fetch-assets.sh shakespeare >/dev/null
work=$(mktemp -d /tmp/lepton-lora-ab.XXXXXX)
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
# The first 90 % is training text, the rest validation (as the side-by-side script).
size=$(stat -c %s data/shakespeare/input.txt)
head -c 200000 data/shakespeare/input.txt >"$work/train.txt"
{ tail -c +$((size * 9 / 10 + 1)) data/shakespeare/input.txt | head -c 60000 >"$work/val.txt"; } || true
# LEPTON=path skips the build and times that binary.
lepton=${LEPTON:-${CARGO_TARGET_DIR:-target}/release/lepton}
[[ -n ${LEPTON:-} ]] || cargo build -q --release -p lepton-cli --bin lepton
for round in $(seq "$ROUNDS"); do
    for prec in f32 quantized; do
        out="$work/$prec-$round"
        flock /tmp/lepton-cpu.lock /usr/bin/time -f "%M" -o "$out.rss" "$lepton" --threads "$THREADS" --json \
            finetune "$gguf" --data "$work/train.txt" --val-data "$work/val.txt" --lora-r 8 --lora-alpha 16 \
            --targets q_proj,v_proj --steps "$STEPS" --batch-size 4 --seq-len 128 --lr 2e-3 --no-shuffle \
            --max-val-windows 2 --base-precision "$prec" --out "$out" >/dev/null
        tps=$(grep -o '"tokens_per_s": *[0-9.]*' "$out/report.json" | sed 's/.*: *//')
        echo "$prec $tps $(( $(tail -1 "$out.rss") / 1024 ))" | tee -a "$work/runs.txt"
    done
done
awk '{t[$1] = t[$1] " " $2; r[$1] = r[$1] " " $3}
function median(s,   a, n, i, j, x) { n = split(s, a, " ");
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
END { tf = median(t["f32"]); tq = median(t["quantized"]);
    printf "median tokens/s: f32 %.1f, quantized %.1f (speed-up %.2fx)\n", tf, tq, tq / tf;
    printf "median peak RSS MB: f32 %d, quantized %d\n", median(r["f32"]), median(r["quantized"]) }' "$work/runs.txt"
