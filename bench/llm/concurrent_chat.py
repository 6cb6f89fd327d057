"""Run by concurrent_chat.sh: CLIENTS chat requests alone, then all at once.

  concurrent_chat.py BASE_URL CLIENTS MAX_TOKENS
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

base, clients, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
topics = ["the sea", "a cat", "autumn", "Paris", "a robot", "the moon", "coffee", "a library",
          "rain", "mountains", "a train", "music"]


def ask(i):
    t = time.perf_counter()
    r = client.chat.completions.create(
        model="smollm2", max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=1000 + i,
        messages=[{"role": "user", "content": f"Write a short story about {topics[i % len(topics)]}."}])
    return r.choices[0].message.content, r.usage.completion_tokens, time.perf_counter() - t


ask(0)  # warm-up
alone = [ask(i) for i in range(clients)]
single_rate = sum(a[1] for a in alone) / sum(a[2] for a in alone)
t = time.perf_counter()
with ThreadPoolExecutor(clients) as pool:
    together = list(pool.map(ask, range(clients)))
wall = time.perf_counter() - t
agg_rate = sum(a[1] for a in together) / wall
same = sum(a[0] == b[0] for a, b in zip(alone, together))
print(f"{clients} clients, max_tokens {max_tokens}, temperature 0.8, seeds 1000..{1000 + clients - 1}")
print(f"  one client at a time: {single_rate:.1f} tokens/s (request time incl. prefill)")
print(f"  {clients} at once:         {agg_rate:.1f} tokens/s aggregate ({sum(a[1] for a in together)} tokens in {wall:.2f} s)")
print(f"  ratio: {agg_rate / single_rate:.2f}x")
print(f"  answers equal to the same seed alone: {same}/{clients}")
for i, (a, b) in enumerate(zip(alone, together)):
    if a[0] != b[0]:
        print(f"  client {i} differs:\n    alone:    {a[0]!r}\n    together: {b[0]!r}")
sys.exit(0 if same == clients else 1)
