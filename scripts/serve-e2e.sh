#!/usr/bin/env bash
# Issue 4, acceptance 1, end to end: train a small MNIST CNN -> export -> serve (with a token) ->
#   1. curl each real MNIST test digit (examples/images/mnist-test-D.png) to /v1/.../predict: the
#      label must be D;
#   2. the official Python `tritonclient[http]` (PyPI) calls the v2 endpoint with the same images:
#      same labels, same probabilities;
#   3. `lepton predict` (local, on the .photon) and `lepton predict --url` give the same answers.
# Exits non-zero on any mismatch.
#
#   scripts/serve-e2e.sh                  # LIMIT=20000 training samples, EPOCHS=1
#   LIMIT= EPOCHS=2 scripts/serve-e2e.sh  # full training set
set -euo pipefail
cd "$(dirname "$0")/.."

limit=${LIMIT-20000}
epochs=${EPOCHS:-1}
port=${PORT:-18480}
token=e2e-$RANDOM$RANDOM
tol=${TOL:-1e-4}

cargo build --release -q -p lepton-cli
lepton=$PWD/target/release/lepton
py=$(bench/pyenv.sh 'tritonclient[http]' numpy pillow)/bin/python

work=$(mktemp -d /tmp/lepton-e2e.XXXXXX)
server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# A short-training copy of examples/mnist-cnn.toml (data path made absolute, sample limit added).
sed -e "s|^path = \"../data/mnist\"|path = \"$PWD/data/mnist\"|" examples/mnist-cnn.toml >"$work/spec.toml"
[[ -n $limit ]] && sed -i "s|^validation-split = .*|&\nlimit = $limit|" "$work/spec.toml"
echo "== train (epochs=$epochs, limit=${limit:-all})"
start=$SECONDS
"$lepton" train "$work/spec.toml" --out "$work/run" --epochs "$epochs" --quiet
echo "trained in $((SECONDS - start)) s"
echo "== export + inspect"
"$lepton" export "$work/run" -o "$work/mnist.photon"
"$lepton" inspect "$work/mnist.photon" | head -20

echo "== serve"
LEPTON_TOKENS="$token:predict" "$lepton" serve "$work/mnist.photon" --listen "127.0.0.1:$port" \
    2>"$work/server.log" &
server=$!
for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary @examples/images/mnist-test-0.png \
    -H 'content-type: image/png' "http://127.0.0.1:$port/v1/models/mnist/predict")
[[ $code == 401 ]] || { echo "FAIL: request without a token got $code, expected 401"; exit 1; }

images=(examples/images/mnist-test-?.png)
echo "== curl ${#images[@]} MNIST test PNGs"
for img in "${images[@]}"; do
    curl -fsS --data-binary "@$img" -H 'content-type: image/png' -H "authorization: Bearer $token" \
        "http://127.0.0.1:$port/v1/models/mnist/predict?top_k=10" >>"$work/curl.jsonl"
    echo >>"$work/curl.jsonl"
done
head -c 300 "$work/curl.jsonl"
echo " ..."
echo "== tritonclient[http] -> /v2/models/mnist/infer"
"$py" bench/serve/triton_check.py "127.0.0.1:$port" mnist "$token" "${images[@]}" >"$work/triton.jsonl"
echo "== lepton predict (local) and lepton predict --url"
"$lepton" predict "$work/mnist.photon" "${images[@]}" --top-k 10 --json >"$work/local.jsonl"
LEPTON_TOKEN=$token "$lepton" predict --url "http://127.0.0.1:$port" --model mnist "${images[@]}" \
    --top-k 10 --json >"$work/remote.jsonl"

"$py" - "$work" "$tol" "${images[@]}" <<'PY'
import json, re, sys
work, tol, images = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
rows = lambda name: [json.loads(l) for l in open(f"{work}/{name}.jsonl") if l.strip()]
curl, triton, local, remote = rows("curl"), rows("triton"), rows("local"), rows("remote")
classes = [str(i) for i in range(10)]
def v1_probs(pred):  # top_k over all 10 classes -> probabilities in class order
    d = {s["label"]: s["probability"] for s in pred["top_k"]}
    return [d[c] for c in classes]
fails = 0
for i, img in enumerate(images):
    want = re.search(r"mnist-test-(\d)\.png", img).group(1)
    c = curl[i]["predictions"][0]
    answers = {
        "curl /v1": (c["label"], v1_probs(c)),
        "tritonclient /v2": (triton[i]["label"], triton[i]["probabilities"]),
        "lepton predict": (local[i]["prediction"]["top"][0][0], local[i]["prediction"]["probabilities"]),
        "lepton predict --url": (remote[i]["response"]["predictions"][0]["label"],
                                 v1_probs(remote[i]["response"]["predictions"][0])),
    }
    ref = answers["curl /v1"][1]
    line = []
    for who, (label, p) in answers.items():
        diff = max(abs(a - b) for a, b in zip(p, ref))
        ok = label == want and diff <= tol
        fails += not ok
        line.append(f"{who}={label}{'' if ok else ' MISMATCH'} (max |dp| {diff:.1e})")
    print(f"{img}: true {want}: " + ", ".join(line))
print(f"{len(images)} images x 4 clients: {fails} mismatches (tolerance {tol})")
sys.exit(1 if fails else 0)
PY
echo "serve-e2e: OK"
