"""Run by concurrent_chat.sh: CLIENTS chat requests all at once, one at a time, then at once again.

  concurrent_chat.py BASE_URL CLIENTS MAX_TOKENS [REPEATS=3]

Each repeat uses prompts of its own (new to the engine), and the medians over repeats are printed
(a run of 8 x 64 tokens takes about a second, so single runs are noisy).
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

base, clients, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
topics = ["the sea", "a cat", "autumn", "Paris", "a robot", "the moon", "coffee", "a library",
          "rain", "mountains", "a train", "music"]


def ask(i, rep=0):
    t = time.perf_counter()
    # Each repeat's prompts differ from the first word of the message on, so no earlier repeat's
    # prompts can be reused beyond the chat template's start.
    openers = ["Write", "Tell", "Give me", "Compose", "Invent"]
    r = client.chat.completions.create(
        model="smollm2", max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=1000 + i,
        messages=[{"role": "user", "content": f"{openers[rep % len(openers)]} a short story about {topics[i % len(topics)]}."}])
    return r.choices[0].message.content, r.usage.completion_tokens, time.perf_counter() - t


def at_once(rep):
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda i: ask(i, rep), range(clients)))
    return answers, sum(a[1] for a in answers) / (time.perf_counter() - t)


# Warm-up with a prompt none of the clients send. Then per repeat: all clients at once *first*, so
# that their prompts are new to the engine's prefix cache (only the chat template's start and the
# request's wording are shared, as between real users); then one at a time (which finds each
# prompt cached: this favours the single client, so the first ratio is the conservative one); then
# all at once again with every prompt cached (retries, or a multi-turn chat's earlier turns).
ask(clients + 3, repeats)
print(f"{clients} clients, max_tokens {max_tokens}, temperature 0.8, seeds 1000..{1000 + clients - 1}, "
      f"{repeats} repeats")
ok = True
runs = []
for rep in range(repeats):
    cold, cold_rate = at_once(rep)
    alone = [ask(i, rep) for i in range(clients)]
    single_rate = sum(a[1] for a in alone) / sum(a[2] for a in alone)
    warm, warm_rate = at_once(rep)
    runs.append((single_rate, cold_rate, warm_rate))
    line = f"  repeat {rep + 1}: one at a time {single_rate:.1f} tokens/s (request time incl. prefill)"
    for name, together, rate in [("new prompts", cold, cold_rate), ("cached", warm, warm_rate)]:
        same = sum(a[0] == b[0] for a, b in zip(alone, together))
        ok &= same == clients
        line += f"; {clients} at once, {name}: {rate:.1f} ({rate / single_rate:.2f}x, {same}/{clients} equal alone)"
        for i, (a, b) in enumerate(zip(alone, together)):
            if a[0] != b[0]:
                print(f"  client {i} differs:\n    alone:    {a[0]!r}\n    together: {b[0]!r}")
    print(line)
med = lambda xs: sorted(xs)[len(xs) // 2]
print(f"  median ratio, {clients} at once vs one at a time: new prompts {med([c / s for s, c, _ in runs]):.2f}x, "
      f"cached prompts {med([w / s for s, _, w in runs]):.2f}x; every answer equal alone: {ok}")
sys.exit(0 if ok else 1)
