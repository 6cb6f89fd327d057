#!/usr/bin/env bash
# Issue 16, acceptances 1 and 2: examples/mnist-cnn.toml trained one epoch, then
#   - our static int8 (`lepton compress --quantize int8 --calibration-samples 1024`) against our f32
#     (size, test accuracy, batch-1 latency, batch-64 throughput: the compress report times both
#     models in the same process, same threads),
#   - PyTorch's own int8 (dynamic and static) on the same weights, timed right after in the same lock,
#   - 50 % structured pruning + 1 epoch fine-tune.
# CPU-heavy parts run under the shared lock (/tmp/lepton-cpu.lock), each under ~10 minutes.
#
#   bench/compress/mnist_cnn.sh            # OUT=/tmp/lepton-compress-bench THREADS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/lepton-compress-bench}
threads=${THREADS:-2}
export RAYON_NUM_THREADS=$threads
nice -n 5 cargo build --release -p lepton-cli
lepton=${CARGO_TARGET_DIR:-target}/release/lepton
py=$(bench/pyenv.sh torch numpy)/bin/python
rm -rf "$out"
mkdir -p "$out"

if [[ -z ${RUN:-} ]]; then
    flock /tmp/lepton-cpu.lock "$lepton" train examples/mnist-cnn.toml --out "$out/run" --epochs 1
    run=$out/run
else
    run=$RUN
fi

flock /tmp/lepton-cpu.lock bash -c "
    '$lepton' --json compress '$run' -o '$out/int8.photon' --quantize int8 --calibration-samples 1024 > '$out/int8.json'
    OMP_NUM_THREADS=$threads '$py' bench/compress/mnist_cnn_torch.py --photon '$run/model.photon' --threads $threads --json '$out/torch.json'
"
flock /tmp/lepton-cpu.lock "$lepton" --json compress "$run" -o "$out/pruned.photon" \
    --prune 0.5 --structured --finetune-epochs 1 --max-drop 0.5 > "$out/pruned.json"
for p in "$run/model.photon" "$out/int8.photon" "$out/pruned.photon"; do
    flock /tmp/lepton-cpu.lock "$lepton" --json eval "$p" --data data/mnist > "$out/$(basename "$p" .photon).eval.json"
done

"$py" - "$out" "$run" <<'PY'
import json, os, sys
out, run = sys.argv[1], sys.argv[2]
j = lambda n: json.load(open(os.path.join(out, n)))
def acc(n):
    r = j(n)
    r = r.get("classification", r)
    return 100.0 * r["accuracy"] if r["accuracy"] <= 1.0 else r["accuracy"]
q, p, t = j("int8.json"), j("pruned.json"), j("torch.json")
f32_file = os.path.getsize(os.path.join(run, "model.photon"))
int8_file = os.path.getsize(os.path.join(out, "int8.photon"))
pruned_file = os.path.getsize(os.path.join(out, "pruned.photon"))
a32, a8, ap = acc("model.eval.json"), acc("int8.eval.json"), acc("pruned.eval.json")
b, a = q["before"], q["after"]
best = max((t["torch-dynamic-int8"], t["torch-static-int8"]), key=lambda r: r["throughput"])
rows = [
    ("ours f32", f32_file, a32, b["latency_ms"], b["throughput"]),
    ("ours int8 (static, 1024 calibration images)", int8_file, a8, a["latency_ms"], a["throughput"]),
    ("ours 50 % structured + 1 epoch fine-tune", pruned_file, ap, p["after"]["latency_ms"], p["after"]["throughput"]),
]
for k in ("torch-f32", "torch-dynamic-int8", "torch-static-int8"):
    rows.append((k, t[k]["size_bytes"], t[k]["accuracy"], t[k]["latency_ms"], t[k]["throughput"]))
print("| model | file bytes | test accuracy % | batch-1 latency ms | batch-64 samples/s |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]:,} | {r[2]:.2f} | {r[3]:.3f} | {r[4]:,.0f} |")
checks = [
    ("int8 file / f32 file <= 0.27", int8_file / f32_file, int8_file / f32_file <= 0.27),
    ("int8 accuracy drop <= 0.3 points", a32 - a8, a32 - a8 <= 0.3),
    ("int8 batch-64 throughput / f32 >= 2", a["throughput"] / b["throughput"], a["throughput"] / b["throughput"] >= 2),
    ("int8 batch-1 latency < f32", a["latency_ms"] / b["latency_ms"], a["latency_ms"] < b["latency_ms"]),
    ("int8 throughput / best torch int8 >= 1.5", a["throughput"] / best["throughput"], a["throughput"] / best["throughput"] >= 1.5),
    ("int8 accuracy >= best torch int8's", a8 - best["accuracy"], a8 >= best["accuracy"]),
    ("pruned accuracy drop <= 0.5", a32 - ap, a32 - ap <= 0.5),
    ("pruned batch-64 throughput / f32 >= 1.5", p["after"]["throughput"] / p["before"]["throughput"], p["after"]["throughput"] / p["before"]["throughput"] >= 1.5),
]
print()
for name, v, ok in checks:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {v:.3f}")
PY
