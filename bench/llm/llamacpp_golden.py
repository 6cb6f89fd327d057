#!/usr/bin/env python3
"""Greedy token ids from llama.cpp (llama-cpp-python) for a fixed prompt: the golden file that
`cargo test -p lepton-llm --test it smollm2` checks lepton's decoder against.

    py=$(bench/pyenv.sh llama-cpp-python)/bin/python
    $py bench/llm/llamacpp_golden.py $(scripts/fetch-assets.sh models)/SmolLM2-135M-Instruct.Q4_1.gguf \
        > bench/llm/smollm2_q4_1_greedy.json

Greedy = argmax of llama.cpp's logits after each token (no sampler), 64 tokens, EOS not special-cased,
prompt evaluated in one batch, then one token per step, 2 threads.

A 135M-parameter model often has near-ties between its two best tokens; there, any change in rounding
(llama.cpp's own f16 vs f32 KV cache, or batched vs one-token evaluation) flips the choice and the rest
of the text. So the script takes the first candidate prompt whose greedy run is well conditioned by
llama.cpp's own numbers alone: at each of the 64 steps the best logit leads the second by at least
MARGIN, and the f16- and f32-KV-cache runs agree. It records every candidate's smallest margin and
the top-5 logits of each step of the chosen one.
"""
import hashlib
import json
import sys

import llama_cpp
import numpy as np

CANDIDATES = [
    "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nExplain how photosynthesis works.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is gravity?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nList five tips for staying healthy.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nDescribe the water cycle.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nHow do airplanes fly?<|im_end|>\n<|im_start|>assistant\n",
]
N = 64
MARGIN = 0.15


def greedy(path, prompt_text, **kw):
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=512, n_threads=2, n_batch=512, logits_all=True, verbose=False, **kw
    )
    prompt = llm.tokenize(prompt_text.encode(), add_bos=False, special=True)
    llm.eval(prompt)
    out, margins, top5 = [], [], []
    for _ in range(N):
        s = np.array(llm.scores[llm.n_tokens - 1])
        order = np.argsort(-s, kind="stable")[:5]
        tok = int(order[0])
        out.append(tok)
        margins.append(float(s[order[0]] - s[order[1]]))
        top5.append([[int(i), round(float(s[i]), 4)] for i in order])
        llm.eval([tok])
    text = llm.detokenize(out).decode("utf-8", "replace")
    return prompt, out, text, margins, top5


def main():
    path = sys.argv[1]
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    tried = []
    for cand in CANDIDATES:
        prompt, ids, text, margins, top5 = greedy(path, cand)
        f32 = greedy(path, cand, type_k=0, type_v=0)[1]
        tried.append({"prompt": cand, "min_margin": round(min(margins), 4), "f32_kv_agrees": f32 == ids})
        print(tried[-1], file=sys.stderr)
        if min(margins) >= MARGIN and f32 == ids:
            break
    else:
        sys.exit("no well-conditioned candidate prompt")
    json.dump(
        {
            "model_sha256": sha,
            "llama_cpp_python": llama_cpp.__version__,
            "margin": MARGIN,
            "candidates": tried,
            "prompt": cand,
            "prompt_ids": prompt,
            "generated_ids": ids,
            "generated_text": text,
            "top5_logits": top5,
        },
        sys.stdout,
        indent=0,
    )
    print()


if __name__ == "__main__":
    main()
