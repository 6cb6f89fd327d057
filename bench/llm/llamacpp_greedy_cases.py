#!/usr/bin/env python3
"""Greedy token ids from llama.cpp (llama-cpp-python) on several plain-text prompts: the golden
files that `cargo test -p lepton-llm --test it` checks lepton's decoder against (Gemma 3, SmolLM2
re-quantized to K-quant mixes).

    py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
    $py bench/llm/llamacpp_greedy_cases.py $(scripts/fetch-assets.sh gemma) > bench/llm/gemma3_greedy.json

Greedy = argmax of llama.cpp's logits after each token (no sampler), N = 32 tokens, each prompt
evaluated in one batch with the BOS token the file asks for, then one token per step, 2 threads.

A small model often has near-ties between its two best tokens; there, any rounding difference flips
the choice and the rest of the text (Gemma 3 270M's logits move by 0.1-0.5 between llama.cpp's own
attention paths, or with an unrounded GELU). A prompt is kept only when llama.cpp's own run is well
conditioned: at each step the best logit leads the second by at least MARGIN, and three runs with
different rounding agree (f16 KV cache, f32 KV cache, flash attention). Every candidate is recorded with its
smallest margin; the first WANT well-conditioned ones are the cases.
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
    "import numpy as np\n",
    "The history of the Roman Empire",
    "Dear John,\nI am writing to",
    "Machine learning is a field of",
    "The cat sat on the",
    "Here is a list of fruits: apple, banana,",
    "The sun rises in the",
    "Mount Everest is the",
    "To be or not to be,",
    "The Internet was invented",
    "One, two, three, four,",
    "The chemical symbol for gold is",
    "Monday, Tuesday, Wednesday,",
    "The Eiffel Tower is located in",
]
N = 32
MARGIN = 0.05
WANT = 6


def load(path, **kw):
    return llama_cpp.Llama(
        model_path=path, n_ctx=256, n_threads=2, n_batch=256, logits_all=True, verbose=False, **kw
    )


def greedy(llm, text):
    llm.reset()
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
    f16_kv, f32_kv, flash = load(path), load(path, type_k=0, type_v=0), load(path, flash_attn=True)
    tried, cases = [], []
    for text in CANDIDATES:
        prompt, ids, out_text, margins = greedy(f16_kv, text)
        f32 = greedy(f32_kv, text)[1]
        fa = greedy(flash, text)[1]
        tried.append({
            "prompt": text, "min_margin": round(min(margins), 4),
            "f32_kv_agrees": f32 == ids, "flash_attn_agrees": fa == ids,
        })
        print(tried[-1], file=sys.stderr)
        if min(margins) >= MARGIN and f32 == ids and fa == ids:
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
