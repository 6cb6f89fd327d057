#!/usr/bin/env bash
# Ours against ours: LoRA training of SmolLM2-135M-Instruct (Q4_1 GGUF) with the f32 base vs the
# quantized base (--base-precision), alternating ROUNDS times, each run under the shared CPU lock;
# prints every run, then the medians of training tokens/s and peak RSS and the speed-up.
# Same setting as bench/lora/peft_side_by_side.sh (r=8, alpha=16, q_proj/v_proj, 4x128 tokens,
# AdamW 2e-3, the same windows in file order).
#
#   bench/lora/precision_ab.sh           # ROUNDS=3 STEPS=4 THREADS=2 by default; LEPTON=binary
#
# Two builds of ours instead (an optimisation's A/B): BASELINE=old-binary times it ("old")
# against LEPTON ("new"), both at the base precision PREC (default quantized); NEW_ENV="K=V ..."
# sets environment variables for the new side only (e.g. allocator settings).
#
#   BASELINE=/tmp/lepton-old LEPTON=target/release/lepton bench/lora/precision_ab.sh
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
if [[ -n ${BASELINE:-} ]]; then
    variants=("old $BASELINE ${PREC:-quantized}" "new $lepton ${PREC:-quantized}")
else
    variants=("f32 $lepton f32" "quantized $lepton quantized")
fi
for round in $(seq "$ROUNDS"); do
    for v in "${variants[@]}"; do
        read -r label bin prec <<<"$v"
        extra=()
        [[ $label != new ]] || read -r -a extra <<<"${NEW_ENV:-}"
        out="$work/$label-$round"
        flock /tmp/lepton-cpu.lock env "${extra[@]}" /usr/bin/time -f "%M" -o "$out.rss" "$bin" --threads "$THREADS" --json \
            finetune "$gguf" --data "$work/train.txt" --val-data "$work/val.txt" --lora-r 8 --lora-alpha 16 \
            --targets q_proj,v_proj --steps "$STEPS" --batch-size 4 --seq-len 128 --lr 2e-3 --no-shuffle \
            --max-val-windows 2 --base-precision "$prec" --out "$out" >/dev/null
        tps=$(grep -o '"tokens_per_s": *[0-9.]*' "$out/report.json" | sed 's/.*: *//')
        echo "$label $tps $(( $(tail -1 "$out.rss") / 1024 ))" | tee -a "$work/runs.txt"
    done
done
a=$(echo "${variants[0]}" | cut -d' ' -f1) b=$(echo "${variants[1]}" | cut -d' ' -f1)
awk -v A="$a" -v B="$b" '{t[$1] = t[$1] " " $2; r[$1] = r[$1] " " $3}
function median(s,   a, n, i, j, x) { n = split(s, a, " ");
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
END { tf = median(t[A]); tq = median(t[B]);
    printf "median tokens/s: %s %.1f, %s %.1f (speed-up %.2fx)\n", A, tf, B, tq, tq / tf;
    printf "median peak RSS MB: %s %d, %s %d\n", A, median(r[A]), B, median(r[B]) }' "$work/runs.txt"
