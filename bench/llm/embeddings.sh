#!/usr/bin/env bash
# all-MiniLM-L6-v2 sentence embeddings, ours (`lepton embed`, f32) side by side with
# sentence-transformers (PyTorch CPU) in one run, on the same sentences and thread count:
# agreement (cosine of each pair of vectors), sentences/s at batch 32 (best of 3), one-sentence
# latency, the FLOPs of the forward passes and the fraction of this CPU's measured f32 matmul peak.
#
#   bench/llm/embeddings.sh              # THREADS=2 N=1000
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
n=${N:-1000}
models=$(scripts/fetch-assets.sh models)
model=$models/all-MiniLM-L6-v2
py=$(bench/pyenv.sh torch sentence-transformers)/bin/python
cargo build --release -q -p lepton-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" bench/llm/embeddings_reference.py sentences "$n" >"$work/sentences.txt"
head -n1 "$work/sentences.txt" >"$work/one.txt"
# CANDLE_NUM_THREADS is left to `lepton` (1: its spinning pool only competes with rayon).
export RAYON_NUM_THREADS=$threads
target/release/lepton --threads "$threads" --json embed "$model" --file "$work/sentences.txt" \
    --batch-size 32 --repeat 3 >"$work/ours.jsonl" 2>"$work/ours.log"
target/release/lepton --threads "$threads" --quiet embed "$model" --file "$work/one.txt" --repeat 1 >/dev/null
target/release/lepton --threads "$threads" --json embed "$model" --file "$work/one.txt" \
    --repeat 20 >/dev/null 2>"$work/one.log"
"$py" bench/llm/embeddings_reference.py compare "$model" "$work/sentences.txt" "$work/ours.jsonl" \
    "$work/ours.log" "$work/one.log" "$threads"
