#!/usr/bin/env bash
# Issue 4, acceptance 2: throughput and latency of the MNIST CNN served by `lepton serve` (batching
# off and on) side by side with the reference Python server (FastAPI + uvicorn + PyTorch CPU, same
# photon weights, best of 1 and 2 workers), with the same load generator (wrk, Debian) and the same
# requests: POST of a real 28x28 MNIST test PNG, and the same image as a JSON body of raw pixels
# (`{"inputs": [[784 values 0-255]]}`, the most common client format; issue 19). Prints req/s, p50,
# p99, the ratio per body kind, and the fraction of the compute cap (forward FLOPs per image x req/s
# / measured matmul peak).
#
#   DURATION=60 bench/serve/load.sh        # seconds per run (default 60)
#   CONNS=64 WRK_THREADS=1 ...             # wrk connections and threads
#   ONLY=ours|reference ...                # run one side only (development)
#   BODIES="png json" ...                  # which request bodies (default both)
#   BATCH=32 MAX_WAIT_US=2000 ...          # batching on: batch size (default: the server's), wait
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${DURATION:-60}
conns=${CONNS:-64}
wrk_threads=${WRK_THREADS:-1}
port=${PORT:-18481}
command -v wrk >/dev/null || { echo "load.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

photon=$(bench/serve/photon.sh)
# uvloop + httptools: what `uvicorn[standard]` uses; without them uvicorn serves about half as fast.
py=$(bench/pyenv.sh torch numpy pillow fastapi uvicorn uvloop httptools)/bin/python
lepton=${LEPTON_BIN:-${CARGO_TARGET_DIR:-target}/release/lepton}
work=$(mktemp -d /tmp/lepton-load.XXXXXX)
server=
stop_server() {
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT

img=examples/images/mnist-test-7.png
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local f = io.open("$PWD/$img", "rb")
wrk.body = f:read("*a")
f:close()
LUA

# The same image as raw pixels in JSON.
"$py" - "$img" >"$work/body.json" <<'PY'
import json, sys
import numpy as np
from PIL import Image
a = np.asarray(Image.open(sys.argv[1]).convert("L"), dtype=np.uint8).reshape(-1)
print(json.dumps({"inputs": [a.tolist()]}, separators=(",", ":")))
PY
cat >"$work/post-json.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "rb")
wrk.body = f:read("*a")
f:close()
LUA
bodies=${BODIES:-png json}
lua_of() { if [[ $1 == png ]]; then echo "$work/post.lua"; else echo "$work/post-json.lua"; fi; }

wait_ready() { # url
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$server" 2>/dev/null || { echo "server died:"; cat "$work/server.log"; exit 1; }
        sleep 0.1
    done
    echo "server not ready: $1" >&2
    exit 1
}

# run_wrk NAME URL [lua]: one wrk run; appends "NAME rps p50_ms p99_ms errors" to results.
run_wrk() {
    local name=$1 url=$2 script=${3:-}
    local args=(-t"$wrk_threads" -c"$conns" -d"${dur}s" --latency --timeout 10s)
    [[ -n $script ]] && args+=(-s "$script")
    wrk -d2s -t1 -c8 ${script:+-s "$script"} "$url" >/dev/null # warm-up
    wrk "${args[@]}" "$url" >"$work/wrk.out"
    awk -v name="$name" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
        /Requests\/sec/ { rps = $2 } /Non-2xx/ { err += $NF } /Socket errors/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        END { printf "%s|%.0f|%.2f|%.2f|%d\n", name, rps, p50, p99, err }' "$work/wrk.out" >"$work/row"
    cat "$work/row" >>"$work/results"
    awk -F'|' '{ printf "%-38s %10s %9s %9s %7s\n", $1, $2, $3, $4, $5 }' "$work/row"
}

echo "photon: $photon"
flops=$("$py" bench/serve/reference_server.py --flops "$photon")
peak=$("$py" - <<'PY'
import time, torch
torch.set_num_threads(2)
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
for _ in range(5): a @ b
best = 0
for _ in range(5):
    t = time.perf_counter()
    for _ in range(20): a @ b
    best = max(best, 20 * 2 * 1024**3 / (time.perf_counter() - t))
print(f"{best:.0f}")
PY
)
echo "forward: $flops FLOP per image; matmul peak (torch, 2 threads, 1024^3 f32): $((peak / 1000000000)) GFLOP/s"
echo "compute cap: $((peak / flops)) img/s"
echo "wrk -t$wrk_threads -c$conns -d${dur}s, POST $img ($(stat -c %s $img) bytes)"
printf "%-38s %10s %9s %9s %7s\n" run "req/s" "p50 ms" "p99 ms" errors
: >"$work/results"

if [[ ${ONLY:-} != reference ]]; then
    for mode in off on; do
        # Batching on: the server's default batch size unless BATCH is given.
        if [[ $mode == off ]]; then bs=1; else bs=${BATCH:-}; fi
        { echo '[batching]'; [[ -n $bs ]] && echo "max-batch-size = $bs"; echo "max-wait-us = ${MAX_WAIT_US:-2000}"; } >"$work/serve.toml"
        "$lepton" serve "$photon" --config "$work/serve.toml" --listen "127.0.0.1:$port" 2>"$work/server.log" >/dev/null &
        server=$!
        wait_ready "http://127.0.0.1:$port/readyz"
        [[ $mode == off ]] && run_wrk "lepton GET /healthz (empty)" "http://127.0.0.1:$port/healthz"
        for body in $bodies; do
            run_wrk "lepton predict $body, batching $mode" "http://127.0.0.1:$port/v1/models/mnist/predict" "$(lua_of "$body")"
        done
        # Where the time went, from the server's own metrics.
        curl -fsS "http://127.0.0.1:$port/metrics" | awk -v dur="$dur" '
            /^lepton_batch_size_sum/ { bs = $2 } /^lepton_batch_size_count/ { bc = $2 }
            /^lepton_inference_duration_seconds_sum/ { is = $2 }
            /^lepton_request_duration_seconds_sum\{model="mnist"/ { rs += $2 } /^lepton_request_duration_seconds_count\{model="mnist"/ { rc += $2 }
            /^lepton_rejected_total/ { rej += $2 }
            END { if (bc) printf "    server: %d requests, mean batch %.1f, forward %.2f ms per batch (%.3f ms per image), %.2f cores busy in forward; mean request %.2f ms; %d shed\n", rc, bs / bc, 1e3 * is / bc, 1e3 * is / bs, is / (dur + 2), 1e3 * rs / rc, rej }'

        stop_server
    done
fi
if [[ ${ONLY:-} != ours ]]; then
    for workers in 1 2; do
        LEPTON_PHOTON=$photon TORCH_THREADS=${TORCH_THREADS:-1} "$py" -m uvicorn --app-dir bench/serve \
            reference_server:app --workers "$workers" --port "$port" --log-level warning 2>"$work/server.log" &
        server=$!
        wait_ready "http://127.0.0.1:$port/empty"
        run_wrk "fastapi GET /empty, $workers worker(s)" "http://127.0.0.1:$port/empty"
        for body in $bodies; do
            run_wrk "fastapi+torch predict $body, $workers worker(s)" "http://127.0.0.1:$port/v1/models/mnist/predict" "$(lua_of "$body")"
        done
        stop_server
    done
fi

echo
for body in $bodies; do
    echo "$body bodies:"
    awk -F'|' -v flops="$flops" -v peak="$peak" -v body="$body" '
        $1 ~ "^lepton predict " body "," && $2 + 0 > ours { ours = $2; ours_p99 = $4 }
        $1 ~ "^fastapi\\+torch predict " body "," && $2 + 0 > ref { ref = $2; ref_p99 = $4 }
        END {
            if (ours) printf "  best lepton: %.0f req/s (p99 %.2f ms); %.1f%% of the compute cap\n", ours, ours_p99, 100 * ours * flops / peak
            if (ref) printf "  best reference: %.0f req/s (p99 %.2f ms); %.1f%% of the compute cap\n", ref, ref_p99, 100 * ref * flops / peak
            if (ours && ref) printf "  ratio lepton / reference: %.2fx throughput, p99 %.2f vs %.2f ms\n", ours / ref, ours_p99, ref_p99
        }' "$work/results"
done
