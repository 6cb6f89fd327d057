#!/usr/bin/env bash
# Issue 13, acceptance 3: text generation from a trained language model (a run directory or a
# .photon, e.g. runs/shakespeare-gpt) is reproducible through `lepton generate` and through the
# server, and the two are equal:
#   1. `lepton generate` twice with the same seed: the same text; with another seed: other text;
#   2. `lepton serve` the photon, POST /v1/models/NAME/generate with stream: true and the same
#      settings: the concatenated SSE pieces equal the CLI's text;
#   3. greedy (temperature 0) likewise.
# Exits non-zero on any mismatch. The model must be a language model (`lepton inspect` says so).
#
#   scripts/generate-repro.sh runs/shakespeare-gpt [PROMPT]
#   LEPTON=target/debug/lepton TOKENS=300 scripts/generate-repro.sh model.photon "ROMEO:"
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:?usage: scripts/generate-repro.sh RUN_DIR_OR_PHOTON [PROMPT]}
prompt=${2:-ROMEO:}
tokens=${TOKENS:-200}
port=${PORT:-18481}
lepton=${LEPTON:-}
if [[ -z $lepton ]]; then
    cargo build --release -q -p lepton-cli
    lepton=$PWD/target/release/lepton
fi
photon=$model
[[ -d $model ]] && photon=$model/model.photon
[[ -f $photon ]] || "$lepton" export "$model" -o "$photon" --quiet
name=$(basename "$photon" .photon)

work=$(mktemp -d /tmp/lepton-generate.XXXXXX)
server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

gen() { "$lepton" --json generate "$photon" --prompt "$prompt" --max-tokens "$tokens" "$@" | jq -r .text; }

echo "== lepton generate ($tokens tokens, prompt '$prompt')"
gen --temperature 0.8 --top-k 40 --seed 1 >"$work/a"
gen --temperature 0.8 --top-k 40 --seed 1 >"$work/b"
gen --temperature 0.8 --top-k 40 --seed 2 >"$work/c"
gen --temperature 0 >"$work/greedy"
cmp -s "$work/a" "$work/b" || { echo "FAIL: the same seed gave different text"; exit 1; }
cmp -s "$work/a" "$work/c" && { echo "FAIL: seeds 1 and 2 gave the same text"; exit 1; }
echo "same seed: same text; another seed: other text"
head -c 300 "$work/a"; echo

echo "== lepton serve $photon on 127.0.0.1:$port"
"$lepton" serve "$photon" --listen "127.0.0.1:$port" 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done
served() {
    curl -sfN "http://127.0.0.1:$port/v1/models/$name/generate" -H 'content-type: application/json' \
        -d "$(jq -nc --arg p "$prompt" --argjson n "$tokens" "{prompt: \$p, max_tokens: \$n, stream: true} + $1")" |
        sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -j '.choices[0].text // empty'
    # `lepton generate --json` ends the text with jq's newline.
    echo
}
served '{temperature: 0.8, top_k: 40, seed: 1}' >"$work/served"
served '{temperature: 0}' >"$work/served-greedy"
cmp -s "$work/a" "$work/served" || { echo "FAIL: the server's stream differs from lepton generate"; diff "$work/a" "$work/served" | head; exit 1; }
cmp -s "$work/greedy" "$work/served-greedy" || { echo "FAIL: greedy text differs between CLI and server"; exit 1; }
echo "PASS: server stream == lepton generate (seeded and greedy, $tokens tokens)"
