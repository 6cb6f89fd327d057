#!/usr/bin/env bash
# The training-shape GEMM alone: G MAC/s of lepton-quant's matmul at the LoRA step's shapes
# (SmolLM2-135M, 512 token rows; q/k/v and gate/up stacked; forward on Q4_1 and Q8_0 weights,
# input gradients on the transposed Q8_0 copies), the GEMM against the row-group tiles it
# replaced, alternating in one process, medians of REPS runs (bit-equality checked first).
#
#   bench/lora/gemm_bench.sh            # REPS=9 by default, 2 threads, ~20 s
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-9}
cargo build -q --release -p lepton-quant --example gemm_bench
flock /tmp/lepton-cpu.lock env RAYON_NUM_THREADS=${THREADS:-2} \
    "${CARGO_TARGET_DIR:-target}/release/examples/gemm_bench" "$REPS"
