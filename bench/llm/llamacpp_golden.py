#!/usr/bin/env python3
"""Greedy token ids from llama.cpp (llama-cpp-python) for a fixed prompt: the golden file that
`cargo test -p lepton-llm --test it` checks lepton's decoder against.

    py=$(bench/pyenv.sh llama-cpp-python)/bin/python
    $py bench/llm/llamacpp_golden.py $(scripts/fetch-assets.sh models)/SmolLM2-135M-Instruct.Q4_1.gguf \
        > bench/llm/smollm2_q4_1_greedy.json

Greedy = argmax of llama.cpp's logits after each token (no sampler), 64 tokens, EOS not special-cased.
Run once with llama.cpp's defaults (f16 KV cache) and once with an f32 KV cache; both are recorded.
"""
import hashlib
import json
import sys

import llama_cpp
import numpy as np

PROMPT = "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n<|im_start|>assistant\n"
N = 64


def greedy(path, **kw):
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, n_batch=512, logits_all=True, verbose=False, **kw)
    prompt = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    llm.eval(prompt)
    out = []
    for _ in range(N):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        llm.eval([tok])
    text = llm.detokenize(out).decode("utf-8", "replace")
    return prompt, out, text


def main():
    path = sys.argv[1]
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    prompt, default_ids, text = greedy(path)
    _, f32kv_ids, _ = greedy(path, type_k=0, type_v=0)
    json.dump(
        {
            "model_sha256": sha,
            "llama_cpp_python": llama_cpp.__version__,
            "prompt": PROMPT,
            "prompt_ids": prompt,
            "generated_ids": default_ids,
            "generated_text": text,
            "generated_ids_f32_kv_cache": f32kv_ids,
        },
        sys.stdout,
        indent=0,
    )
    print()


if __name__ == "__main__":
    main()
