#!/usr/bin/env bash
# Prints the path of the cached Python virtual environment used by bench/ scripts, creating it and
# installing the given pip requirements into it first (idempotent, safe to run concurrently).
# The venv lives outside the repo: ${LEPTON_BENCH_VENV:-~/.cache/lepton-bench/venv}.
#
#   py=$(bench/pyenv.sh torch numpy)/bin/python
set -euo pipefail
venv=${LEPTON_BENCH_VENV:-$HOME/.cache/lepton-bench/venv}
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
[[ -x $venv/bin/python ]] || python3 -m venv "$venv" >&2
if (($#)); then
    missing=()
    for req in "$@"; do
        name=${req%%[=<>\[]*}
        "$venv/bin/python" -m pip show -q "$name" >/dev/null 2>&1 || missing+=("$req")
    done
    if ((${#missing[@]})); then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}" >&2
    fi
fi
echo "$venv"
