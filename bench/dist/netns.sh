#!/usr/bin/env bash
# Acceptance 2: two ranks in separate network namespaces talking over TCP (root only).
#
# Two namespaces (lepton-ns0, lepton-ns1), each with a veth whose peer sits on a bridge in the
# root namespace (10.77.0.1/24; the ranks are 10.77.0.10 and .11). mpirun stays in the root
# namespace and starts each rank through `ip netns exec` (an MPMD launch), so:
#   - the ranks' PMIx clients reach mpirun's PMIx server over the bridge: the server is told to
#     accept non-loopback connections on the bridge (PMIX_MCA_ptl_tcp_remote_connections,
#     ..._if_include) -- by default it listens on 127.0.0.1 of the root namespace, which a
#     namespace cannot reach ("OPAL ERROR: Unreachable in file ext3x_client.c");
#   - the ranks' MPI traffic goes rank to rank over TCP on the veths (--mca btl tcp,self,
#     btl_tcp_if_include 10.77.0.0/24): no shared memory, no loopback.
# The namespaces and the bridge are created fresh (idempotent: left-overs of a killed run are
# removed first) and deleted on exit.
#   bench/dist/netns.sh [path/to/lepton] [command...]
# Without a command: the 44 MiB all-reduce timeline and images/s of the wide MLP of scaling.sh
# (784-4096-2048-10, 2 ranks x 1 thread, the same spec), then the same on shared memory for
# reference. With a command: run it on both ranks instead (e.g. a plain MPI program).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "netns.sh: network namespaces need root" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
LEPTON=$(realpath -m "${1:-$root/target/release/lepton}")
shift || true
BR=lepton-br0 NET=10.77.0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cleanup() {
  for i in 0 1; do
    ip netns del lepton-ns$i 2>/dev/null || true
    ip link del lepton-v$i 2>/dev/null || true
  done
  ip link del $BR 2>/dev/null || true
}
out=$(mktemp -d)
cleanup
trap 'cleanup; rm -rf "$out"' EXIT
ip link add $BR type bridge
ip addr add $NET.1/24 dev $BR
ip link set $BR up
for i in 0 1; do
  ip netns add lepton-ns$i
  ip link add lepton-v$i type veth peer name eth0 netns lepton-ns$i
  ip link set lepton-v$i master $BR up
  ip -n lepton-ns$i addr add $NET.1$i/24 dev eth0
  ip -n lepton-ns$i link set eth0 up
  ip -n lepton-ns$i link set lo up
done
ip netns exec lepton-ns0 bash -c "exec 3<>/dev/tcp/$NET.11/9" 2>/dev/null || true  # (no ping here) ARP warms up
# mpirun's PMIx server: listen on the bridge too. The ranks: TCP between the namespaces only.
export PMIX_MCA_ptl_tcp_remote_connections=1 PMIX_MCA_ptl_tcp_if_include=$NET.0/24
mca=(--mca btl tcp,self --mca btl_tcp_if_include $NET.0/24 --mca oob_tcp_if_include $NET.0/24)
ranks() { # ranks COMMAND... : the command on rank 0 in lepton-ns0 and rank 1 in lepton-ns1
  mpirun "${mca[@]}" -np 1 ip netns exec lepton-ns0 "$@" : -np 1 ip netns exec lepton-ns1 "$@"
}
if [ $# -gt 0 ]; then
  ranks "$@"
  exit
fi
sed 's/^OPTIMIZER$/kind = "sgd"\nlr = 0.01\nmomentum = 0.9/; s|\.\./\.\./data/mnist|'"$root"'/data/mnist|' \
  "$root/bench/dist/mnist-mlp.toml" | awk '/out-features = 256/{n++; sub("256", n==1?"4096":"2048")} {print}' \
  > "$out/wide.toml"
report() { # report RUN TIMELINE LABEL
  python3 - "$@" <<'PY'
import json, statistics, sys
run, timeline, label = sys.argv[1:]
s = [x["samples_per_sec"] for x in map(json.loads, open(run + "/metrics.jsonl")) if x.get("kind") == "step"][1:]
v = [json.loads(l) for l in open(timeline)][5:]
med = lambda k: statistics.median(x[k] for x in v)
print(f"{label}: {sum(s) / len(s):.0f} images/s; per step: all-reduce {med('reduced_ms'):.1f} ms, "
      f"sync {med('done_ms'):.1f} ms ({v[0]['buckets']} buckets, {v[0]['elements'] * 4 / 2**20:.1f} MiB, "
      f"median of {len(v)} steps)")
PY
}
ranks "$LEPTON" --quiet --threads 1 train "$out/wide.toml" --out "$out/netns" --no-export \
  --distributed --dist-timeline "$out/netns-{rank}.jsonl"
report "$out/netns" "$out/netns-0.jsonl" "2 ranks x 1 thread, separate namespaces, TCP over veth"
mpirun -np 2 "$LEPTON" --quiet --threads 1 train "$out/wide.toml" --out "$out/shm" --no-export \
  --distributed --dist-timeline "$out/shm-{rank}.jsonl"
report "$out/shm" "$out/shm-0.jsonl" "2 ranks x 1 thread, one namespace, shared memory"
cp "$out/netns-0.jsonl" "$root/bench/dist/timeline-netns-rank0.jsonl"
