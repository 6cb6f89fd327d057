#!/usr/bin/env bash
# Our server against our server: two `lepton` binaries (OLD, NEW) serving the same photon with
# batching on (bench/serve/load.sh's settings: each binary's default batch size unless BATCH is
# set), the same wrk load (64 connections, PNG and JSON bodies), alternating OLD/NEW for ROUNDS
# rounds (the order swapped every round), then the median req/s, p99 and server CPU time per
# request of each, and the ratio NEW/OLD per body. The CPU time per request (user + system of the
# server process over the run / requests answered) moves much less than req/s when other work
# shares the cores. Run it under the CPU lock on a shared machine; one round of both binaries and
# both bodies takes about 4 x (DURATION + 3) seconds.
#
#   flock /tmp/lepton-cpu.lock env OLD=/tmp/lepton-old NEW=target/release/lepton \
#       PHOTON=/tmp/mnist.photon bench/serve/ab.sh
#   ROUNDS=3 DURATION=10 CONNS=64 BODIES="png json" BATCH=16 MAX_WAIT_US=2000 ...
#   OLD_ENV="TOKIO_WORKER_THREADS=1" NEW_ENV=... # environment of one side (settings A/B, same binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OLD:?OLD=path of the baseline lepton binary}" "${NEW:?NEW=path of the lepton binary under test}"
rounds=${ROUNDS:-3}
dur=${DURATION:-10}
conns=${CONNS:-64}
port=${PORT:-18482}
bodies=${BODIES:-png json}
command -v wrk >/dev/null || { echo "ab.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
photon=$(SKIP_BUILD=1 bench/serve/photon.sh)
py=$(bench/pyenv.sh numpy pillow)/bin/python
work=$(mktemp -d /tmp/lepton-ab.XXXXXX)
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
"$py" - "$img" >"$work/body.json" <<'PY'
import json, sys
import numpy as np
from PIL import Image
a = np.asarray(Image.open(sys.argv[1]).convert("L"), dtype=np.uint8).reshape(-1)
print(json.dumps({"inputs": [a.tolist()]}, separators=(",", ":")))
PY
for body in png json; do
    if [[ $body == png ]]; then file=$PWD/$img ctype=image/png; else file=$work/body.json ctype=application/json; fi
    cat >"$work/$body.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "$ctype"
local f = io.open("$file", "rb")
wrk.body = f:read("*a")
f:close()
LUA
done
# Each binary's own default batch size unless BATCH is given.
{ echo '[batching]'; [[ -n ${BATCH:-} ]] && echo "max-batch-size = $BATCH"; echo "max-wait-us = ${MAX_WAIT_US:-2000}"; } >"$work/serve.toml"
url=http://127.0.0.1:$port/v1/models/mnist/predict
# The photon is served as "mnist" whatever its file name.
ln -s "$(realpath "$photon")" "$work/mnist.photon"

# One server run of binary $2 (label $1): every body, one wrk run each; rows "label body rps p99".
run_one() {
    local label=$1 bin=$2 vars=$3
    # shellcheck disable=SC2086 # word splitting of the NAME=value list is intended
    env $vars "$bin" serve "$work/mnist.photon" --config "$work/serve.toml" --listen "127.0.0.1:$port" \
        2>"$work/server.log" >/dev/null &
    server=$!
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
        kill -0 "$server" 2>/dev/null || { echo "server died:"; cat "$work/server.log"; exit 1; }
        sleep 0.1
    done
    for body in $bodies; do
        wrk -d2s -t1 -c8 -s "$work/$body.lua" "$url" >/dev/null # warm-up
        local t0 t1
        t0=$(awk '{ print $14 + $15 }' "/proc/$server/stat") # utime + stime, clock ticks
        wrk -t1 -c"$conns" -d"${dur}s" --latency --timeout 10s -s "$work/$body.lua" "$url" >"$work/wrk.out"
        t1=$(awk '{ print $14 + $15 }' "/proc/$server/stat")
        awk -v label="$label" -v body="$body" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
            function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
            $1 == "99%" { p99 = ms($2) } /Requests\/sec/ { rps = $2 } / requests in / { n = $1 }
            /Non-2xx/ { err += $NF } /Socket errors/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
            END { printf "%s %s %.0f %.2f %d %.1f\n", label, body, rps, p99, err, 1e6 * ticks / hz / n }' "$work/wrk.out" | tee -a "$work/rows"
    done
    stop_server
}

echo "OLD=$OLD ${OLD_ENV:-} NEW=$NEW ${NEW_ENV:-} photon=$photon; $rounds rounds, wrk -t1 -c$conns -d${dur}s, batching ${BATCH:-default}/${MAX_WAIT_US:-2000}us"
echo "label body req/s p99_ms errors server_cpu_us_per_request"
: >"$work/rows"
for r in $(seq 1 "$rounds"); do
    if ((r % 2)); then run_one old "$OLD" "${OLD_ENV:-}"; run_one new "$NEW" "${NEW_ENV:-}"; else run_one new "$NEW" "${NEW_ENV:-}"; run_one old "$OLD" "${OLD_ENV:-}"; fi
done
echo
for body in $bodies; do
    awk -v body="$body" '
        function median(a, n,   i, j, t) {
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $2 == body && $1 == "old" { o[++no] = $3; op[no] = $4; oe += $5; oc[no] = $6 }
        $2 == body && $1 == "new" { n[++nn] = $3; np[nn] = $4; ne += $5; nc[nn] = $6 }
        END {
            mo = median(o, no); mn = median(n, nn); po = median(op, no); pn = median(np, nn)
            co = median(oc, no); cn = median(nc, nn)
            printf "%s: old %.0f req/s (p99 %.2f ms, %.0f us CPU/req), new %.0f req/s (p99 %.2f ms, %.0f us CPU/req): %.3fx throughput, %.3fx CPU per request, medians of %d; errors old %d new %d\n",
                body, mo, po, co, mn, pn, cn, mn / mo, cn / co, nn, oe, ne
        }' "$work/rows"
done
