#!/usr/bin/env bash
# Issue 4, acceptance 5: under saturation the server sheds load with fast 503s (not timeouts), and
# it recovers when the load drops. Serves the MNIST CNN with a deliberately small queue (16
# samples, one worker, no batching), drives it with far more connections than it can serve
# (wrk -c 256 for DURATION s, default 15), probes it with curl during the overload, then checks
# that a single request right after succeeds. Fails when no request was shed, when any request
# timed out (wrk socket timeouts, 2 s), when shed requests are slow, or when it does not recover.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${DURATION:-15}
port=${PORT:-18484}
photon=$(bench/serve/photon.sh)
work=$(mktemp -d /tmp/lepton-sat.XXXXXX)
server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
img=$PWD/examples/images/mnist-test-7.png
url=http://127.0.0.1:$port/v1/models/mnist/predict
printf '[batching]\nmax-batch-size = 1\nqueue-capacity = 16\nmin-workers = 1\nmax-workers = 1\n' >"$work/serve.toml"
target/release/lepton serve "$photon" --config "$work/serve.toml" --listen "127.0.0.1:$port" 2>/dev/null &
server=$!
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.1
done
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "image/png"\nlocal f = io.open("%s", "rb")\nwrk.body = f:read("*a")\nf:close()\n' "$img" >"$work/post.lua"

wrk -t1 -c256 -d"${dur}s" --latency --timeout 2s -s "$work/post.lua" "$url" >"$work/wrk.out" &
load=$!
sleep 3
: >"$work/probes"
for _ in $(seq 1 20); do
    curl -s -o /dev/null -D "$work/h" -w '%{http_code} %{time_total}\n' -H 'content-type: image/png' \
        --data-binary "@$img" "$url" >>"$work/probes"
    grep -qi '^retry-after' "$work/h" && echo retry-after >>"$work/probes"
    sleep 0.2
done
wait "$load"
cat "$work/wrk.out"
sleep 1
after=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H 'content-type: image/png' --data-binary "@$img" "$url")
rejected=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^lepton_rejected_total/ { s += $2 } END { print s + 0 }')

non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk.out")
timeouts=$(awk '/Socket errors/ { gsub(",", ""); print $NF }' "$work/wrk.out")
p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.out")
probe503=$(awk '$1 == 503' "$work/probes" | wc -l)
probe_max=$(awk '$1 == 503 && $2 > m { m = $2 } END { printf "%.3f", m + 0 }' "$work/probes")
with_retry=$(grep -c retry-after "$work/probes" || true)
echo "during overload: ${non2xx:-0} shed responses (server counted $rejected rejected), ${timeouts:-0} timeouts, overall p99 $p99"
echo "curl probes during overload: $(awk '{ print $1 }' "$work/probes" | grep -v retry | sort | uniq -c | tr '\n' ' ')" \
    "slowest 503 ${probe_max}s, $with_retry with Retry-After"
echo "after the load: $after (status, seconds)"
fail=0
((${non2xx:-0} > 0)) || { echo "FAIL: nothing was shed"; fail=1; }
((${timeouts:-0} == 0)) || { echo "FAIL: $timeouts requests timed out"; fail=1; }
awk -v m="$probe_max" 'BEGIN { exit !(m < 0.5) }' || { echo "FAIL: a 503 took ${probe_max}s"; fail=1; }
[[ ${after%% *} == 200 ]] || { echo "FAIL: no recovery after the load"; fail=1; }
[[ $fail == 0 ]] && echo "saturation: OK"
exit $fail
