#!/usr/bin/env bash
# SmolLM2-135M-Instruct Q4_1: lepton vs llama.cpp (llama-cpp-python) prefill and decode tokens/s on
# the same file, same thread count, in one run; then lepton's engine with CLIENTS concurrent requests
# (aggregate decode tokens/s vs one client, and whether every output equals its output alone), with
# the prefix cache (default) and without it.
#
#   bench/llm/speed.sh [THREADS=2] [PROMPT_TOKENS=200] [DECODE_TOKENS=128] [CLIENTS=8]
#
# MODEL=<file> runs another GGUF file, e.g. the K-quant re-quantizations of `scripts/fetch-assets.sh
# kquants`: MODEL=$(scripts/fetch-assets.sh models)/SmolLM2-135M-Instruct.Q4_K_M.gguf bench/llm/speed.sh 2 200 128 0
# (CLIENTS = 0: prefill, decode and memory only).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2} prompt=${2:-200} decode=${3:-128} clients=${4:-8}
model=${MODEL:-$(scripts/fetch-assets.sh models)/SmolLM2-135M-Instruct.Q4_1.gguf}
py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
cargo build --release -q -p lepton-llm --example llm_speed
ours=$(RAYON_NUM_THREADS=$threads "${CARGO_TARGET_DIR:-target}"/release/examples/llm_speed "$model" "$prompt" "$decode" "$clients")
ref=$("$py" bench/llm/llamacpp_speed.py "$model" "$prompt" "$decode" "$threads")
echo "lepton:    $ours"
echo "llama.cpp: $ref"
"$py" - "$ours" "$ref" <<'PY'
import json, sys
o, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"prefill {o['prompt_tokens']} tokens: lepton {o['prefill_tokens_per_s']:.1f} tok/s, llama.cpp {r['prefill_tokens_per_s']:.1f} tok/s, ratio {o['prefill_tokens_per_s'] / r['prefill_tokens_per_s']:.2f}x")
print(f"decode {o['decode_tokens']} tokens:  lepton {o['decode_tokens_per_s']:.1f} tok/s, llama.cpp {r['decode_tokens_per_s']:.1f} tok/s, ratio {o['decode_tokens_per_s'] / r['decode_tokens_per_s']:.2f}x")
if "engine_clients" not in o:
    print(f"memory after load: process RSS {o['rss_after_load_bytes'] / 2**20:.1f} MiB for a {o['file_bytes'] / 2**20:.1f} MiB file = {o['rss_after_load_bytes'] / o['file_bytes']:.2f}x")
    sys.exit(0)
print(f"engine, {o['engine_clients']} clients: aggregate {o['engine_aggregate_tokens_per_s']:.1f} tok/s vs one client {o['engine_single_tokens_per_s']:.1f} tok/s = {o['engine_aggregate_tokens_per_s'] / o['engine_single_tokens_per_s']:.2f}x; every output equals its output alone: {o['batched_equals_alone']}")
print(f"  prefix cache: {o['engine_aggregate_prefix_tokens_reused']} of the {o['engine_aggregate_prompt_tokens']} prompt tokens of the timed {o['engine_clients']}-client runs reused (copy {o['prefix_copy_us_per_token']:.2f} us/token vs prefill {o['prefill_us_per_token']:.0f} us/token)")
print(f"  {o['engine_clients']} clients at once on a new engine (only the chat template's start shared): {o['engine_fresh_aggregate_tokens_per_s']:.1f} tok/s with the prefix cache ({o['engine_fresh_prefix_tokens_reused']} prompt tokens reused), {o['engine_nocache_fresh_aggregate_tokens_per_s']:.1f} without; equal alone: {o['fresh_equals_alone']}")
print(f"engine without the prefix cache: aggregate {o['engine_nocache_aggregate_tokens_per_s']:.1f} tok/s vs one client {o['engine_nocache_single_tokens_per_s']:.1f} tok/s = {o['engine_nocache_aggregate_tokens_per_s'] / o['engine_nocache_single_tokens_per_s']:.2f}x; equal alone: {o['nocache_batched_equals_alone']}; same outputs as with the cache: {o['cached_equals_nocache']}")
PY
