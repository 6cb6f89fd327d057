//! A tiny Llama GGUF (32 wide, 1 block, 6 tokens) written byte by byte, to break one field at a
//! time (crafted-file tests) or to drive the engine fast (admission tests).

use std::path::{Path, PathBuf};

/// A GGUF metadata value.
#[derive(Clone)]
pub(crate) enum V {
    U32(u32),
    U64(u64),
    I32(i32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn push_value(out: &mut Vec<u8>, v: &V) {
    match v {
        V::U32(x) => {
            out.extend(4u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        V::U64(x) => {
            out.extend(10u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        V::I32(x) => {
            out.extend(5u32.to_le_bytes());
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

/// A tensor: name, PyTorch shape `[rows, cols]` or `[len]`, f32 values, and an offset override.
pub(crate) struct T {
    pub(crate) name: String,
    pub(crate) shape: Vec<u64>,
    pub(crate) offset: Option<u64>,
}

/// The tiny model's metadata and tensors, to break before writing.
pub(crate) struct Tiny {
    meta: Vec<(String, V)>,
    tensors: Vec<T>,
}

pub(crate) const HIDDEN: u64 = 32;
pub(crate) const FF: u64 = 64;
pub(crate) const KV: u64 = 16;
pub(crate) const VOCAB: u64 = 6;
pub(crate) const EOS: u64 = 5;

pub(crate) fn tiny() -> Tiny {
    let tokens: Vec<String> = ["a", "b", "c", "Ġ", "<s>", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s = |x: &str| V::Str(x.into());
    let meta = vec![
        ("general.architecture".into(), s("llama")),
        ("general.name".into(), s("tiny")),
        ("llama.embedding_length".into(), V::U32(HIDDEN as u32)),
        ("llama.feed_forward_length".into(), V::U32(FF as u32)),
        ("llama.block_count".into(), V::U32(1)),
        ("llama.attention.head_count".into(), V::U32(2)),
        ("llama.attention.head_count_kv".into(), V::U32(1)),
        ("llama.context_length".into(), V::U32(64)),
        ("llama.rope.freq_base".into(), V::F32(10_000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            V::F32(1e-5),
        ),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.tokens".into(), V::Strs(tokens)),
        ("tokenizer.ggml.merges".into(), V::Strs(Vec::new())),
        ("tokenizer.ggml.bos_token_id".into(), V::U32(4)),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(EOS as u32)),
        (
            "tokenizer.chat_template".into(),
            s("{% for m in messages %}{{ m.content }}{% endfor %}"),
        ),
    ];
    let t = |name: &str, shape: &[u64]| T {
        name: name.into(),
        shape: shape.to_vec(),
        offset: None,
    };
    let tensors = vec![
        t("token_embd.weight", &[VOCAB, HIDDEN]),
        t("blk.0.attn_norm.weight", &[HIDDEN]),
        t("blk.0.attn_q.weight", &[HIDDEN, HIDDEN]),
        t("blk.0.attn_k.weight", &[KV, HIDDEN]),
        t("blk.0.attn_v.weight", &[KV, HIDDEN]),
        t("blk.0.attn_output.weight", &[HIDDEN, HIDDEN]),
        t("blk.0.ffn_norm.weight", &[HIDDEN]),
        t("blk.0.ffn_gate.weight", &[FF, HIDDEN]),
        t("blk.0.ffn_up.weight", &[FF, HIDDEN]),
        t("blk.0.ffn_down.weight", &[HIDDEN, FF]),
        t("output_norm.weight", &[HIDDEN]),
    ];
    Tiny { meta, tensors }
}

impl Tiny {
    pub(crate) fn set(&mut self, key: &str, v: V) -> &mut Self {
        match self.meta.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = v,
            None => self.meta.push((key.into(), v)),
        }
        self
    }

    pub(crate) fn tensor(&mut self, name: &str) -> &mut T {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap()
    }

    /// GGUF v3, alignment 32, f32 tensors filled with small deterministic values.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
            push_str(&mut out, k);
            push_value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut data = Vec::new();
        for t in &self.tensors {
            push_str(&mut out, &t.name);
            out.extend((t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                out.extend(d.to_le_bytes());
            }
            out.extend(0u32.to_le_bytes()); // F32
            out.extend(t.offset.unwrap_or(offset).to_le_bytes());
            // Sizes beyond the real model are declared, not written.
            let n = t
                .shape
                .iter()
                .fold(1u64, |a, &d| a.saturating_mul(d))
                .min(HIDDEN * FF);
            for i in 0..n {
                let mut v = ((i * 7 + offset) % 13) as f32 / 13.0 - 0.4;
                // The EOS token's embedding (tied output row) is zero: its logit is always 0,
                // below the best of the others, so greedy generation runs to max_tokens.
                if t.name == "token_embd.weight" && i / HIDDEN == EOS {
                    v = 0.0;
                }
                data.extend(v.to_le_bytes());
            }
            offset += n * 4;
            offset = offset.div_ceil(32) * 32;
            data.resize(offset as usize, 0);
        }
        out.resize(out.len().div_ceil(32) * 32, 0);
        out.extend(data);
        out
    }

    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("model.gguf");
        std::fs::write(&p, self.bytes()).unwrap();
        p
    }
}
