#!/usr/bin/env bash
# Prints the bench venv (bench/pyenv.sh) after checking that the Python modules given with -m
# import; only when one does not does it call bench/pyenv.sh with the pip requirements (that call
# takes the venv lock, which a long install by another script may hold).
#
#   py=$(bench/serve/venv.sh -m "tritonclient.http numpy PIL" 'tritonclient[http]' numpy pillow)/bin/python
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ ${1:-} == -m ]] || { echo "usage: venv.sh -m 'module ...' requirement..." >&2; exit 2; }
modules=$2
shift 2
venv=${LEPTON_BENCH_VENV:-$HOME/.cache/lepton-bench/venv}
imports=$(printf 'import %s; ' $modules)
if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "$imports" 2>/dev/null; then
    echo "$venv"
else
    bench/pyenv.sh "$@"
fi
