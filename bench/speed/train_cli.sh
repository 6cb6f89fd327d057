#!/usr/bin/env bash
# Issue 19, acceptance 1: `lepton train SPEC --epochs N` as a user runs it (the CLI binary with its
# default process settings, `--threads T`) against the PyTorch equivalent of the spec
# (bench/speed/mnist_cnn_torch.py: same model, AdamW, one-cycle over the N epochs, label smoothing,
# dropout, augmentation, batch 128, 10 % stratified validation split, a validation pass per epoch), one
# after the other on the same threads, alternating when ROUNDS > 1. Prints per-epoch seconds (training
# + validation pass), training images/s and the test accuracy of each side, and the ratios.
#
#   bench/speed/train_cli.sh [SPEC] [EPOCHS]   # examples/mnist-cnn.toml, 3 epochs; THREADS=2 ROUNDS=1
#   LEPTON=path/to/lepton bench/speed/train_cli.sh     # another binary (default target/release/lepton)
#   OUT=dir bench/speed/train_cli.sh                   # keep the run directories in dir
#
# Ours come from the run directory: the `seconds` of each epoch line of metrics.jsonl (training and
# validation, as PyTorch's clock) and report.json (the test accuracy of the best-validation epoch,
# compared with the same epoch's in PyTorch). The process wall time (data loading, final test
# evaluation and report included; the model export skipped) is printed too. Measure on an idle
# machine: under load PyTorch's OpenMP threads collapse and the ratio means nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
spec=${1:-examples/mnist-cnn.toml}
epochs=${2:-3}
threads=${THREADS:-2}
rounds=${ROUNDS:-1}
lepton=${LEPTON:-${CARGO_TARGET_DIR:-target}/release/lepton}

scripts/fetch-assets.sh mnist >/dev/null
if [[ -z ${LEPTON:-} ]]; then
    cargo build --release -q -p lepton-cli
fi
torch=1
if [[ $(basename "$spec") != mnist-cnn.toml ]]; then
    echo "note: bench/speed/mnist_cnn_torch.py is the equivalent of examples/mnist-cnn.toml only: Lepton side only" >&2
    torch=0
fi
if ((torch)); then
    py=$(PIP_INDEX_URL=${PIP_INDEX_URL:-https://download.pytorch.org/whl/cpu} \
        PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-https://pypi.org/simple} bench/pyenv.sh torch numpy)/bin/python
fi
if [[ -n ${OUT:-} ]]; then
    work=$OUT # kept: the run directories and PyTorch's JSON lines
    mkdir -p "$work"
    rm -rf "$work"/ours-* "$work"/torch-*
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
echo "spec $spec, $epochs epochs, $threads threads, $rounds round(s), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 0; r < rounds; r++)); do
    start=$(date +%s.%N)
    "$lepton" --threads "$threads" --quiet train "$spec" --epochs "$epochs" --out "$work/ours-$r" --no-export
    end=$(date +%s.%N)
    echo "{\"wall_seconds\": $(echo "$end - $start" | bc)}" >"$work/ours-$r/wall.json"
    if ((torch)); then
        OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
            "$py" bench/speed/mnist_cnn_torch.py --epochs "$epochs" --threads "$threads" >"$work/torch-$r.jsonl"
    fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$rounds" "$torch" <<'PY'
import json, statistics, sys
from pathlib import Path

work, rounds, torch = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
def lines(p):
    return [json.loads(l) for l in p.read_text().splitlines() if l.startswith("{")]

ours, theirs = [], []
for r in range(rounds):
    run = work / f"ours-{r}"
    ep = [l for l in lines(run / "metrics.jsonl") if l.get("kind") == "epoch"]
    n = json.loads((run / "data-report.json").read_text())["counts"]["train"]
    acc = json.loads((run / "report.json").read_text())
    acc = acc.get("accuracy", acc.get("metrics", {}).get("accuracy"))
    wall = json.loads((run / "wall.json").read_text())["wall_seconds"]
    ours.append({"epochs": [e["seconds"] for e in ep], "n": n, "acc": acc, "wall": wall,
                 "phases": [e.get("phases") for e in ep]})
    if torch:
        t = lines(work / f"torch-{r}.jsonl")
        ep = [l for l in t if "epoch_seconds" in l]
        last = t[-1]
        theirs.append({"epochs": [e["epoch_seconds"] for e in ep], "n": last["train_images"],
                       "acc": last["best_val_test_accuracy"], "last_acc": last["final_test_accuracy"]})

def med(xs):
    return statistics.median(xs)
def show(name, runs):
    per = [med(r["epochs"]) for r in runs]
    for i, r in enumerate(runs):
        print(f"{name:8} round {i}: epochs " + " ".join(f"{s:.2f}" for s in r["epochs"]) + " s"
              + (f", process {r['wall']:.1f} s" if "wall" in r else ""))
    s = med(per)
    ips = runs[0]["n"] / s
    acc = med([r["acc"] for r in runs])
    print(f"{name:8} median epoch {s:.2f} s, {ips:,.0f} training images/s, test accuracy {100 * acc:.2f} %")
    return s, acc

s_ours, a_ours = show("lepton", ours)
ph = [p for r in ours for p in r["phases"] if p]
if ph:
    keys = ["steps", "data", "validation", "checkpoint", "logging"]
    tot = sum(sum(p[k] for k in keys) for p in ph)
    print("lepton   phases: " + ", ".join(f"{k} {100 * sum(p[k] for p in ph) / tot:.1f} %" for k in keys))
if torch:
    s_t, a_t = show("pytorch", theirs)
    print(f"speed ratio (pytorch epoch / lepton epoch): {s_t / s_ours:.2f}x (acceptance 1: >= 1.6x)")
    print(f"accuracy difference (lepton - pytorch): {100 * (a_ours - a_t):+.2f} points (acceptance 1: within 0.2)")
PY
