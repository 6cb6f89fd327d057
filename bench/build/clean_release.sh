#!/usr/bin/env bash
# Issue 19, acceptance 4: a clean `cargo build --release -p lepton-cli` on this machine, timed, with
# cargo's `--timings` report kept in bench/build/ (the HTML report and a text summary of the
# slowest units). The build goes into a fresh target directory so nothing is reused; the registry
# sources must already be downloaded (`cargo fetch`), so the time is compile time only.
#
#   bench/build/clean_release.sh          # BUILD_JOBS=$(nproc)
#   TARGET=dir bench/build/clean_release.sh   # build into dir (its release/ removed first) and keep it
#
# Run it on an idle machine: it takes the CPU lock the benches share.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${BUILD_JOBS:-$(nproc)}
if [[ -n ${TARGET:-} ]]; then
    target=$TARGET
    rm -rf "$target/release"
else
    target=$(mktemp -d)
    trap 'rm -rf "$target"' EXIT
fi
cargo fetch -q
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), jobs $jobs, rustc $(rustc --version | cut -d' ' -f2)"
start=$(date +%s.%N)
flock /tmp/lepton-cpu.lock env CARGO_TARGET_DIR="$target" cargo build --release -p lepton-cli --timings -j "$jobs" 2>&1 | tail -2
end=$(date +%s.%N)
report=$(ls -t "$target"/cargo-timings/cargo-timing-*.html | head -1)
cp "$report" bench/build/cargo-timing.html
python3 - "$report" > bench/build/timing-summary.txt <<'PY'
import json, re, sys
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);", open(sys.argv[1]).read(), re.S).group(1))
units.sort(key=lambda u: -u["duration"])
print(f"{len(units)} units, {sum(u['duration'] for u in units):.0f} unit-seconds; the 20 slowest:")
for u in units[:20]:
    print(f"{u['duration']:7.1f} s  {u['name']} {u['version']} {u['target']}".rstrip())
PY
cat bench/build/timing-summary.txt
awk -v s="$start" -v e="$end" 'BEGIN { t = e - s; printf "clean release build: %.0f s (%.1f min; target <= 5 min: %s)\n", t, t / 60, (t <= 300 ? "met" : "not met") }'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
