#!/usr/bin/env bash
# Acceptance 3: SIGKILL one rank of a 2-rank job: the job must exit non-zero within 5 s; then
# `--resume` on 2 ranks must reach the same final weights as an uninterrupted 2-rank run.
#   bench/dist/fault.sh [path/to/lepton]   (built with --features distributed)
set -euo pipefail
LEPTON=$(realpath "${1:-$(dirname "$0")/../../target/release/lepton}")
cd "$(dirname "$0")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sed 's/^OPTIMIZER$/kind = "adam"\nlr = 1e-3/; s|\.\./\.\./data/mnist|'"$PWD"'/../../data/mnist|' \
  mnist-mlp.toml > "$out/spec.toml"
run() { # run DIR EXTRA...: a 2-rank job; each rank writes its pid to DIR.pid.RANK
  local dir=$1; shift
  mpirun -np 2 --bind-to none sh -c 'echo $$ > "$0.pid.$OMPI_COMM_WORLD_RANK"; exec "$@"' "$dir" \
    "$LEPTON" --quiet --threads 1 train "$@" --no-export --distributed
}
run "$out/full" "$out/spec.toml" --epochs 3 --out "$out/full"
( run "$out/killed" "$out/spec.toml" --epochs 3 --out "$out/killed" ) &
job=$!
until [ -f "$out/killed/checkpoints/last.json" ]; do sleep 0.1; done
sleep 1
kill -9 "$(cat "$out/killed.pid.1")"
t0=$(date +%s.%N)
set +e; wait "$job"; rc=$?; set -e
t1=$(date +%s.%N)
secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
echo "SIGKILL rank 1: job exit code $rc after $secs s"
[ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0"; exit 1; }
python3 -c "import sys; sys.exit(0 if $secs <= 5 else 1)" || { echo "FAIL: took > 5 s"; exit 1; }
step=$(python3 -c "import json; print(json.load(open('$out/killed/checkpoints/last.json'))['step'])")
echo "resuming from the checkpoint at step $step"
run "$out/killed" --resume "$out/killed"
printf 'resumed vs uninterrupted: '
python3 compare_weights.py "$out/killed" "$out/full" 0
