//! Crafted model files (issue 12, finding 7): every size, offset and hyper-parameter read from a
//! GGUF file or a Hugging Face folder is checked before it is used, and the error names the file
//! and the field. Before the fix these aborted the process (multi-TB allocations), panicked
//! (division by zero), loaded the wrong bytes, or were accepted.
//!
//! The files are written here from a tiny Llama (32 wide, 1 block) that loads and generates, then
//! broken one field at a time.

use std::path::Path;

use lepton_llm::{Embedder, TextModel};

use crate::tiny_gguf::{tiny, Tiny, HIDDEN, V};

/// Breaks one field of the tiny model.
type Breaker = Box<dyn Fn(&mut Tiny)>;

fn load_err(path: &Path) -> String {
    match TextModel::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    }
}

#[test]
fn the_tiny_gguf_loads_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TextModel::load(tiny().write(tmp.path())).unwrap();
    assert_eq!(model.llama().config().num_layers, 1);
    let ids = model.tokenize("abc").unwrap();
    assert!(!ids.is_empty());
}

#[test]
fn crafted_gguf_sizes_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases: Vec<(Breaker, &str)> = vec![
        // SIGABRT on a multi-TB allocation before.
        (
            Box::new(|t| {
                t.set("llama.block_count", V::U64(1 << 40));
            }),
            "llama.block_count is 1099511627776 but the file has no tensor blk.1099511627775",
        ),
        (
            Box::new(|t| {
                t.set("llama.vocab_size", V::U64(1 << 36));
                t.tensor("token_embd.weight").shape = vec![1 << 36, HIDDEN];
            }),
            "tensor token_embd.weight: 8796093022208 bytes",
        ),
        // A divide-by-zero panic in the header parser before.
        (
            Box::new(|t| {
                t.set("general.alignment", V::U32(0));
            }),
            "general.alignment is 0, expected a power of two",
        ),
        (
            Box::new(|t| {
                t.set("general.alignment", V::U32(48));
            }),
            "general.alignment is 48",
        ),
        // Wrapped past 2^64 and read the wrong bytes before.
        (
            Box::new(|t| {
                t.tensor("blk.0.ffn_down.weight").offset = Some(u64::MAX - 31);
            }),
            "tensor blk.0.ffn_down.weight: 8192 bytes at offset 18446744073709551584",
        ),
        (
            Box::new(|t| {
                t.tensor("blk.0.attn_q.weight").offset = Some(1 << 20);
            }),
            "tensor blk.0.attn_q.weight: 4096 bytes at offset 1048576",
        ),
        (
            Box::new(|t| {
                t.tensor("blk.0.attn_q.weight").offset = Some(4);
            }),
            "offset 4 is not a multiple of the alignment 32",
        ),
        (
            Box::new(|t| {
                t.tensor("token_embd.weight").shape = vec![1 << 40, 1 << 40];
            }),
            "dimensions [1099511627776, 1099511627776] overflow",
        ),
        // Accepted before.
        (
            Box::new(|t| {
                t.set("llama.attention.layer_norm_rms_epsilon", V::F32(f32::NAN));
            }),
            "llama.attention.layer_norm_rms_epsilon is NaN, expected a finite positive number",
        ),
        (
            Box::new(|t| {
                t.set("llama.rope.freq_base", V::F32(-10_000.0));
            }),
            "llama.rope.freq_base is -10000, expected a finite positive number",
        ),
        (
            Box::new(|t| {
                t.set("llama.rope.freq_base", V::F32(f32::INFINITY));
            }),
            "llama.rope.freq_base is inf",
        ),
        (
            Box::new(|t| {
                t.set("llama.context_length", V::I32(-5));
            }),
            "llama.context_length is not a non-negative integer",
        ),
        (
            Box::new(|t| {
                t.set("llama.context_length", V::U32(0));
            }),
            "llama.context_length is 0, expected at least 1",
        ),
        (
            Box::new(|t| {
                t.set("llama.attention.head_count", V::U32(0));
            }),
            "llama.attention.head_count is 0",
        ),
        (
            Box::new(|t| {
                t.set("llama.attention.head_count", V::U32(32));
            }),
            "head dimension 1 (llama.embedding_length / llama.attention.head_count) is odd",
        ),
        (
            Box::new(|t| {
                t.set("llama.attention.head_count_kv", V::U32(3));
            }),
            "not a multiple of llama.attention.head_count_kv 3",
        ),
        // A template that compiles but cannot render: refused at load, not a 500 per request.
        (
            Box::new(|t| {
                t.set(
                    "tokenizer.chat_template",
                    V::Str("{{ messages[0].content | no_such_filter }}".into()),
                );
            }),
            "tokenizer.chat_template: rendering the chat template on a probe conversation",
        ),
    ];
    for (break_it, want) in cases {
        let mut t = tiny();
        break_it(&mut t);
        let p = t.write(d);
        let e = load_err(&p);
        assert!(e.contains(want), "want {want:?} in: {e}");
        assert!(e.contains("model.gguf"), "the error names the file: {e}");
    }
}

/// A BERT folder whose config.json asks for a billion layers: it grew to 7 GB before failing.
#[test]
fn crafted_bert_config_sizes_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (h, ff, vocab) = (4usize, 8usize, 5usize);
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![vocab, h]),
        ("embeddings.position_embeddings.weight".into(), vec![16, h]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for (name, shape) in [
        ("attention.self.query.weight", vec![h, h]),
        ("attention.self.query.bias", vec![h]),
        ("attention.self.key.weight", vec![h, h]),
        ("attention.self.key.bias", vec![h]),
        ("attention.self.value.weight", vec![h, h]),
        ("attention.self.value.bias", vec![h]),
        ("attention.output.dense.weight", vec![h, h]),
        ("attention.output.dense.bias", vec![h]),
        ("attention.output.LayerNorm.weight", vec![h]),
        ("attention.output.LayerNorm.bias", vec![h]),
        ("intermediate.dense.weight", vec![ff, h]),
        ("intermediate.dense.bias", vec![ff]),
        ("output.dense.weight", vec![h, ff]),
        ("output.dense.bias", vec![h]),
        ("output.LayerNorm.weight", vec![h]),
        ("output.LayerNorm.bias", vec![h]),
    ] {
        tensors.push((format!("encoder.layer.0.{name}"), shape));
    }
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s)| {
            let len: usize = s.iter().product();
            let bytes = (0..len)
                .flat_map(|i| (0.1 * (i % 5) as f32 + 0.5).to_le_bytes())
                .collect();
            (n, s, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &d.join("model.safetensors")).unwrap();
    std::fs::write(
        d.join("tokenizer.json"),
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
        "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"[UNK]":0,"[CLS]":1,"[SEP]":2,"a":3,"b":4},"unk_token":"[UNK]"}}"#,
    )
    .unwrap();
    let config = |layers: &str, eps: &str| {
        format!(
            r#"{{"model_type": "bert", "vocab_size": {vocab}, "hidden_size": {h}, "num_hidden_layers": {layers},
            "num_attention_heads": 2, "intermediate_size": {ff}, "max_position_embeddings": 16,
            "layer_norm_eps": {eps}}}"#
        )
    };
    let write = |layers: &str, eps: &str| {
        std::fs::write(d.join("config.json"), config(layers, eps)).unwrap();
    };
    write("1", "1e-12");
    Embedder::load(d).expect("the tiny BERT loads");
    let err = |d: &Path| match Embedder::load(d) {
        Ok(_) => panic!("loaded"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    };
    write("1000000000", "1e-12");
    let e = err(d);
    assert!(
        e.contains("config.json") && e.contains("field num_hidden_layers is 1000000000"),
        "{e}"
    );
    for eps in ["-1e-12", "0"] {
        write("1", eps);
        let e = err(d);
        assert!(e.contains("field layer_norm_eps is"), "{e}");
    }
    // A config.json far beyond any real one is refused by its size, not read whole.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(17 << 20));
    std::fs::write(d.join("config.json"), big).unwrap();
    let e = err(d);
    assert!(e.contains("config.json") && e.contains("limit"), "{e}");
}
