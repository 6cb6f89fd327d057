#!/usr/bin/env bash
# Acceptance 4: 64 trials on the MNIST MLP (bench/tune/mnist-mlp.toml + space.toml), rungs at
# 1/3/9 epochs, 27 to the end, eta 3:
#   - lepton ASHA (random sampling) against a full random search of the same 64 trials (same seed:
#     the same sampled points): compute fraction and best accuracy;
#   - lepton TPE-ASHA against Optuna (TPESampler + SuccessiveHalvingPruner) for each seed in
#     SEEDS: both on exactly the same training and validation samples (the spec's split and
#     normalisation, exported once by the export_split example and read by optuna_mnist.py).
#   bench/tune/asha_vs_optuna.sh [path/to/lepton] [trials]      (SEEDS="0 1 2" by default)
# Scaled to fit this shared 2-core machine: 3,000 MNIST training images (600 for validation),
# a 784-W-10 MLP, 2 trials at once with 1 thread each on both sides.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
LEPTON=$(realpath "${1:-$root/target/release/lepton}")
TRIALS=${2:-64}
SEEDS=${SEEDS:-0 1 2}
cd "$root/bench/tune"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sed 's|\.\./\.\./data/mnist|'"$root"'/data/mnist|' mnist-mlp.toml > "$out/spec.toml"
export_split=$(dirname "$LEPTON")/examples/export_split
[ -x "$export_split" ] || (cd "$root" && cargo build --release -q -p lepton-tune --example export_split)
"$export_split" "$out/spec.toml" "$out/split" > /dev/null
py=$(../pyenv.sh optuna torch numpy)/bin/python

search() { # scheduler seed name
  /usr/bin/time -f "%e" -o "$out/$3.time" "$LEPTON" --threads 2 --json tune "$out/spec.toml" \
    --space space.toml --trials "$TRIALS" --parallel 2 --scheduler "$1" --seed "$2" \
    --dir "$out/$3" > "$out/$3.json"
}
first=${SEEDS%% *}
search asha "$first" asha
search random "$first" random
for s in $SEEDS; do
  search tpe-asha "$s" "tpe-asha-$s"
  /usr/bin/time -f "%e" -o "$out/optuna-$s.time" "$py" optuna_mnist.py "$TRIALS" 2 "$out/split" "$s" \
    > "$out/optuna-$s.json"
done
python3 - "$out" "$first" $SEEDS <<'PY'
import json, statistics, sys
out, first, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
def ours(name):
    v = json.load(open(f"{out}/{name}.json"))
    best = max(max(t["curve"]) for t in v["trials"] if t["curve"])
    return best, v["epochs_run"], v["epochs_full"], float(open(f"{out}/{name}.time").read())
def optuna(s):
    o = json.load(open(f"{out}/optuna-{s}.json"))
    return o["best"], o["epochs_run"], o["epochs_full"], float(open(f"{out}/optuna-{s}.time").read())
row = lambda name, r: print(f"{name:28} {r[0]*100:11.2f}% {r[1]:6}/{r[2]:<6} {r[3]:8.1f}")
print(f"{'':28} {'best val acc':>12} {'epochs':>13} {'wall s':>8}")
a, r = ours("asha"), ours("random")
row(f"lepton random (full), seed {first}", r)
row(f"lepton ASHA, seed {first}", a)
t = {s: ours(f"tpe-asha-{s}") for s in seeds}
o = {s: optuna(s) for s in seeds}
for s in seeds:
    row(f"lepton TPE-ASHA, seed {s}", t[s])
    row(f"Optuna TPE+SHA, seed {s}", o[s])
mean = lambda d, i: statistics.mean(v[i] for v in d.values())
print(f"ASHA compute {a[1]/r[1]:.3f} of full random (<= 1/3: {a[1]/r[1] <= 1/3}); "
      f"best {100*(a[0]-r[0]):+.2f} points vs full random (within 0.5: {a[0] >= r[0] - 0.005})")
for s in seeds:
    print(f"seed {s}: TPE-ASHA vs Optuna {100*(t[s][0]-o[s][0]):+.2f} points, "
          f"wall {t[s][3]:.1f} s vs {o[s][3]:.1f} s")
print(f"mean over seeds {' '.join(seeds)}: TPE-ASHA {100*mean(t,0):.2f}% vs Optuna {100*mean(o,0):.2f}% "
      f"({100*(mean(t,0)-mean(o,0)):+.2f} points); wall {mean(t,3):.1f} s vs {mean(o,3):.1f} s; "
      f"epochs {mean(t,1):.0f} vs {mean(o,1):.0f}")
PY
