#!/usr/bin/env bash
# Resident memory after loading each GGUF model against its file's size (issue 14: memory at load
# <= 1.1x the file): the whole process (`VmRSS` after `TextModel::load`), the weights alone, what the
# tokenizer and the file's metadata keep alive each on their own, and the peak (`VmHWM`).
#
#   bench/llm/load_memory.sh [MODEL.gguf ...]     (default: Gemma 3 270M Q4_K_M, SmolLM2 Q4_K_M/Q6_K/Q4_1)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -eq 0 ]; then
    models=$(scripts/fetch-assets.sh models)
    set -- "$(scripts/fetch-assets.sh gemma)" "$models/SmolLM2-135M-Instruct.Q4_K_M.gguf" \
        "$models/SmolLM2-135M-Instruct.Q6_K.gguf" "$models/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
cargo build --release -q -p lepton-llm --example load_memory
for model in "$@"; do
    out=$("${CARGO_TARGET_DIR:-target}"/release/examples/load_memory "$model")
    python3 - "$model" "$out" <<'PY'
import json, os, sys
o = json.loads(sys.argv[2])
mib = lambda b: b / 2**20
f, start = o["file_bytes"], o["rss_start_bytes"]
print(f"{os.path.basename(sys.argv[1])}: file {mib(f):.1f} MiB; process RSS after load {mib(o['rss_loaded_bytes']):.1f} MiB = "
      f"{o['rss_loaded_bytes'] / f:.3f}x (weights {mib(o['weight_bytes']):.1f} MiB = {o['weight_bytes'] / f:.3f}x; "
      f"tokenizer alone {mib(o['rss_tokenizer_bytes'] - start):.1f} MiB, metadata alone {mib(o['rss_metadata_bytes'] - start):.1f} MiB, "
      f"process before loading {mib(start):.1f} MiB); peak {mib(o['hwm_bytes']):.1f} MiB = {o['hwm_bytes'] / f:.2f}x")
PY
done
