#!/usr/bin/env bash
# Resume chaos test (issue 12, acceptance 6): SIGKILL `lepton train` at random moments, resume
# with `lepton train --resume`, and compare with an uninterrupted run: SHA-256 of the final
# checkpoint weights (model + optimizer state) and of the best model, and the epoch count.
#
# KILLS SIGKILLs in all (default 20), KILLS_PER_RUN per run (default 2: once while training, once
# while resuming; runs continue until KILLS kills have landed, at most 2 x KILLS runs). The first kill of run 1 comes 5 ms after the start (before the
# spec or any checkpoint is written), the first kill of run 2 at 60 ms (before the first
# checkpoint); the others at a uniform random moment of 90 % of what is left of the run
# (estimated from the reference run's duration and the last checkpoint's step); a process that
# finished before its kill does not count. The spec
# checkpoints every 3 steps (log every step), so many kills land inside a checkpoint write.
# After each kill it prints what the kill left behind (checkpoint step, temp files, `.next`).
#
#   cargo build --release -p lepton-cli
#   flock /tmp/lepton-cpu.lock scripts/resume-chaos.sh          # ~3-5 minutes on 2 cores
#   LEPTON=path/to/lepton KILLS=6 SEED=7 scripts/resume-chaos.sh
#
# Exit status 1 when any run differs from the reference. Bounded: every command has a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
LEPTON=${LEPTON:-${CARGO_TARGET_DIR:-$root/target}/release/lepton}
KILLS=${KILLS:-20}
KILLS_PER_RUN=${KILLS_PER_RUN:-2}
MAX_RUNS=$((KILLS * 2))
RANDOM=${SEED:-12}
[[ -x $LEPTON ]] || { echo "no lepton binary at $LEPTON: cargo build --release -p lepton-cli" >&2; exit 2; }

work=$(mktemp -d /tmp/resume-chaos.XXXXXX)
trap 'rm -rf "$work"' EXIT
# digits (1,797 x 64): an MLP with batch norm and dropout, SGD with Nesterov momentum, a cosine
# schedule, gradient clipping, early stopping on validation accuracy.
cat > "$work/spec.toml" <<TOML
name = "chaos"
seed = 3
[data]
format = "csv"
path = "$root/data/tabular/digits.csv"
label = "digit"
task = "classification"
validation-split = 0.2
[model]
[[model.layers]]
type = "linear"
out-features = 64
[[model.layers]]
type = "batch-norm1d"
[[model.layers]]
type = "relu"
[[model.layers]]
type = "dropout"
p = 0.3
[[model.layers]]
type = "linear"
out-features = 10
[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9
nesterov = true
[schedule]
kind = "cosine"
warmup-steps = 20
[train]
epochs = 40
batch-size = 64
clip-grad-norm = 2.0
log-every = 1
checkpoint-every = 3
monitor = "val-accuracy"
early-stopping = { patience = 4 }
[eval]
plots = false
TOML

sha() { sha256sum "$1" | cut -c1-16; }
# `--json` prints one event per line, the summary last.
summary_of() { python3 -c 'import json,sys; s=[json.loads(l) for l in sys.stdin if "\"summary\"" in l][-1]["summary"]; print(s["epochs"], s["steps"])'; }
now() { date +%s.%N; }

t0=$(now)
read -r ref_epochs ref_steps < <(timeout 600 "$LEPTON" --json train "$work/spec.toml" --out "$work/ref" --no-export | summary_of)
ref_secs=$(python3 -c "print(round($(now) - $t0, 2))")
ref_last=$(sha "$work/ref/checkpoints/last.safetensors")
ref_best=$(sha "$work/ref/best.safetensors")
echo "reference: $ref_epochs epochs ($ref_steps steps) in ${ref_secs}s, last $ref_last, best $ref_best"

ckpt_step() { # the checkpointed step of run dir $1, 0 before the first checkpoint
    if [[ -f $1/checkpoints/last.json ]]; then
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$1/checkpoints/last.json"
    else echo 0; fi
}

# What a kill left: the checkpointed step (or "-" before the first), stray temp / .next files.
left() {
    local d=$1 step=-
    [[ -f $d/checkpoints/last.json ]] && step=$(ckpt_step "$d")
    local spec=no; [[ -f $d/spec.toml ]] && spec=yes
    local stray; stray=$(find "$d" -name '.*.tmp-*' -o -name '*.next' 2>/dev/null | sed "s|$d/||" | tr '\n' ' ')
    echo "spec=$spec checkpoint-step=$step stray=[${stray% }]"
}

# kill_after CMD... : run CMD in the background, SIGKILL it after $delay s (if still running;
# bounded by the delay, so no timeout wrapper: SIGKILL must reach lepton itself).
kill_after() {
    "$@" >/dev/null 2>&1 &
    local pid=$!
    sleep "$delay"
    if kill -9 "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; echo killed; else wait "$pid" 2>/dev/null || true; echo finished; fi
}

fail=0 kills=0 same=0
printf '%-4s %-7s %-8s %-9s %s\n' run attempt delay outcome "left behind"
runs=0
for ((r = 1; kills < KILLS && r <= MAX_RUNS; r++)); do
    runs=$r
    d=$work/run$r
    landed=0
    for ((attempt = 1; landed < KILLS_PER_RUN && kills < KILLS && attempt <= 2 * KILLS_PER_RUN + 2; attempt++)); do
        if ((r == 1 && attempt == 1)); then delay=0.005
        elif ((r == 2 && attempt == 1)); then delay=0.06
        else
            # Uniform over 90 % of what is left of the run (from its last checkpoint), so the kill
            # lands before the end.
            done_steps=0; [[ -d $d ]] && done_steps=$(ckpt_step "$d")
            ((done_steps < ref_steps)) || break
            delay=$(python3 -c "import random; random.seed($RANDOM); print(round(random.uniform(0.02, max(0.05, 0.9 * $ref_secs * ($ref_steps - $done_steps) / $ref_steps)), 3))")
        fi
        if [[ -f $d/spec.toml ]]; then
            outcome=$(kill_after "$LEPTON" train --resume "$d" --no-export)
        else
            outcome=$(kill_after "$LEPTON" train "$work/spec.toml" --out "$d" --no-export)
        fi
        [[ $outcome == killed ]] && { kills=$((kills + 1)); landed=$((landed + 1)); }
        printf '%-4s %-7s %-8s %-9s %s\n' "$r" "$attempt" "$delay" "$outcome" "$(left "$d")"
    done
    # Finish: resume (or, killed before the spec was even written, train again: nothing started).
    if [[ -f $d/spec.toml ]]; then
        read -r got_epochs _ < <(timeout 600 "$LEPTON" --json train --resume "$d" --no-export | summary_of)
    else
        echo "run $r: killed before spec.toml existed: training again"
        read -r got_epochs _ < <(timeout 600 "$LEPTON" --json train "$work/spec.toml" --out "$d" --no-export | summary_of)
    fi
    last=$(sha "$d/checkpoints/last.safetensors")
    best=$(sha "$d/best.safetensors")
    if [[ $last == "$ref_last" && $best == "$ref_best" && $got_epochs == "$ref_epochs" ]]; then
        same=$((same + 1)); echo "run $r: identical ($got_epochs epochs, last $last, best $best)"
    else
        fail=1; echo "run $r: DIFFERS: $got_epochs epochs, last $last, best $best"
    fi
done
echo "resume-chaos: $kills SIGKILLs over $runs runs, $same of $runs runs identical to the reference ($ref_epochs epochs)"
exit $fail
