#!/usr/bin/env bash
# Prints the path of the cached Python virtual environment used by bench/ scripts, creating it and
# installing the given pip requirements into it first (idempotent, safe to run concurrently: the
# check is lock-free, installs take a lock). The venv lives outside the repo:
# ${LEPTON_BENCH_VENV:-~/.cache/lepton-bench/venv}.
#
#   py=$(bench/pyenv.sh torch numpy)/bin/python
set -euo pipefail
venv=${LEPTON_BENCH_VENV:-$HOME/.cache/lepton-bench/venv}

missing() { # prints the requirements whose distribution is not installed (one interpreter start)
    [[ -x $venv/bin/python ]] || { printf '%s\n' "$@"; return; }
    "$venv/bin/python" - "$@" <<'PY'
import importlib.metadata as md, re, sys
for req in sys.argv[1:]:
    try:
        md.version(re.split(r"[=<>!~\[ ;]", req, maxsplit=1)[0])
    except md.PackageNotFoundError:
        print(req)
PY
}

if [[ ! -x $venv/bin/python ]] || [[ -n $(missing "$@") ]]; then
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv" >&2
    mapfile -t todo < <(missing "$@")
    if ((${#todo[@]})); then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "${todo[@]}" >&2
    fi
fi
echo "$venv"
