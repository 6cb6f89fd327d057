#!/usr/bin/env bash
# Issue 18: gradient all-reduce overlapped with the backward pass, on against off.
# 2 ranks x 1 thread; the MNIST CNN (examples/mnist-cnn.toml on 6000 images, 1 epoch, 42 steps:
# 0.42 M parameters, 1.6 MiB of gradients) and the wide MLP 784-4096-2048-10 (3000 images, 42
# steps: 11.6 M parameters, 44 MiB); over shared memory and over TCP loopback; ROUNDS rounds (default 3) alternating
# off / on. Per run: the median step period and the median sync time exposed on the training
# thread (packing + waiting for the all-reduce + writing back; with overlap, what the backward
# pass did not hide), over the steps after 5 warm-up steps, from --dist-timeline; reported: the
# median over the rounds. Then the timeline of one overlapped step of each model (JSON copied to
# bench/dist/timeline-overlap-*.jsonl).
#   flock /tmp/lepton-cpu.lock bench/dist/overlap.sh [path/to/lepton] [ROUNDS]
#   (lepton built with --features distributed; NETNS=1 and root: also the wide MLP with the two
#   ranks in separate network namespaces over TCP, through bench/dist/netns.sh; NETNS=only: that
#   alone)
set -euo pipefail
LEPTON=$(realpath "${1:-$(dirname "$0")/../../target/release/lepton}")
ROUNDS=${2:-3}
cd "$(dirname "$0")"
here=$PWD
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The CNN: 6000 images, 1 epoch, batch 128 (42 steps), no augmentation (same work either way).
sed "s|\.\./data/mnist|$here/../../data/mnist|; s/^validation-split = 0.1$/validation-split = 0.1\nlimit = 6000/; s/^epochs = 15$/epochs = 1/" \
  ../../examples/mnist-cnn.toml | awk '/^\[preprocess.augment\]/{skip=1; next} /^\[/{skip=0} !skip' > "$out/cnn.toml"
sed 's/^OPTIMIZER$/kind = "sgd"\nlr = 0.01\nmomentum = 0.9/; s|\.\./\.\./data/mnist|'"$here"'/../../data/mnist|; s/^limit = 7112$/limit = 3000/' \
  mnist-mlp.toml | awk '/out-features = 256/{n++; sub("256", n==1?"4096":"2048")} {print}' > "$out/wide.toml"
stats() { # stats TIMELINE -> "step_ms exposed_ms"
  python3 - "$1" <<'PY'
import json, statistics, sys
v = [json.loads(l) for l in open(sys.argv[1])][5:]
print(statistics.median(x["step_ms"] for x in v), statistics.median(x["exposed_ms"] for x in v))
PY
}
run() { # run MODEL TRANSPORT OVERLAP ROUND
  local mca=()
  [ "$2" = tcp ] && mca=(--mca btl tcp,self --mca btl_tcp_if_include lo)
  local t="$out/$1-$2-$3-$4"
  mpirun -np 2 --bind-to core "${mca[@]}" "$LEPTON" --quiet --threads 1 train "$out/$1.toml" \
    --out "$t.run" --no-export --distributed --overlap "$3" --dist-timeline "$t-{rank}.jsonl"
  echo "$1 $2 $3 $(stats "$t-0.jsonl")" >> "$out/results"
}
[ "${NETNS:-0}" = only ] || for r in $(seq "$ROUNDS"); do
  for m in cnn wide; do
    for tr in shm tcp; do
      for o in false true; do run $m $tr $o "$r"; done
    done
  done
done
if [ "${NETNS:-0}" != 0 ]; then
  for r in $(seq "$ROUNDS"); do
    for o in false true; do
      t="$out/wide-netns-$o-$r"
      ./netns.sh "$LEPTON" "$LEPTON" --quiet --threads 1 train "$out/wide.toml" --out "$t.run" \
        --no-export --distributed --overlap $o --dist-timeline "$t-{rank}.jsonl" > /dev/null
      echo "wide netns $o $(stats "$t-0.jsonl")" >> "$out/results"
    done
  done
fi
python3 - "$out/results" "$ROUNDS" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m, tr, o, step, exposed = line.split()
    runs[(m, tr, o)].append((float(step), float(exposed)))
print(f"2 ranks x 1 thread, medians over {sys.argv[2]} alternating rounds (each: median over the steps)\n")
print("| model | transport | step ms off | step ms on | speed-up | exposed sync ms off | on |")
print("|---|---|---:|---:|---:|---:|---:|")
for (m, tr) in dict.fromkeys((k[0], k[1]) for k in runs):
    off, on = runs[(m, tr, "false")], runs[(m, tr, "true")]
    so, sn = statistics.median(x[0] for x in off), statistics.median(x[0] for x in on)
    eo, en = statistics.median(x[1] for x in off), statistics.median(x[1] for x in on)
    print(f"| {m} | {tr} | {so:.1f} | {sn:.1f} | {so / sn:.3f}x | {eo:.1f} | {en:.1f} |")
PY
[ "${NETNS:-0}" = only ] || for m in cnn wide; do
  echo; echo "### $m, overlap on, shared memory, rank 0"
  python3 timeline.py "$out/$m-shm-true-1-0.jsonl"
  cp "$out/$m-shm-true-1-0.jsonl" "timeline-overlap-$m-rank0.jsonl"
done
