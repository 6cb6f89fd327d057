#!/usr/bin/env bash
# The training step's two implementations in one process on one loaded base, alternating on the
# same batch (crates/lepton-finetune/examples/step_ab.rs): candle autograd over Decoder::loss
# against the hand-written lepton_finetune::step (the one `lepton finetune` runs). SmolLM2-135M
# (Q4_1 GGUF), r=8, alpha=16, q_proj/v_proj, 4x128 tokens, 2 threads, under the shared CPU lock.
#
#   bench/lora/step_ab.sh            # PREC="quantized f32" ROUNDS=5 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5} PREC=${PREC:-quantized f32}
gguf=$(scripts/fetch-assets.sh models)/SmolLM2-135M-Instruct.Q4_1.gguf
scripts/fetch-assets.sh shakespeare >/dev/null
work=$(mktemp -d /tmp/lepton-step-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
head -c 200000 data/shakespeare/input.txt >"$work/train.txt"
cargo build -q --release -p lepton-finetune --example step_ab
bin=${CARGO_TARGET_DIR:-target}/release/examples/step_ab
for prec in $PREC; do
    echo "== $prec base"
    # The compute settings `lepton finetune` uses (lepton-cli's tuning::for_compute).
    flock /tmp/lepton-cpu.lock env CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=2 \
        MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=67108864 \
        "$bin" "$gguf" "$work/train.txt" "$prec" "$ROUNDS"
done
