#!/usr/bin/env python3
"""Greedy token ids from llama.cpp (llama-cpp-python) for Gemma 3 270M Q4_K_M on several prompts:
the golden file that `cargo test -p lepton-llm --test it gemma3` checks lepton's decoder against.

    py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
    $py bench/llm/llamacpp_gemma_golden.py $(scripts/fetch-assets.sh gemma) > bench/llm/gemma3_greedy.json

Greedy = argmax of llama.cpp's logits after each token (no sampler), 32 tokens, prompt evaluated in
one batch with the BOS token the file asks for, then one token per step, 2 threads.

As in llamacpp_golden.py (SmolLM2), a near-tie between the two best logits makes any rounding
difference flip the text, so a prompt is kept only when llama.cpp's own run is well conditioned: at
each of the 32 steps the best logit leads the second by at least MARGIN, and the f16- and
f32-KV-cache runs agree. Every candidate is recorded with its smallest margin; the first
WANT well-conditioned ones are the cases.
"""
import hashlib
import json
import sys

import llama_cpp
import numpy as np

CANDIDATES = [
    "The capital of France is",
    "Once upon a time, there was a little girl who",
    "The three primary colors are",
    "def fibonacci(n):\n",
    "Water boils at a temperature of",
    "The largest planet in our solar system is",
    "In 1969, Neil Armstrong",
    "A recipe for pancakes:\n1.",
    "The quick brown fox",
    "Photosynthesis is the process by which",
    "The first rule of programming is",
    "My favourite season is autumn because",
]
N = 32
MARGIN = 0.1
WANT = 6


def greedy(path, text, **kw):
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=256, n_threads=2, n_batch=256, logits_all=True, verbose=False, **kw
    )
    prompt = llm.tokenize(text.encode(), add_bos=True, special=False)
    llm.eval(prompt)
    out, margins = [], []
    for _ in range(N):
        s = np.array(llm.scores[llm.n_tokens - 1])
        order = np.argsort(-s, kind="stable")[:2]
        out.append(int(order[0]))
        margins.append(float(s[order[0]] - s[order[1]]))
        llm.eval([out[-1]])
    return prompt, out, llm.detokenize(out).decode("utf-8", "replace"), margins


def main():
    path = sys.argv[1]
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    tried, cases = [], []
    for text in CANDIDATES:
        prompt, ids, out_text, margins = greedy(path, text)
        f32 = greedy(path, text, type_k=0, type_v=0)[1]
        ok = min(margins) >= MARGIN and f32 == ids
        tried.append({"prompt": text, "min_margin": round(min(margins), 4), "f32_kv_agrees": f32 == ids})
        print(tried[-1], file=sys.stderr)
        if ok:
            cases.append({"prompt": text, "prompt_ids": prompt, "generated_ids": ids, "text": out_text})
        if len(cases) == WANT:
            break
    if len(cases) < 5:
        sys.exit(f"only {len(cases)} well-conditioned prompts")
    json.dump(
        {
            "model_sha256": sha,
            "llama_cpp_python": llama_cpp.__version__,
            "tokens": N,
            "margin": MARGIN,
            "candidates": tried,
            "cases": cases,
        },
        sys.stdout,
        indent=1,
    )
    print()


if __name__ == "__main__":
    main()
