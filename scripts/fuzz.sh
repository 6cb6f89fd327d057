#!/usr/bin/env bash
# Fuzzes the data parsers (MNIST IDX, CSV), the spec TOML (parse, validate, shape inference), the
# photon open path and the model loaders (GGUF;
# Hugging Face folder: config.json + safetensors) with cargo-fuzz / libFuzzer for SECONDS each
# (default 180), with libFuzzer's RSS and per-allocation limits (RSS_MB, default 2048; MALLOC_MB,
# default 1024, 512 for the model loaders: an allocation above it is reported as a crash).
# Installs cargo-fuzz from crates.io when missing; runs on the stable toolchain through
# RUSTC_BOOTSTRAP (cargo-fuzz needs nightly-only sanitizer flags). Seeds the corpora with real
# files: the first records of the embedded MNIST test set, the tabular CSVs, photons trained on
# iris and diabetes (2 epochs) plus a small CNN photon made here (photon seeds come as a whole
# file, mode `A`, and as header + weights for the re-signing mode; see fuzz_targets/photon.rs),
# and tiny models this script writes for the model loaders (a 1-block Llama GGUF; BERT and Llama
# config.json + safetensors pairs).
#
#   scripts/fuzz.sh            # every target, 180 s each
#   SECONDS_EACH=600 scripts/fuzz.sh idx
#   SECONDS_EACH=600 flock /tmp/lepton-cpu.lock scripts/fuzz.sh gguf hf_folder photon
#   SECONDS_EACH=600 scripts/fuzz.sh spec
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
secs=${SECONDS_EACH:-180}
targets=("$@")
((${#targets[@]})) || targets=(idx csv spec photon gguf hf_folder)
rss=${RSS_MB:-2048}

seed_corpus() { # seed_corpus TARGET
    local dir=fuzz/corpus/$1
    mkdir -p "$dir"
    case $1 in
    idx)
        # Small valid IDX files cut from the real test set: header with a reduced count + records.
        python3 - "$dir" <<'PY'
import gzip, struct, sys, os
out = sys.argv[1]
imgs = gzip.open("data/mnist/t10k-images-idx3-ubyte.gz").read()
labs = gzip.open("data/mnist/t10k-labels-idx1-ubyte.gz").read()
open(os.path.join(out, "images-3"), "wb").write(struct.pack(">IIII", 0x803, 3, 28, 28) + imgs[16:16 + 3 * 784])
open(os.path.join(out, "labels-3"), "wb").write(struct.pack(">II", 0x801, 3) + labs[8:11])
PY
        ;;
    csv)
        for f in data/tabular/*.csv; do head -c 4096 "$f" > "$dir/$(basename "$f")"; done
        ;;
    photon)
        local tmp
        tmp=$(mktemp -d)
        # LEPTON=path/to/lepton uses an existing binary instead of building one.
        local lepton=(cargo run -q -p lepton-cli --)
        [[ -n ${LEPTON:-} ]] && lepton=("$LEPTON")
        for spec in iris-mlp diabetes-mlp; do
            "${lepton[@]}" --quiet train "examples/$spec.toml" --epochs 2 --out "$tmp/$spec"
        done
        python3 - "$dir" "$tmp"/*/model.photon <<'PY'
import hashlib, json, os, struct, sys
out, photons = sys.argv[1], sys.argv[2:]

def split(raw):
    n = struct.unpack("<Q", raw[12:20])[0]
    start = 52 + n + (64 - (52 + n) % 64) % 64
    return json.loads(raw[52:52 + n]), raw[start:]

def safetensors(tensors):  # name -> (shape, values)
    meta, data = {}, b""
    for name, (shape, values) in sorted(tensors.items()):
        meta[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * len(values)]}
        data += struct.pack(f"<{len(values)}f", *values)
    head = json.dumps(meta).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    return struct.pack("<Q", len(head)) + head + data

def whole(manifest, weights):
    manifest = dict(manifest, weights_len=len(weights), weights_sha256=hashlib.sha256(weights).hexdigest())
    header = json.dumps(manifest, separators=(",", ":")).encode()
    pre = b"LEPTONPH" + struct.pack("<IQ", 1, len(header)) + hashlib.sha256(header).digest() + header
    return pre + b"\0" * ((64 - len(pre) % 64) % 64) + weights

def seed(name, manifest, weights):
    header = json.dumps(manifest, separators=(",", ":")).encode()
    open(os.path.join(out, name + "-resign"), "wb").write(b"R" + struct.pack("<I", len(header)) + header + weights)
    open(os.path.join(out, name + "-file"), "wb").write(b"A" + whole(manifest, weights))

for path in photons:
    m, w = split(open(path, "rb").read())
    seed(m["name"], m, w)
    cnn = m
# A small CNN on 1x6x6 images: conv, batch norm, pool, residual, flatten, linear.
cnn = dict(cnn, name="cnn", input_shape=[1, 6, 6],
           preprocessor={"kind": "image", "channels": 1, "height": 6, "width": 6, "mean": [0.5], "std": [0.25], "class_names": ["a", "b", "c"]},
           loss={"kind": "cross-entropy", "label-smoothing": 0.0},
           model={"layers": [{"type": "conv2d", "out-channels": 2, "kernel": 3, "padding": 1},
                             {"type": "batch-norm2d"}, {"type": "relu"}, {"type": "max-pool2d", "kernel": 2},
                             {"type": "residual", "layers": [{"type": "conv2d", "out-channels": 2, "kernel": 1}]},
                             {"type": "flatten"}, {"type": "linear", "out-features": 3}]})
t = {"layers.0.weight": ([2, 1, 3, 3], [0.1] * 18), "layers.0.bias": ([2], [0.0] * 2),
     "layers.1.weight": ([2], [1.0] * 2), "layers.1.bias": ([2], [0.0] * 2),
     "layers.1.running_mean": ([2], [0.0] * 2), "layers.1.running_var": ([2], [1.0] * 2),
     "layers.4.layers.0.weight": ([2, 2, 1, 1], [0.5] * 4), "layers.4.layers.0.bias": ([2], [0.0] * 2),
     "layers.6.weight": ([3, 18], [0.01] * 54), "layers.6.bias": ([3], [0.0] * 3)}
seed("cnn", cnn, safetensors(t))
PY
        rm -rf "$tmp"
        ;;
    gguf)
        python3 - "$dir" <<'PY'
# A 1-block Llama (hidden 32, 2 heads, 1 KV head, FFN 64, 6 tokens), GGUF v3, f32 tensors.
import os, struct, sys
out = sys.argv[1]
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
def val(v):
    if isinstance(v, bool): return struct.pack("<IB", 7, v)
    if isinstance(v, int): return struct.pack("<II", 4, v)
    if isinstance(v, float): return struct.pack("<If", 6, v)
    if isinstance(v, str): return struct.pack("<I", 8) + s(v)
    return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(s(x) for x in v)
H, FF, KV, V = 32, 64, 16, 6
meta = {"general.architecture": "llama", "general.name": "tiny", "general.alignment": 32,
        "llama.embedding_length": H, "llama.feed_forward_length": FF, "llama.block_count": 1,
        "llama.attention.head_count": 2, "llama.attention.head_count_kv": 1,
        "llama.context_length": 64, "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": ["a", "b", "c", "\u0120", "<s>", "</s>"],
        "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.bos_token_id": 4,
        "tokenizer.ggml.eos_token_id": 5, "tokenizer.ggml.add_bos_token": True,
        "tokenizer.chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"}
tensors = [("token_embd.weight", [V, H]), ("blk.0.attn_norm.weight", [H]),
           ("blk.0.attn_q.weight", [H, H]), ("blk.0.attn_k.weight", [KV, H]),
           ("blk.0.attn_v.weight", [KV, H]), ("blk.0.attn_output.weight", [H, H]),
           ("blk.0.ffn_norm.weight", [H]), ("blk.0.ffn_gate.weight", [FF, H]),
           ("blk.0.ffn_up.weight", [FF, H]), ("blk.0.ffn_down.weight", [H, FF]),
           ("output_norm.weight", [H])]
def gguf():
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta))
    head += b"".join(s(k) + val(v) for k, v in meta.items())
    data, infos = b"", b""
    for name, shape in tensors:
        n = 1
        for d in shape: n *= d
        blob = b"".join(struct.pack("<f", ((i * 7) % 13) / 13 - 0.4) for i in range(n))
        ty = 0
        infos += s(name) + struct.pack("<I", len(shape)) + b"".join(
            struct.pack("<Q", d) for d in reversed(shape)) + struct.pack("<IQ", ty, len(data))
        data += blob + b"\0" * (-len(blob) % 32)
    head += infos
    return head + b"\0" * (-len(head) % 32) + data
open(os.path.join(out, "tiny-f32.gguf"), "wb").write(gguf())
PY
        ;;
    hf_folder)
        python3 - "$dir" <<'PY'
# Inputs of the hf_folder target: u16 length + config.json + model.safetensors, for a 1-layer BERT
# (hidden 4) and a 1-layer Llama (hidden 32), f32 weights.
import json, os, struct, sys
out = sys.argv[1]
def safetensors(tensors):
    header, data = {}, b""
    for name, shape in tensors:
        n = 1
        for d in shape: n *= d
        blob = b"".join(struct.pack("<f", ((i * 7) % 13) / 13 - 0.4) for i in range(n))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data
def case(name, config, tensors):
    c = json.dumps(config).encode()
    open(os.path.join(out, name), "wb").write(struct.pack("<H", len(c)) + c + safetensors(tensors))
h, ff = 4, 8
bert = [("embeddings.word_embeddings.weight", [6, h]), ("embeddings.position_embeddings.weight", [16, h]),
        ("embeddings.token_type_embeddings.weight", [2, h]), ("embeddings.LayerNorm.weight", [h]),
        ("embeddings.LayerNorm.bias", [h])]
for n, s in [("attention.self.query", [h, h]), ("attention.self.key", [h, h]),
             ("attention.self.value", [h, h]), ("attention.output.dense", [h, h]),
             ("intermediate.dense", [ff, h]), ("output.dense", [h, ff])]:
    bert += [(f"encoder.layer.0.{n}.weight", s), (f"encoder.layer.0.{n}.bias", [s[0]])]
for n in ["attention.output.LayerNorm", "output.LayerNorm"]:
    bert += [(f"encoder.layer.0.{n}.weight", [h]), (f"encoder.layer.0.{n}.bias", [h])]
case("bert", {"model_type": "bert", "vocab_size": 6, "hidden_size": h, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": ff, "max_position_embeddings": 16}, bert)
H, FF, KV = 32, 64, 16
llama = [("model.embed_tokens.weight", [6, H]), ("model.norm.weight", [H])]
for n, s in [("input_layernorm", [H]), ("post_attention_layernorm", [H]),
             ("self_attn.q_proj", [H, H]), ("self_attn.k_proj", [KV, H]), ("self_attn.v_proj", [KV, H]),
             ("self_attn.o_proj", [H, H]), ("mlp.gate_proj", [FF, H]), ("mlp.up_proj", [FF, H]),
             ("mlp.down_proj", [H, FF])]:
    llama.append((f"model.layers.0.{n}.weight", s))
case("llama", {"model_type": "llama", "vocab_size": 6, "hidden_size": H, "intermediate_size": FF,
               "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
               "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}, llama)
PY
        ;;
    spec)
        # Every example spec, plus the crafted huge-size cases of issue 12.
        for f in examples/*.toml; do cp "$f" "$dir/"; done
        printf '[data]\nformat = "mnist"\npath = "x"\n[model]\n[[model.layers]]\ntype = "flatten"\n[[model.layers]]\ntype = "linear"\nout-features = 1000000000000\n' > "$dir/huge-linear.toml"
        printf '[data]\nformat = "csv"\npath = "x.csv"\n[model]\ninput = [3, 4096, 4096]\n[[model.layers]]\ntype = "conv2d"\nout-channels = 4096\nkernel = 3\n[train]\nbatch-size = 1048576\n' > "$dir/huge-conv.toml"
        ;;
    esac
}

for t in "${targets[@]}"; do
    seed_corpus "$t"
    echo "fuzz: $t for ${secs}s"
    malloc=${MALLOC_MB:-1024}
    case $t in gguf | hf_folder) malloc=${MALLOC_MB:-512} ;; esac
    dict=()
    [[ -f fuzz/$t.dict ]] && dict=(-dict="fuzz/$t.dict")
    cargo fuzz run -O "$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb="$rss" \
        -malloc_limit_mb="$malloc" "${dict[@]}"
done
