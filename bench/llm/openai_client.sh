#!/usr/bin/env bash
# The official `openai` Python client (PyPI) against `lepton serve` with SmolLM2 (GGUF) and
# all-MiniLM-L6-v2 (Hugging Face folder): chat (plain and streaming), completions (plain and
# streaming), embeddings (float and the client's default base64), model list, and the client's
# typed errors (bad token, unknown model, absurd max_tokens, bad fields, rate limit) carrying the
# nested error object's message, param and code. Exits non-zero on any failed check.
#
#   bench/llm/openai_client.sh              (release build)
#   PROFILE=debug bench/llm/openai_client.sh  (the dev build: no release rebuild of the workspace)
set -euo pipefail
cd "$(dirname "$0")/../.."
models=$(scripts/fetch-assets.sh models)
py=$(bench/pyenv.sh openai)/bin/python
profile=${PROFILE:-release}
if [ "$profile" = release ]; then cargo build --release -q -p lepton-cli; else cargo build -q -p lepton-cli; fi
port=${PORT:-18532}
log=$(mktemp)
config=$(mktemp --suffix=.toml)
# A burst of 40 requests per client and then almost nothing: the last check expects a 429.
printf '[limits]\nrate-limit-per-sec = 0.01\nrate-limit-burst = 40.0\n' >"$config"
LEPTON_TOKENS="bench-token:predict" "${CARGO_TARGET_DIR:-target}/$profile/lepton" serve \
    "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$models/all-MiniLM-L6-v2" \
    --config "$config" --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log" "$config"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
done
"$py" bench/llm/openai_client.py "http://127.0.0.1:$port/v1" bench-token
