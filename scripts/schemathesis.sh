#!/usr/bin/env bash
# Issue 4, acceptance 4: bad input. schemathesis (PyPI) generates requests from the server's own
# /openapi.json, authenticated with a bearer token that has both scopes, against the MNIST CNN
# (with a models folder, so admin loads run too). Fails when any response is a 5xx, the server
# dies, a response contradicts the OpenAPI document, or fewer than MIN_CASES (default 2000)
# requests were made (counted from the server's own access log).
#
#   scripts/schemathesis.sh
#   EXAMPLES=100 MIN_CASES=500 scripts/schemathesis.sh    # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${EXAMPLES:-400}
min_cases=${MIN_CASES:-2000}
port=${PORT:-18483}
token=fuzz-$RANDOM$RANDOM

photon=$(bench/serve/photon.sh)
venv=$(bench/pyenv.sh schemathesis)
work=$(mktemp -d /tmp/lepton-fuzz.XXXXXX)
server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/models"
cp "$photon" "$work/models/mnist.photon"
cat >"$work/serve.toml" <<TOML
models-dir = "$work/models"
[limits]
request-timeout-ms = 5000
TOML

LEPTON_TOKENS="$token:predict,admin" target/release/lepton serve "$work/models/mnist.photon" \
    --config "$work/serve.toml" --listen "127.0.0.1:$port" 2>"$work/server.log" &
server=$!
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.1
done

report=${REPORT:-/tmp/lepton-schemathesis.txt}
# Two passes against one server: (1) every operation with generated model names (mostly unknown
# models, 404), (2) every operation but DELETE with the served model's name, so that fuzzed
# bodies reach the input parsing and the model. positive_data_acceptance is excluded: a schema
# cannot state how many numbers the served model takes, so schema-valid inputs of the wrong
# length are rightly answered 422.
printf '[parameters]\n"path.name" = "mnist"\n' >"$work/named.toml"
st=0
: >"$report"
for pass in generated named; do
    config=()
    [[ $pass == named ]] && config=(--config-file "$work/named.toml")
    filter=()
    [[ $pass == named ]] && filter=(--exclude-method DELETE)
    echo "== pass: $pass model names" | tee -a "$report"
    set +e
    (cd "$work" && "$venv/bin/schemathesis" "${config[@]}" run "http://127.0.0.1:$port/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks "${CHECKS:-all}" --exclude-checks positive_data_acceptance \
        --max-examples "$examples" --seed "${SEED:-4}" \
        --workers 2 --request-timeout 10 --no-color \
        --suppress-health-check all --generation-database none \
        "${filter[@]}" ${EXTRA:-}) >>"$report" 2>&1
    rc=$?
    set -e
    sed -n '/^=* SUMMARY/,$p' "$report" | tail -25
    ((rc == 0)) || st=$rc
done
echo "full schemathesis output: $report"

fail=0
if ! kill -0 "$server" 2>/dev/null; then
    echo "FAIL: the server died"; tail -20 "$work/server.log"; fail=1
fi
cases=$(grep -c '"target":"access"' "$work/server.log" || true)
fives=$(grep '"target":"access"' "$work/server.log" | grep -cE '"status":5[0-9][0-9]' || true)
panics=$(grep -ciE 'panicked|internal error' "$work/server.log" || true)
echo "server access log: $cases requests, $fives with a 5xx status, $panics panics/internal errors"
grep '"target":"access"' "$work/server.log" | grep -oE '"status":[0-9]+' | sort | uniq -c | sort -rn | tr '\n' ' '
echo
((fives == 0 && panics == 0)) || { echo "FAIL: 5xx responses or panics"; grep -E '"status":5|panicked|internal error' "$work/server.log" | head; fail=1; }
((cases >= min_cases)) || { echo "FAIL: only $cases requests (want >= $min_cases)"; fail=1; }
((st == 0)) || { echo "FAIL: schemathesis reported failures (exit $st)"; fail=1; }
[[ $fail == 0 ]] && echo "schemathesis: OK"
exit $fail
