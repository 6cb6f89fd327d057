#!/usr/bin/env bash
# Issue 4, acceptance 3: soak. Serve the MNIST CNN, measure the maximum rate (wrk, 10 s), then hold
# a constant ~70 % of it (hey -q: a fixed rate per connection) for MINUTES (default 10), sampling
# the server's resident memory from /proc every 10 s. Fails when any request errs (non-2xx or
# transport error) or when resident memory grows by 5 % or more from the end of a one-minute
# warm-up (the first minute of the soak) to the end.
#
#   scripts/soak.sh                      # 10 minutes
#   MINUTES=2 scripts/soak.sh            # shorter
#   MAX_RPS=3000 scripts/soak.sh         # skip the max-rate measurement
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${MINUTES:-10}
fraction=${FRACTION:-0.7}
conns=${CONNS:-32}
port=${PORT:-18482}
for t in wrk hey; do
    command -v $t >/dev/null || { echo "soak.sh: needs $t (apt-get install $t)" >&2; exit 1; }
done

photon=$(bench/serve/photon.sh)
work=$(mktemp -d /tmp/lepton-soak.XXXXXX)
server=
sampler=
cleanup() {
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
img=$PWD/examples/images/mnist-test-7.png
url=http://127.0.0.1:$port/v1/models/mnist/predict

target/release/lepton serve "$photon" --listen "127.0.0.1:$port" 2>/dev/null &
server=$!
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.1
done

if [[ -z ${MAX_RPS:-} ]]; then
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "image/png"\nlocal f = io.open("%s", "rb")\nwrk.body = f:read("*a")\nf:close()\n' "$img" >"$work/post.lua"
    MAX_RPS=$(wrk -t1 -c64 -d10s -s "$work/post.lua" "$url" | awk '/Requests\/sec/ { printf "%d", $2 }')
fi
rate=$(awk -v m="$MAX_RPS" -v f="$fraction" 'BEGIN { printf "%d", m * f }')
per_conn=$(awk -v r="$rate" -v c="$conns" 'BEGIN { printf "%.2f", r / c }')
echo "max ${MAX_RPS} req/s -> soak at ${rate} req/s (${conns} connections x ${per_conn}) for ${minutes} min"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }
(
    start=$SECONDS
    while sleep 10; do echo "$((SECONDS - start)) $(rss_kib)"; done
) >"$work/rss" &
sampler=$!

# One hey run per minute: hey reports at most 1,000,000 results per run, so a single long run
# would silently drop the status codes of the rest.
: >"$work/hey.out"
for m in $(seq 1 "$minutes"); do
    hey -z 60s -c "$conns" -q "$per_conn" -m POST -T image/png -D "$img" "$url" >"$work/hey.min" 2>&1 || true
    awk -v m="$m" '/Requests\/sec/ { printf "  minute %2d: %.0f req/s\n", m, $2 }' "$work/hey.min"
    cat "$work/hey.min" >>"$work/hey.out"
done
kill "$sampler" 2>/dev/null; sampler=
final=$(rss_kib)
echo "$((minutes * 60)) $final" >>"$work/rss"

ok=$(awk '/\[200\]/ && /responses/ { s += $2 } END { print s + 0 }' "$work/hey.out")
slowest=$(awk '/Slowest:/ && $2 > m { m = $2 } END { print m + 0 }' "$work/hey.out")
bad_status=$(awk '/^  \[[0-9]+\].*responses/ && $1 != "[200]" { s += $2 } END { print s + 0 }' "$work/hey.out")
transport=$(awk '/Error distribution/ { on = 1; next } /Summary/ { on = 0 } on && /^  \[[0-9]+\]/ { s += substr($1, 2) } END { print s + 0 }' "$work/hey.out")
awk 'NR == 1 || NR % 6 == 0 { printf "  t=%4ds RSS %7.1f MiB\n", $1, $2 / 1024 }' "$work/rss"
base=$(awk '$1 >= 60 { print $2; exit }' "$work/rss")
[[ -n $base ]] || base=$(head -1 "$work/rss" | cut -d' ' -f2)
growth=$(awk -v b="$base" -v f="$final" 'BEGIN { printf "%.2f", 100 * (f - b) / b }')
achieved=$(awk -v n="${ok:-0}" -v s="$((minutes * 60))" 'BEGIN { printf "%.0f", n / s }')
echo "soak: ${ok:-0} OK at ~${achieved} req/s (slowest ${slowest} s), ${bad_status} non-200, ${transport} transport errors;" \
    "RSS $((base / 1024)) MiB after warm-up -> $((final / 1024)) MiB at the end (${growth} %)"
fail=0
((bad_status == 0 && transport == 0)) || { echo "FAIL: errors during the soak"; fail=1; }
awk -v g="$growth" 'BEGIN { exit !(g < 5) }' || { echo "FAIL: resident memory grew ${growth} % (limit 5 %)"; fail=1; }
((${ok:-0} > 0)) || { echo "FAIL: no successful requests"; fail=1; }
[[ $fail == 0 ]] && echo "soak: OK"
exit $fail
