#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) prefill and decode tokens/s, for bench/llm/speed.sh.

    llamacpp_speed.py MODEL.gguf PROMPT_TOKENS DECODE_TOKENS THREADS

Same prompt text as lepton's `llm_speed` example, cut to PROMPT_TOKENS tokens; prefill = one
`eval` of the prompt (logits of the last token only), decode = DECODE_TOKENS single-token evals,
each fed the argmax of the previous logits; best of 3. Prints one JSON object.
"""
import json
import sys
import time

import llama_cpp
import numpy as np


def main():
    path, n_prompt, n_decode, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=n_prompt + n_decode + 8, n_threads=threads, n_threads_batch=threads,
        n_batch=512, verbose=False,
    )
    text = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills. " * n_prompt
    prompt = llm.tokenize(text.encode(), add_bos=False, special=True)[:n_prompt]
    n_vocab = llm.n_vocab()

    def last_logits():
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_vocab,))

    best_prefill = best_decode = float("inf")
    for _ in range(3):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        best_prefill = min(best_prefill, time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n_decode):
            llm.eval([int(np.argmax(last_logits()))])
        best_decode = min(best_decode, time.perf_counter() - t)
    print(json.dumps({
        "llama_cpp_python": llama_cpp.__version__,
        "threads": threads,
        "prefill_tokens_per_s": round(n_prompt / best_prefill, 1),
        "decode_tokens_per_s": round(n_decode / best_decode, 1),
    }))


if __name__ == "__main__":
    main()
