"""Issue 12 acceptance 4 through HTTP: four streams asking for the largest `max_tokens` the server
allows run while a short chat request arrives; prints the short request's time to first token.

    python3 bench/llm/fairness_http.py http://127.0.0.1:8080 smollm2 [MAX_TOKENS]

Only the standard library; every stream is bounded (the long ones are closed after the short
request ends, or after 120 s)."""
import json
import sys
import threading
import time
import urllib.request

base, model = sys.argv[1], sys.argv[2]
max_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
stop = threading.Event()
started = [0] * 4


def stream(i, prompt, n, out=None):
    body = json.dumps({"model": model, "stream": True, "max_tokens": n, "temperature": 0.8, "seed": i,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    req = urllib.request.Request(base + "/v1/chat/completions", body, {"content-type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=120) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            if delta.get("content"):
                if out is not None:
                    out.append(time.monotonic() - t0)
                    return
                started[i] += 1
            if stop.is_set() or time.monotonic() - t0 > 120:
                return


long = [threading.Thread(target=stream, args=(i, f"Write a very long story number {i} about the sea.", max_tokens))
        for i in range(4)]
for t in long:
    t.start()
deadline = time.monotonic() + 60
while min(started) < 8 and time.monotonic() < deadline:  # every long stream is decoding
    time.sleep(0.05)
ttft = []
for k in range(5):
    stream(10 + k, "What is 2 + 2? Answer with one number.", 8, ttft)
    time.sleep(0.2)
stop.set()
for t in long:
    t.join()
print(json.dumps({"long_streams_max_tokens": max_tokens, "tokens_seen_per_long_stream_before": started,
                  "short_ttft_s": [round(x, 3) for x in ttft],
                  "short_ttft_median_s": round(sorted(ttft)[len(ttft) // 2], 3)}))
