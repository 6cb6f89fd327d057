#!/usr/bin/env bash
# The official `openai` Python client (PyPI) against `lepton serve` with SmolLM2 (GGUF) and
# all-MiniLM-L6-v2 (Hugging Face folder): chat (plain and streaming), completions (plain and
# streaming), embeddings (float and the client's default base64), model list, and the client's
# typed errors for a bad token, an unknown model and an absurd max_tokens. Exits non-zero on any
# failed check.
#
#   bench/llm/openai_client.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
models=$(scripts/fetch-assets.sh models)
py=$(bench/pyenv.sh openai)/bin/python
cargo build --release -q -p lepton-cli
port=${PORT:-18532}
log=$(mktemp)
LEPTON_TOKENS="bench-token:predict" target/release/lepton serve \
    "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$models/all-MiniLM-L6-v2" \
    --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
done
"$py" bench/llm/openai_client.py "http://127.0.0.1:$port/v1" bench-token
