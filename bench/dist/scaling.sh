#!/usr/bin/env bash
# Acceptance 2 on this machine: 2 ranks x 1 thread against 1 rank x 2 threads (images/s over the
# logged windows, gradient all-reduce ms per step from the per-step timeline), for the MNIST MLP
# 784-256-256-10 (0.27 M parameters, 1 MiB of gradients) and a wide MLP 784-4096-2048-10 (11.6 M
# parameters, 44 MiB of gradients: the size the issue's reference all-reduce used); the 2-rank
# runs over shared memory (Open MPI's vader BTL) and over TCP loopback (--mca btl tcp,self).
#   bench/dist/scaling.sh [path/to/lepton]   (built with --features distributed)
set -euo pipefail
LEPTON=$(realpath "${1:-$(dirname "$0")/../../target/release/lepton}")
cd "$(dirname "$0")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mk() { # mk NAME WIDTH1 WIDTH2
  sed 's/^OPTIMIZER$/kind = "sgd"\nlr = 0.01\nmomentum = 0.9/; s|\.\./\.\./data/mnist|'"$PWD"'/../../data/mnist|; s/out-features = 256/out-features = W/' \
    mnist-mlp.toml | awk -v a="$2" -v b="$3" '/out-features = W/{n++; sub("W", n==1?a:b)} {print}' > "$out/$1.toml"
}
mk small 256 256
mk wide 4096 2048
speed() { # mean samples/s of the step lines after the first window (warm-up)
  python3 - "$1" <<'PY'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
s = [x["samples_per_sec"] for x in v if x.get("kind") == "step"][1:]
print(f"{sum(s) / len(s):8.0f}")
PY
}
reduce_ms() { # median ms from "backward returned" to "gradients written back", and its all-reduce part
  python3 - "$1" <<'PY'
import json, statistics, sys
v = [json.loads(l) for l in open(sys.argv[1])][5:]
print(f"sync {statistics.median(x['done_ms'] for x in v):7.2f} ms/step "
      f"(reduce {statistics.median(x['reduced_ms'] for x in v):7.2f} ms, "
      f"{v[0]['buckets']} buckets, {v[0]['elements'] * 4 / 2**20:.1f} MiB)")
PY
}
for m in small wide; do
  "$LEPTON" --quiet --threads 2 train "$out/$m.toml" --out "$out/$m-1x2" --no-export
  echo "$m 1 rank x 2 threads: $(speed "$out/$m-1x2") images/s"
  for btl in vader tcp; do
    mca=(); [ $btl = tcp ] && mca=(--mca btl tcp,self --mca btl_tcp_if_include lo)
    mpirun -np 2 --bind-to core "${mca[@]}" "$LEPTON" --quiet --threads 1 train "$out/$m.toml" \
      --out "$out/$m-2x1-$btl" --no-export --distributed --dist-timeline "$out/$m-$btl-{rank}.jsonl"
    echo "$m 2 ranks x 1 thread ($btl): $(speed "$out/$m-2x1-$btl") images/s, $(reduce_ms "$out/$m-$btl-0.jsonl")"
  done
done
cp "$out/wide-vader-0.jsonl" timeline-wide-rank0.jsonl
