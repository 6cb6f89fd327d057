#!/usr/bin/env bash
# The VNNI tile shapes for the int8 mnist conv2 side by side (issue 16, session 13): is the tile at
# the machine's vpdpbusd limit? Compiles bench/compress/vnni_tile_peak.rs with rustc, runs it under
# the shared lock (~10 s).
#   bench/compress/vnni_tile_peak.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${TMPDIR:-/tmp}/lepton-vnni-tile-peak
rustc -O -C target-cpu=native bench/compress/vnni_tile_peak.rs -o "$bin"
flock /tmp/lepton-cpu.lock "$bin"
