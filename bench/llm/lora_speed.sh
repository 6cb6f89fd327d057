#!/usr/bin/env bash
# The cost of LoRA adapters in lepton-llm's decoder (issue 15, serving): prefill and decode
# tokens/s of SmolLM2 Q4_1 for the base and under random adapters, alone and in a mixed batch.
# Runs under the shared CPU lock; prints the example's JSON line.
set -euo pipefail
cd "$(dirname "$0")/../.."
models=$(scripts/fetch-assets.sh models)
nice -n 5 cargo build --release -q -p lepton-llm --example lora_speed
exec flock /tmp/lepton-cpu.lock "${CARGO_TARGET_DIR:-target}/release/examples/lora_speed" \
  "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "${1:-128}" "${2:-64}"
