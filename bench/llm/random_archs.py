#!/usr/bin/env python3
"""Small random-weight GGUF files, one per decoder architecture lepton runs, and llama.cpp's logits on
a fixed 64-token prompt for each: the golden files `cargo test -p lepton-llm --test it archs` checks
lepton's decoder against (without Python: the files and goldens are committed).

    py=$(bench/pyenv.sh llama-cpp-python gguf numpy)/bin/python
    $py bench/llm/random_archs.py bench/llm/archs

For each architecture (llama, qwen2, qwen3, phi3, gemma2, gemma3) it writes `ARCH.gguf` with gguf-py's
`GGUFWriter` (the metadata keys and tensor names llama.cpp's loader asks for: `src/llama-arch.cpp`,
`src/models/*.cpp`) and `ARCH.json` with the prompt's token ids and llama.cpp's logits (llama-cpp-python,
`logits_all=True`, f16 KV cache, 2 threads) at a few positions, twice: the prompt in one batch, and
16 tokens in one batch then one token per step.

Dimensions: hidden 64, 2 query heads sharing 1 KV head of 32, feed-forward 256 (so `ffn_down` rows hold
256 values, room for one K-quant super-block), 2 layers (6 for gemma3: five local, one global), a
SentencePiece-style vocabulary of 295 pieces (3 specials, 256 byte pieces, a few words, chat markers;
the test feeds token ids). Quantized tensors are random *blocks* (codes and scales drawn directly, the block
scales sized for a weight spread of about 1/sqrt(cols)): both sides dequantize the same bytes, no
quantizer is involved. Every file mixes F32 (norms, biases), F16, Q8_0 and the block types
Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K, so the kernels are covered too.
"""
import json
import os
import sys

import gguf
import llama_cpp
import numpy as np
from gguf import GGMLQuantizationType as T

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FF = 64, 2, 1, 32, 256
N_PROMPT = 64
DECODE_PREFILL = 16
POSITIONS = [0, 1, 7, 15, 16, 17, 31, 32, 47, 62, 63]
SPECIALS = ["<unk>", "<s>", "</s>"]
WORDS = ["▁the", "▁a", "▁of", "▁and", "▁to", "▁in", "▁is", "▁it", "▁that", "▁was", "▁for",
         "▁on", "▁are", "▁with", "▁as", "▁be", "▁at", "▁one", "▁have", "▁this", "▁from",
         "▁by", "▁hot", "▁word", "▁but", "▁what", "▁some"]
# Chat markers (Phi-3's loader looks some of them up by name).
CONTROL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|end|>", "<|user|>", "<|assistant|>",
           "<|system|>", "<start_of_turn>", "<end_of_turn>"]


def vocab():
    tokens = SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + WORDS + CONTROL
    types = [2, 3, 3] + [6] * 256 + [1] * len(WORDS) + [3] * len(CONTROL)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(WORDS))] + [0.0] * len(CONTROL)
    return tokens, types, scores


def f16(x):
    return np.asarray(x, dtype=np.float16).view(np.uint8).reshape(-1, 2)


def blocks(rng, qtype, rows, cols, std):
    """Random blocks of `qtype` for a rows x cols matrix whose values spread about `std`."""
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols // bs
    b = rng.integers(0, 256, size=(n, ts), dtype=np.uint8)
    if qtype == T.Q8_0:  # d, 32 x i8
        b[:, 0:2] = f16(np.full(n, std / 73.0))
        b[:, 2:] = rng.integers(-127, 128, size=(n, 32)).astype(np.int8).view(np.uint8)
    elif qtype == T.Q4_1:  # d, m, 16 bytes of nibbles: w = d q + m
        d = std / 4.6
        b[:, 0:2], b[:, 2:4] = f16(np.full(n, d)), f16(np.full(n, -7.5 * d))
    elif qtype == T.Q5_0:  # d, qh, qs: w = d (q - 16)
        b[:, 0:2] = f16(np.full(n, std / 9.2))
    elif qtype == T.Q5_1:  # d, m, qh, qs: w = d q + m
        d = std / 9.2
        b[:, 0:2], b[:, 2:4] = f16(np.full(n, d)), f16(np.full(n, -15.5 * d))
    elif qtype == T.Q4_K:  # d, dmin, 12 bytes of 6-bit scales and mins, qs: w = d sc q - dmin m
        d = std / 150.0
        b[:, 0:2], b[:, 2:4] = f16(np.full(n, d)), f16(np.full(n, 7.5 * d))
    elif qtype == T.Q5_K:
        d = std / 300.0
        b[:, 0:2], b[:, 2:4] = f16(np.full(n, d)), f16(np.full(n, 15.5 * d))
    elif qtype == T.Q6_K:  # ql, qh, 16 x i8 scales, d: w = d sc (q - 32)
        b[:, 192:208] = rng.integers(-100, 101, size=(n, 16)).astype(np.int8).view(np.uint8)
        b[:, 208:210] = f16(np.full(n, std / (58.0 * 18.5)))
    else:
        raise ValueError(qtype)
    return b.reshape(rows, -1)


def add_matrix(w, rng, name, rows, cols, qtype, std=None):
    std = std if std is not None else cols ** -0.5
    if qtype == T.F32:
        w.add_tensor(name, (rng.standard_normal((rows, cols)) * std).astype(np.float32))
    elif qtype == T.F16:
        w.add_tensor(name, (rng.standard_normal((rows, cols)) * std).astype(np.float16))
    else:
        w.add_tensor(name, blocks(rng, qtype, rows, cols, std), raw_dtype=qtype)


def add_vector(w, rng, name, n, mean=1.0, std=0.1):
    w.add_tensor(name, (mean + rng.standard_normal(n) * std).astype(np.float32))


# Per architecture: layers, extra metadata, and tensor types (q/k/v or qkv, output, gate/up, down).
ARCHS = {
    "llama": dict(layers=2, types=dict(q=T.Q8_0, k=T.Q4_1, v=T.Q8_0, o=T.Q8_0, gate=T.Q5_0, up=T.Q8_0,
                                       down=T.Q4_K, embd=T.Q8_0, out=T.Q8_0)),
    "qwen2": dict(layers=2, theta=1e6, types=dict(q=T.Q5_1, k=T.Q5_1, v=T.Q8_0, o=T.Q8_0, gate=T.Q8_0,
                                                  up=T.Q8_0, down=T.Q6_K, embd=T.Q8_0, out=None)),
    "qwen3": dict(layers=2, theta=1e6, types=dict(q=T.Q8_0, k=T.Q8_0, v=T.Q5_0, o=T.Q8_0, gate=T.Q8_0,
                                                  up=T.Q8_0, down=T.Q5_K, embd=T.F16, out=T.Q8_0)),
    "phi3": dict(layers=2, types=dict(qkv=T.Q8_0, o=T.Q5_0, up=T.Q8_0, down=T.Q4_K, embd=T.Q8_0,
                                      out=T.Q8_0)),
    "gemma2": dict(layers=2, window=16, types=dict(q=T.Q8_0, k=T.Q8_0, v=T.Q5_0, o=T.Q8_0, gate=T.Q8_0,
                                                   up=T.Q4_1, down=T.Q6_K, embd=T.Q8_0, out=None)),
    "gemma3": dict(layers=6, window=16, theta=1e6, types=dict(q=T.Q5_0, k=T.Q5_0, v=T.Q8_0, o=T.Q8_0,
                                                              gate=T.Q4_1, up=T.Q5_1, down=T.Q4_K,
                                                              embd=T.Q8_0, out=None)),
}


def write(path, arch, spec, seed):
    rng = np.random.default_rng(seed)
    tokens, types, scores = vocab()
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"random-{arch}")
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FF)
    w.add_block_count(spec["layers"])
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(spec.get("theta", 10000.0))
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(HEAD_DIM)
    if arch.startswith("gemma"):
        w.add_key_length(HEAD_DIM)
        w.add_value_length(HEAD_DIM)
        w.add_sliding_window(spec["window"])
    if arch == "gemma2":
        # Caps low enough that random weights reach them (the real model's are 50 and 30).
        w.add_attn_logit_softcapping(2.0)
        w.add_final_logit_softcapping(20.0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores(scores)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    t = spec["types"]
    V = len(tokens)
    kvd = KV_HEADS * HEAD_DIM
    qd = HEADS * HEAD_DIM
    add_matrix(w, rng, "token_embd.weight", V, HIDDEN, t["embd"], std=1.0)
    add_vector(w, rng, "output_norm.weight", HIDDEN)
    if t["out"] is not None:
        add_matrix(w, rng, "output.weight", V, HIDDEN, t["out"], std=0.4)
    for i in range(spec["layers"]):
        p = f"blk.{i}."
        add_vector(w, rng, p + "attn_norm.weight", HIDDEN)
        if "qkv" in t:
            add_matrix(w, rng, p + "attn_qkv.weight", qd + 2 * kvd, HIDDEN, t["qkv"])
        else:
            add_matrix(w, rng, p + "attn_q.weight", qd, HIDDEN, t["q"])
            add_matrix(w, rng, p + "attn_k.weight", kvd, HIDDEN, t["k"])
            add_matrix(w, rng, p + "attn_v.weight", kvd, HIDDEN, t["v"])
        if arch == "qwen2":
            add_vector(w, rng, p + "attn_q.bias", qd, mean=0.0, std=0.5)
            add_vector(w, rng, p + "attn_k.bias", kvd, mean=0.0, std=0.5)
            add_vector(w, rng, p + "attn_v.bias", kvd, mean=0.0, std=0.5)
        if arch in ("qwen3", "gemma3"):
            add_vector(w, rng, p + "attn_q_norm.weight", HEAD_DIM)
            add_vector(w, rng, p + "attn_k_norm.weight", HEAD_DIM)
        add_matrix(w, rng, p + "attn_output.weight", HIDDEN, qd, t["o"])
        if arch.startswith("gemma"):
            add_vector(w, rng, p + "post_attention_norm.weight", HIDDEN)
            add_vector(w, rng, p + "post_ffw_norm.weight", HIDDEN)
        add_vector(w, rng, p + "ffn_norm.weight", HIDDEN)
        if arch == "phi3":
            add_matrix(w, rng, p + "ffn_up.weight", 2 * FF, HIDDEN, t["up"])
        else:
            add_matrix(w, rng, p + "ffn_gate.weight", FF, HIDDEN, t["gate"])
            add_matrix(w, rng, p + "ffn_up.weight", FF, HIDDEN, t["up"])
        add_matrix(w, rng, p + "ffn_down.weight", HIDDEN, FF, t["down"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return V


def logits(path, prompt, prefill):
    """Logits after every prompt position: the first `prefill` tokens in one batch, then one token
    per step (llama.cpp's batched and one-row kernels round differently, so each path of lepton is
    compared with the same path of llama.cpp)."""
    llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_batch=128, n_threads=2, logits_all=True,
                          verbose=False)
    llm.eval(prompt[:prefill])
    for t in prompt[prefill:]:
        llm.eval([t])
    return np.array(llm.scores[: len(prompt)], dtype=np.float64)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for seed, (arch, spec) in enumerate(ARCHS.items()):
        path = os.path.join(out, f"{arch}.gguf")
        V = write(path, arch, spec, seed + 1)
        prompt = [int(x) for x in np.random.default_rng(100 + seed).integers(3, V, size=N_PROMPT)]
        prompt[0] = 1  # BOS
        s = logits(path, prompt, N_PROMPT)
        d = logits(path, prompt, DECODE_PREFILL)
        golden = {
            "architecture": arch,
            "llama_cpp_python": llama_cpp.__version__,
            "prompt_ids": prompt,
            "positions": POSITIONS,
            # The whole prompt in one batch.
            "logits": [[round(float(v), 5) for v in s[p]] for p in POSITIONS],
            # The first DECODE_PREFILL tokens in one batch, then one token per step.
            "decode_prefill": DECODE_PREFILL,
            "decode_logits": [[round(float(v), 5) for v in d[p]] for p in POSITIONS
                              if p >= DECODE_PREFILL - 1],
        }
        with open(os.path.join(out, f"{arch}.json"), "w") as f:
            json.dump(golden, f, separators=(",", ":"))
            f.write("\n")
        rng_ = s[POSITIONS].max(axis=1) - s[POSITIONS].min(axis=1)
        print(f"{arch}: {os.path.getsize(path)} bytes, logit range {rng_.min():.2f}-{rng_.max():.2f}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
