#!/usr/bin/env bash
# Dynamic batching of /v1/embeddings: `lepton serve` on all-MiniLM-L6-v2 with batching off
# (`llm.embedding-batch-texts = 1`: each request is its own forward call) and on (the default, 64),
# one after the other in one run, under the same load: CLIENTS concurrent clients each sending
# single-sentence requests for SECONDS. Prints requests/s, p50/p99 latency, the mean texts per
# forward call (from /metrics) and the ratio.
#
#   bench/llm/embeddings_concurrent.sh        # CLIENTS=16 SECONDS_PER_RUN=10 THREADS=2 (LEPTON_BIN: no build)
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${CLIENTS:-16}
seconds=${SECONDS_PER_RUN:-10}
threads=${THREADS:-2}
model=$(scripts/fetch-assets.sh models)/all-MiniLM-L6-v2
if [ -z "${LEPTON_BIN:-}" ]; then
    nice -n 5 cargo build --release -q -p lepton-cli
fi
bin=${LEPTON_BIN:-${CARGO_TARGET_DIR:-target}/release/lepton}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for texts in 1 64; do
    printf '[llm]\nembedding-batch-texts = %s\n' "$texts" >"$work/serve.toml"
    "$bin" --threads "$threads" serve "$model" --listen "127.0.0.1:$port" --config "$work/serve.toml" \
        2>"$work/serve-$texts.log" &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    python3 - "$port" "$clients" "$seconds" "$texts" <<'PY' | tee -a "$work/results.txt"
import json, statistics, sys, threading, time, urllib.request
port, clients, seconds, texts = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
url = f"http://127.0.0.1:{port}/v1/embeddings"
words = "the quick brown fox jumps over a lazy dog while seven curious cats watch from the old wall".split()
lat, errors, lock = [], [0], threading.Lock()
def client(k):
    i = 0
    end = time.time() + seconds
    while time.time() < end:
        text = " ".join(words[(k + i + j) % len(words)] for j in range(8 + (i % 9)))
        body = json.dumps({"model": "all-MiniLM-L6-v2", "input": text}).encode()
        req = urllib.request.Request(url, body, {"content-type": "application/json"})
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                assert len(json.load(r)["data"][0]["embedding"]) == 384
            with lock:
                lat.append(time.perf_counter() - t)
        except Exception:
            with lock:
                errors[0] += 1
        i += 1
ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
t0 = time.time()
[t.start() for t in ts]
[t.join() for t in ts]
wall = time.time() - t0
m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
def metric(name):
    return sum(float(l.split()[-1]) for l in m.splitlines() if l.startswith(name + "{"))
calls = metric("lepton_llm_embedding_batch_texts_count")
texts_sum = metric("lepton_llm_embedding_batch_texts_sum")
lat.sort()
print(json.dumps({"embedding_batch_texts": int(texts), "clients": clients, "requests": len(lat),
    "errors": errors[0], "requests_per_s": round(len(lat) / wall, 1),
    "p50_ms": round(1000 * statistics.median(lat), 2), "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 2),
    "texts_per_forward": round(texts_sum / max(calls, 1), 2)}))
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
python3 - "$work/results.txt" <<'PY'
import json, sys
off, on = [json.loads(l) for l in open(sys.argv[1])]
print(f"batching on / off: {on['requests_per_s'] / off['requests_per_s']:.2f}x requests/s, "
      f"p99 {on['p99_ms']} ms vs {off['p99_ms']} ms, {on['texts_per_forward']} texts per forward call")
PY
