#!/usr/bin/env bash
# Eight concurrent chat clients against `lepton run` (SmolLM2 Q4_1, continuous batching), through
# HTTP with the official openai client: aggregate decode tokens/s against one client alone, and
# every client's answer compared with what it gets alone with the same seed (issue 5, acceptance 4,
# end to end).
#
#   bench/llm/concurrent_chat.sh   # THREADS=2 CLIENTS=8 MAX_TOKENS=64 REPEATS=3 PREFIX_CACHE_TOKENS=4096
#
# PREFIX_CACHE_TOKENS=0 turns the engine's prefix cache off; the prefix-cache metrics are printed
# at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
models=$(scripts/fetch-assets.sh models)
py=$(bench/pyenv.sh openai)/bin/python
cargo build --release -q -p lepton-cli
port=${PORT:-18533}
log=$(mktemp)
RAYON_NUM_THREADS=$threads CANDLE_NUM_THREADS=$threads target/release/lepton --threads "$threads" run \
    "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --name smollm2 --max-batch 8 \
    --prefix-cache-tokens "${PREFIX_CACHE_TOKENS:-4096}" --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
done
"$py" bench/llm/concurrent_chat.py "http://127.0.0.1:$port/v1" "${CLIENTS:-8}" "${MAX_TOKENS:-64}" "${REPEATS:-3}" || status=$?
curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^lepton_llm_(prefix_cache|prompt_tokens)' || true
exit "${status:-0}"
