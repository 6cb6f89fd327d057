#!/usr/bin/env bash
# Dynamic int8 of all-MiniLM-L6-v2 (issue 16, acceptance 5): `lepton compress MODEL_DIR
# --quantize dynamic-int8`, then our f32 and our int8 folders embedding the sentences of
# bench/llm/embeddings.sh back to back (batch 32, THREADS threads, ROUNDS alternating rounds, each
# the best of 3 passes; medians reported), their mean cosine, the file sizes; and side by side
# torch.ao.quantization.quantize_dynamic on sentence-transformers (its sentences/s, cosine to
# its f32, state_dict sizes). Run on a quiet machine, or under the shared lock:
#
#   flock /tmp/lepton-cpu.lock bench/compress/minilm.sh     # THREADS=2 N=1000 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
n=${N:-1000}
rounds=${ROUNDS:-3}
models=$(scripts/fetch-assets.sh models)
model=$models/all-MiniLM-L6-v2
py=$(bench/pyenv.sh torch numpy sentence-transformers)/bin/python
cargo build --release -q -p lepton-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" bench/llm/embeddings_reference.py sentences "$n" >"$work/sentences.txt"
export RAYON_NUM_THREADS=$threads
lepton=${CARGO_TARGET_DIR:-target}/release/lepton
# The gate runs on the benchmark sentences.
$lepton --threads "$threads" --json compress "$model" -o "$work/int8" --quantize dynamic-int8 \
    --data "$work/sentences.txt" >"$work/compress.json"
embed() { # MODEL OUT.jsonl LOG
    $lepton --threads "$threads" --json embed "$1" --file "$work/sentences.txt" \
        --batch-size 32 --repeat 3 >"$2" 2>"$3"
}
for r in $(seq "$rounds"); do
    embed "$model" "$work/f32.jsonl" "$work/f32.$r.log"
    embed "$work/int8" "$work/int8.jsonl" "$work/int8.$r.log"
done
"$py" bench/compress/minilm_reference.py "$model" "$work" "$rounds" "$threads"
