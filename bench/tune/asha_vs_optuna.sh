#!/usr/bin/env bash
# Acceptance 4: ASHA (eta 3, rungs 1/3/9 epochs, 27 epochs to the end) against a full random
# search of the same 64 trials (same seed: the same sampled points) and against Optuna's
# SuccessiveHalvingPruner (TPE sampler) on the same model, space and budget.
#   bench/tune/asha_vs_optuna.sh [path/to/lepton] [trials]
# Scaled to fit this shared 2-core machine: 3,000 MNIST training images (600 for validation),
# a 784-W-10 MLP; the comparison (compute fraction, best accuracy) is what the issue asks.
set -euo pipefail
LEPTON=$(realpath "${1:-$(dirname "$0")/../../target/release/lepton}")
cd "$(dirname "$0")"
TRIALS=${2:-64}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sed 's|\.\./\.\./data/mnist|'"$PWD"'/../../data/mnist|' mnist-mlp.toml > "$out/spec.toml"
for s in asha random; do
  /usr/bin/time -f "%e" -o "$out/$s.time" "$LEPTON" --threads 2 --json tune "$out/spec.toml" \
    --space space.toml --trials "$TRIALS" --parallel 2 --scheduler $s --dir "$out/$s" > "$out/$s.json"
done
py=$(../pyenv.sh optuna torch numpy)/bin/python
/usr/bin/time -f "%e" -o "$out/optuna.time" "$py" optuna_mnist.py "$TRIALS" 2 "$PWD/../../data/mnist" > "$out/optuna.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def ours(s):
    v = json.load(open(f"{out}/{s}.json"))
    best = max(max(t["curve"]) for t in v["trials"] if t["curve"])
    return best, v["epochs_run"], v["epochs_full"], float(open(f"{out}/{s}.time").read())
a, r = ours("asha"), ours("random")
o = json.load(open(f"{out}/optuna.json"))
ot = float(open(f"{out}/optuna.time").read())
print(f"{'':22} {'best val acc':>12} {'epochs':>13} {'wall s':>8}")
print(f"{'lepton random (full)':22} {r[0]*100:11.2f}% {r[1]:6}/{r[2]:<6} {r[3]:8.1f}")
print(f"{'lepton ASHA':22} {a[0]*100:11.2f}% {a[1]:6}/{a[2]:<6} {a[3]:8.1f}")
print(f"{'Optuna SHA pruner':22} {o['best']*100:11.2f}% {o['epochs_run']:6}/{o['epochs_full']:<6} {ot:8.1f}")
print(f"ASHA compute {a[1]/r[1]:.3f} of full random (<= 1/3: {a[1]/r[1] <= 1/3}); "
      f"best {100*(a[0]-r[0]):+.2f} points vs full random (within 0.5: {abs(a[0]-r[0]) <= 0.005 or a[0] >= r[0]}); "
      f"vs Optuna {100*(a[0]-o['best']):+.2f} points, wall {a[3]:.0f} s vs {ot:.0f} s")
PY
