"""Reference and summary side of bench/compress/minilm.sh (run by it; not on its own).

  minilm_reference.py MODEL WORK ROUNDS THREADS
"""
import io
import json
import os
import re
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # torch.ao's deprecation notices


def rate(log):
    m = re.search(r"embedded (\d+) texts in ([\d.]+) ms", open(log).read())
    if not m:
        sys.exit(f"no timing line in {log}:\n{open(log).read()}")
    return int(m.group(1)) / (float(m.group(2)) / 1e3)


def vectors(path):
    import numpy as np
    return np.array([json.loads(line)["embedding"] for line in open(path)], dtype=np.float32)


def cosines(a, b):
    import numpy as np
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def state_bytes(model):
    import torch
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def torch_side(model_dir, texts, threads):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    f32 = SentenceTransformer(model_dir, device="cpu")
    q8 = SentenceTransformer(model_dir, device="cpu")
    q8 = torch.ao.quantization.quantize_dynamic(q8, {torch.nn.Linear}, dtype=torch.qint8)
    out = {}
    for name, m in (("f32", f32), ("int8", q8)):
        m.encode(texts[:64], batch_size=32)  # warm-up
        best, emb = float("inf"), None
        for _ in range(3):
            t = time.perf_counter()
            emb = m.encode(texts, batch_size=32, convert_to_numpy=True)
            best = min(best, time.perf_counter() - t)
        out[name] = (len(texts) / best, emb, state_bytes(m))
    return out


def main(model_dir, work, rounds, threads):
    texts = [line for line in open(f"{work}/sentences.txt").read().splitlines() if line.strip()]
    c = json.load(open(f"{work}/compress.json"))
    f32_rates = [rate(f"{work}/f32.{r}.log") for r in range(1, rounds + 1)]
    int8_rates = [rate(f"{work}/int8.{r}.log") for r in range(1, rounds + 1)]
    ratios = [b / a for a, b in zip(f32_rates, int8_rates)]
    cos = cosines(vectors(f"{work}/f32.jsonl"), vectors(f"{work}/int8.jsonl"))
    f32_mb = os.path.getsize(f"{model_dir}/model.safetensors") / 1e6
    int8_mb = os.path.getsize(f"{work}/int8/model.safetensors") / 1e6
    t = torch_side(model_dir, texts, threads)
    tcos = cosines(t["f32"][1], t["int8"][1])
    print(f"all-MiniLM-L6-v2 dynamic int8, {len(texts)} sentences, batch 32, {threads} threads")
    print(f"  lepton compress gate: mean cosine {c['mean_cosine']:.5f} (min {c['min_cosine']:.5f}),"
          f" accepted {c['accepted']}")
    print(f"  model.safetensors: f32 {f32_mb:.2f} MB, int8 {int8_mb:.2f} MB ({f32_mb / int8_mb:.2f}x smaller)")
    print(f"  lepton f32 : {statistics.median(f32_rates):8.1f} sentences/s  (rounds: "
          + ", ".join(f"{r:.1f}" for r in f32_rates) + ")")
    print(f"  lepton int8: {statistics.median(int8_rates):8.1f} sentences/s  (rounds: "
          + ", ".join(f"{r:.1f}" for r in int8_rates) + ")")
    print(f"  lepton int8 / f32: median {statistics.median(ratios):.2f}x (rounds: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    print(f"  lepton int8 vs f32 cosine: mean {cos.mean():.5f} min {cos.min():.5f}")
    print(f"  torch f32  : {t['f32'][0]:8.1f} sentences/s  state_dict {t['f32'][2] / 1e6:.2f} MB")
    print(f"  torch int8 : {t['int8'][0]:8.1f} sentences/s  state_dict {t['int8'][2] / 1e6:.2f} MB"
          f"  ({t['int8'][0] / t['f32'][0]:.2f}x its f32)")
    print(f"  torch int8 vs its f32 cosine: mean {tcos.mean():.5f} min {tcos.min():.5f}")
    print(f"  lepton int8 / torch int8 throughput: {statistics.median(int8_rates) / t['int8'][0]:.2f}x")
    ok_cos = cos.mean() >= 0.995
    ok_speed = statistics.median(ratios) >= 1.5
    print(f"  targets: cosine >= 0.995 {'yes' if ok_cos else 'NO'}; int8 >= 1.5x our f32 "
          f"{'yes' if ok_speed else 'NO'}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
