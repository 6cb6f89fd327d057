"""Reference side of bench/llm/embeddings.sh (run by it; not on its own).

  embeddings_reference.py sentences N          -> N deterministic short sentences on stdout
  embeddings_reference.py compare MODEL SENTENCES OURS.jsonl OURS.log ONE.log THREADS
"""
import json
import random
import re
import sys
import time


def sentences(n):
    rng = random.Random(0)
    adj = "new old small large quiet busy bright dark happy tired young clever".split()
    noun = "cat dog movie city teacher river garden computer child song market train".split()
    verb = "sits runs plays waits shines sleeps moves grows starts ends".split()
    place = ["outside", "in the garden", "near the river", "at the station", "all day",
             "in the morning", "with a friend", "under the old bridge", "after the long rain"]
    for _ in range(n):
        s = f"The {rng.choice(adj)} {rng.choice(noun)} {rng.choice(verb)} {rng.choice(place)}"
        if rng.random() < 0.4:
            s += f" while the {rng.choice(adj)} {rng.choice(noun)} {rng.choice(verb)}"
        print(s + ".")


def rate(log):
    m = re.search(r"embedded (\d+) texts in ([\d.]+) ms", open(log).read())
    if not m:
        sys.exit(f"no timing line in {log}:\n{open(log).read()}")
    return int(m.group(1)), float(m.group(2)) / 1e3


def compare(model_dir, sent_file, ours_jsonl, ours_log, one_log, threads):
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    texts = [line for line in open(sent_file).read().splitlines() if line.strip()]
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(texts[:64], batch_size=32)  # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        theirs = model.encode(texts, batch_size=32, normalize_embeddings=False, convert_to_numpy=True)
        best = min(best, time.perf_counter() - t)
    one = float("inf")
    for _ in range(20):
        t = time.perf_counter()
        model.encode(texts[:1])
        one = min(one, time.perf_counter() - t)

    ours = np.array([json.loads(line)["embedding"] for line in open(ours_jsonl)], dtype=np.float32)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    n, ours_s = rate(ours_log)
    _, ours_one = rate(one_log)

    # FLOPs of our forward passes: sorted by length, batches of 32 padded to their longest.
    cfg = json.load(open(f"{model_dir}/config.json"))
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    lens = sorted((len(model.tokenizer(t)["input_ids"]) for t in texts), reverse=True)
    flops = 0.0
    for k in range(0, len(lens), 32):
        b, t = len(lens[k:k + 32]), lens[k]
        flops += 2 * layers * b * t * (4 * h * h + 2 * h * i + 2 * t * h)
    # This CPU's f32 matmul peak as PyTorch (MKL/oneDNN) reaches it on the same threads.
    a = torch.randn(1024, 1024)
    torch.mm(a, a)
    peak = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            torch.mm(a, a)
        peak = max(peak, 10 * 2 * 1024**3 / (time.perf_counter() - t))

    print(f"all-MiniLM-L6-v2, {n} sentences, batch 32, {threads} threads (best of 3)")
    print(f"  agreement: cosine(ours, sentence-transformers) min {cos.min():.6f} mean {cos.mean():.6f}")
    print(f"  sentence-transformers: {n / best:8.1f} sentences/s   one sentence {one * 1e3:6.2f} ms")
    print(f"  lepton:                {n / ours_s:8.1f} sentences/s   one sentence {ours_one * 1e3:6.2f} ms")
    print(f"  ratio lepton / sentence-transformers: {best / ours_s:.2f}x throughput, "
          f"{one / ours_one:.2f}x single-sentence latency")
    print(f"  forward FLOPs {flops / 1e9:.2f} GFLOP -> lepton {flops / ours_s / 1e9:.1f} GFLOP/s, "
          f"sentence-transformers {flops / best / 1e9:.1f} GFLOP/s (same padding assumed)")
    print(f"  f32 matmul peak (torch.mm 1024^3, {threads} threads): {peak / 1e9:.1f} GFLOP/s -> lepton at "
          f"{flops / ours_s / peak:.0%} of it")
    ok = cos.min() >= 0.9999
    print(f"  agreement >= 0.9999: {'yes' if ok else 'NO'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if sys.argv[1] == "sentences":
        sentences(int(sys.argv[2]))
    elif sys.argv[1] == "compare":
        compare(*sys.argv[2:7], int(sys.argv[7]))
    else:
        sys.exit(__doc__)
