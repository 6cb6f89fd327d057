#!/usr/bin/env bash
# Gemma 3 270M Q4_K_M (Q5_0/Q4_K/Q6_K/Q8_0 tensors): lepton vs llama.cpp (llama-cpp-python)
# prefill and decode tokens/s on the same file, same thread count, in one run, and lepton's resident
# memory after loading against the file's size (weights kept quantized, no f32 expansion).
#
#   bench/llm/gemma_speed.sh [THREADS=2] [PROMPT_TOKENS=200] [DECODE_TOKENS=64]
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2} prompt=${2:-200} decode=${3:-64}
model=$(scripts/fetch-assets.sh gemma)
py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
cargo build --release -q -p lepton-llm --example llm_speed
ours=$(RAYON_NUM_THREADS=$threads "${CARGO_TARGET_DIR:-target}"/release/examples/llm_speed "$model" "$prompt" "$decode" 0)
ref=$("$py" bench/llm/llamacpp_speed.py "$model" "$prompt" "$decode" "$threads")
echo "lepton:    $ours"
echo "llama.cpp: $ref"
"$py" - "$ours" "$ref" <<'PY'
import json, sys
o, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"prefill {o['prompt_tokens']} tokens: lepton {o['prefill_tokens_per_s']:.1f} tok/s, llama.cpp {r['prefill_tokens_per_s']:.1f} tok/s, ratio {o['prefill_tokens_per_s'] / r['prefill_tokens_per_s']:.2f}x")
print(f"decode {o['decode_tokens']} tokens:  lepton {o['decode_tokens_per_s']:.1f} tok/s, llama.cpp {r['decode_tokens_per_s']:.1f} tok/s, ratio {o['decode_tokens_per_s'] / r['decode_tokens_per_s']:.2f}x")
print(f"memory after load: weights {o['weight_bytes'] / 2**20:.1f} MiB for a {o['file_bytes'] / 2**20:.1f} MiB file = {o['weight_bytes'] / o['file_bytes']:.3f}x; process RSS {o['rss_after_load_bytes'] / 2**20:.1f} MiB = {o['rss_after_load_bytes'] / o['file_bytes']:.2f}x (binary, tokenizer, buffers included)")
PY
