//! A tiny random Llama GGUF (64 wide, 2 blocks, 64 single-character tokens) with its matrices
//! stored in Q8_0 or Q4_1 blocks, written byte by byte: a quantized base for the
//! `base-precision = "quantized"` tests. Wq/Wk are written in GGUF's RoPE row order, as
//! `convert_hf_to_gguf.py` does, from HF-order values.

use std::path::{Path, PathBuf};

use lepton_finetune::qfrozen::{quantize_q4_1, quantize_q8_0, rope_perm};
use lepton_quant::QType;
use rand::{Rng, SeedableRng};

pub const HIDDEN: usize = 64;
pub const FF: usize = 128;
pub const HEADS: usize = 2;
pub const KV: usize = 32;
pub const VOCAB: usize = 64;
pub const LAYERS: usize = 2;

/// The tokens: `Ġ` (space), a-z, `<s>`, `</s>`, then fillers.
fn tokens() -> Vec<String> {
    let mut t: Vec<String> = vec!["Ġ".into()];
    t.extend(('a'..='z').map(String::from));
    t.extend(["<s>".into(), "</s>".into()]);
    t.extend(('A'..='Z').map(String::from));
    t.extend(('0'..='8').map(String::from));
    assert_eq!(t.len(), VOCAB);
    t
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

enum V {
    U32(u32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
}

fn push_value(out: &mut Vec<u8>, v: &V) {
    match v {
        V::U32(x) => {
            out.extend(4u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        V::F32(x) => {
            out.extend(6u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        V::Str(s) => {
            out.extend(8u32.to_le_bytes());
            push_str(out, s);
        }
        V::Strs(list) => {
            out.extend(9u32.to_le_bytes());
            out.extend(8u32.to_le_bytes());
            out.extend((list.len() as u64).to_le_bytes());
            for s in list {
                push_str(out, s);
            }
        }
    }
}

/// Write the model with its matrices in `qtype` (Q8_0 or Q4_1; norms f32) to `dir/tiny.gguf`.
pub fn write(dir: &Path, qtype: QType, seed: u64) -> PathBuf {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tensors: Vec<(String, Vec<usize>, u32, Vec<u8>)> = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize, rope_heads: Option<usize>| {
        let scale = 1.0 / (cols as f32).sqrt() * 1.7;
        let hf: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        let mut v = hf.clone();
        if let Some(h) = rope_heads {
            for (j, &src) in rope_perm(rows, h).iter().enumerate() {
                let src = src as usize;
                v[src * cols..(src + 1) * cols].copy_from_slice(&hf[j * cols..(j + 1) * cols]);
            }
        }
        let (ty, bytes) = match qtype {
            QType::Q4_1 => (3u32, quantize_q4_1(&v)),
            _ => (8u32, quantize_q8_0(&v)),
        };
        (name, vec![rows, cols], ty, bytes)
    };
    let norm = |name: String| {
        let bytes = (0..HIDDEN).flat_map(|_| 1f32.to_le_bytes()).collect();
        (name, vec![HIDDEN], 0u32, bytes)
    };
    tensors.push(matrix("token_embd.weight".into(), VOCAB, HIDDEN, None));
    for i in 0..LAYERS {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.push(norm(n("attn_norm")));
        tensors.push(matrix(n("attn_q"), HIDDEN, HIDDEN, Some(HEADS)));
        tensors.push(matrix(n("attn_k"), KV, HIDDEN, Some(1)));
        tensors.push(matrix(n("attn_v"), KV, HIDDEN, None));
        tensors.push(matrix(n("attn_output"), HIDDEN, HIDDEN, None));
        tensors.push(norm(n("ffn_norm")));
        tensors.push(matrix(n("ffn_gate"), FF, HIDDEN, None));
        tensors.push(matrix(n("ffn_up"), FF, HIDDEN, None));
        tensors.push(matrix(n("ffn_down"), HIDDEN, FF, None));
    }
    tensors.push(norm("output_norm.weight".into()));

    let s = |x: &str| V::Str(x.into());
    let meta = vec![
        ("general.architecture", s("llama")),
        ("general.name", s("tiny-quantized")),
        ("llama.embedding_length", V::U32(HIDDEN as u32)),
        ("llama.feed_forward_length", V::U32(FF as u32)),
        ("llama.block_count", V::U32(LAYERS as u32)),
        ("llama.attention.head_count", V::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", V::U32(1)),
        ("llama.context_length", V::U32(128)),
        ("llama.rope.freq_base", V::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.tokens", V::Strs(tokens())),
        ("tokenizer.ggml.merges", V::Strs(Vec::new())),
        ("tokenizer.ggml.bos_token_id", V::U32(27)),
        ("tokenizer.ggml.eos_token_id", V::U32(28)),
    ];
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in &meta {
        push_str(&mut out, k);
        push_value(&mut out, v);
    }
    let mut data = Vec::new();
    for (name, shape, ty, bytes) in &tensors {
        push_str(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        data.extend(bytes);
        data.resize(data.len().div_ceil(32) * 32, 0);
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend(data);
    let p = dir.join("tiny.gguf");
    std::fs::write(&p, out).unwrap();
    p
}
