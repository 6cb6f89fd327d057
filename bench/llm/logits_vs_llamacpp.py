#!/usr/bin/env python3
"""How far lepton's logits are from llama.cpp's, next to how far llama.cpp's own variants are from
each other, on one greedy golden case (teacher-forced: the prompt in one batch, then the golden's
tokens one per step).

    py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
    cargo build --release -p lepton-llm --example llm_logits
    $py bench/llm/logits_vs_llamacpp.py MODEL.gguf bench/llm/smollm2_q6_k_greedy.json [CASE=0]

Prints, per step, max |a - b| over the vocabulary and over llama.cpp's 20 best tokens (after
removing the mean shift), for: lepton vs llama.cpp (f16 KV, the golden's settings), llama.cpp f32 KV vs
f16 KV, llama.cpp without weight repacking vs with, and the golden's margin at that step. When
llama.cpp's own variants move the logits as much as lepton does, a greedy golden with a small
margin is decided by rounding, not by the model.
"""
import json
import os
import subprocess
import sys
import tempfile

import llama_cpp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def llama_logits(path, case, repack=True, **kw):
    if not repack:
        orig = llama_cpp.llama_cpp.llama_model_default_params

        def no_repack():
            p = orig()
            p.use_extra_bufts = False
            return p

        llama_cpp.llama_cpp.llama_model_default_params = no_repack
    try:
        llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=2, n_batch=256,
                              logits_all=True, verbose=False, **kw)
    finally:
        if not repack:
            llama_cpp.llama_cpp.llama_model_default_params = orig
    llm.eval(case["prompt_ids"])
    rows = [np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)]
    for t in case["generated_ids"][:-1]:
        llm.eval([t])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    return np.stack(rows)


def lepton_logits(path, case):
    exe = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                       "release", "examples", "llm_logits")
    with tempfile.TemporaryDirectory() as d:
        ids, out = os.path.join(d, "ids.json"), os.path.join(d, "out.f32")
        json.dump(case, open(ids, "w"))
        subprocess.run([exe, path, ids, out], check=True)
        return np.fromfile(out, dtype=np.float32).reshape(len(case["generated_ids"]), -1)


def dev(a, b):
    d = a - b
    top = np.argsort(-b)[:20]
    return np.abs(d - d.mean()).max(), np.abs(d[top] - d[top].mean()).max()


def main():
    path, golden = sys.argv[1], sys.argv[2]
    case = json.load(open(golden))["cases"][int(sys.argv[3]) if len(sys.argv) > 3 else 0]
    ref = llama_logits(path, case)
    runs = {
        "lepton": lepton_logits(path, case),
        "llama.cpp f32 KV": llama_logits(path, case, type_k=0, type_v=0),
        "llama.cpp no repack": llama_logits(path, case, repack=False),
    }
    print(f"{case['prompt']!r}: max |Δlogit| over the vocabulary / over llama.cpp's 20 best, vs llama.cpp (f16 KV)")
    print("step  margin  " + "  ".join(f"{k:>22}" for k in runs))
    for i in range(len(ref)):
        s = np.sort(ref[i])[::-1]
        cols = "  ".join("%10.3f / %9.3f" % dev(r[i], ref[i]) for r in runs.values())
        print(f"{i:4d}  {s[0] - s[1]:6.3f}  {cols}")
    for k, r in runs.items():
        m = np.array([dev(r[i], ref[i]) for i in range(len(ref))])
        print(f"{k}: median over steps {np.median(m[:, 0]):.3f} / {np.median(m[:, 1]):.3f}")


if __name__ == "__main__":
    main()
