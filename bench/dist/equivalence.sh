#!/usr/bin/env bash
# Acceptance 1: 2 ranks x batch 32 against 1 rank x batch 64 (the same global batch of 64), same
# seed, 100 steps of the MNIST MLP; final weights equal to 1e-6 relative with SGD, 1e-4 with Adam.
#   bench/dist/equivalence.sh [path/to/lepton]   (built with --features distributed)
set -euo pipefail
LEPTON=$(realpath "${1:-$(dirname "$0")/../../target/release/lepton}")
cd "$(dirname "$0")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for opt in sgd adam; do
  case $opt in
    sgd) body='kind = "sgd"\nlr = 0.05\nmomentum = 0.9'; tol=1e-6 ;;
    adam) body='kind = "adam"\nlr = 1e-3'; tol=1e-4 ;;
  esac
  sed "s/^OPTIMIZER$/$body/; s|\.\./\.\./data/mnist|$PWD/../../data/mnist|" mnist-mlp.toml > "$out/$opt.toml"
  # Both runs with one compute thread per rank: the same kernels' reduction order.
  "$LEPTON" --quiet --threads 1 train "$out/$opt.toml" --out "$out/$opt-1x64" --no-export
  mpirun -np 2 --bind-to none "$LEPTON" --quiet --threads 1 train "$out/$opt.toml" \
    --out "$out/$opt-2x32" --no-export --distributed
  printf '%-4s 2x32 vs 1x64: ' "$opt"
  python3 compare_weights.py "$out/$opt-2x32" "$out/$opt-1x64" "$tol"
done
