#!/usr/bin/env bash
# Times the dashboard's run listing (GET /api/runs, what every open page polls every 5 s) over N copies
# of one run directory: the first request reads every run; later ones only check the files' sizes and
# modification times (lepton-track's listing cache), and a run whose metrics.jsonl grew is read again.
#
#   bench/track/list.sh RUN_DIR [N]        (PROFILE=debug|release, default release)
set -euo pipefail
run=${1:?usage: bench/track/list.sh RUN_DIR [N]}
n=${2:-200}
bin=${CARGO_TARGET_DIR:-target}/${PROFILE:-release}/lepton
port=${PORT:-18606}
tmp=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
for i in $(seq "$n"); do
    mkdir "$tmp/run-$i"
    cp "$run"/spec.toml "$run"/metrics.jsonl "$tmp/run-$i"/
    for f in best.json report.json model.photon best.safetensors; do
        [[ -f $run/$f ]] && cp "$run/$f" "$tmp/run-$i"/
    done
done
"$bin" ui "$tmp" --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/runs" -o /dev/null && break; sleep 0.1; done
kill "$pid"; wait "$pid" 2>/dev/null || true
# A fresh server: the first listing is cold.
"$bin" ui "$tmp" --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/" -o /dev/null && break; sleep 0.1; done
t() { curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/api/runs"; }
bytes=$(du -cb "$tmp"/run-*/metrics.jsonl | tail -1 | cut -f1)
echo "runs: $n, metrics.jsonl in all: $bytes bytes, binary: $bin"
echo "first listing (reads every run):   $(t) s"
warm=()
for _ in 1 2 3 4 5; do warm+=("$(t)"); done
echo "next 5 listings (cache):            ${warm[*]} s"
tail -n 1 "$tmp/run-1/metrics.jsonl" >> "$tmp/run-1/metrics.jsonl"
echo "after one run's metrics.jsonl grew: $(t) s"
