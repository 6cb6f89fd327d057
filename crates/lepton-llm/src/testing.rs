//! Fixtures for tests of this crate and the crates above it (not part of the API).
//!
//! [`write_random_bert`]: a tiny BERT folder with seeded random weights, a word-level tokenizer
//! and mean pooling, small enough to build in milliseconds.

use std::path::Path;

use rand::{Rng, SeedableRng};

/// Hidden size of [`write_random_bert`]'s model.
pub const HIDDEN: usize = 64;
/// Intermediate size (not a multiple of 32, so the int8 kernels' row padding is exercised).
pub const INTERMEDIATE: usize = 80;
/// Encoder layers.
pub const LAYERS: usize = 2;
/// The tokenizer's words (ids 3..), besides `[UNK]`, `[CLS]`, `[SEP]`.
pub const WORDS: [&str; 12] = [
    "the", "cat", "dog", "sits", "runs", "in", "garden", "river", "old", "new", "a", "song",
];

/// Write a tiny BERT folder (`config.json`, `model.safetensors`, `tokenizer.json`) to `dir`
/// with weights drawn from `seed`.
pub fn write_random_bert(dir: &Path, seed: u64) -> std::io::Result<()> {
    let (h, ff) = (HIDDEN, INTERMEDIATE);
    let vocab = WORDS.len() + 3;
    let c = serde_json::json!({
        "model_type": "bert", "vocab_size": vocab, "hidden_size": h,
        "num_hidden_layers": LAYERS, "num_attention_heads": 4, "intermediate_size": ff,
        "max_position_embeddings": 32, "hidden_act": "gelu",
    });
    let config: crate::bert::BertConfig =
        serde_json::from_value(c.clone()).expect("fixture config parses");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = crate::bert::expected_tensors(&config)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let u: f32 = rng.random_range(-1.0..1.0);
                    if name.ends_with("LayerNorm.weight") {
                        1.0 + 0.1 * u
                    } else if name.ends_with("bias") {
                        0.05 * u
                    } else {
                        0.2 * u
                    }
                })
                .collect();
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, s, b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .expect("fixture tensor");
            (n.clone(), v)
        })
        .collect();
    std::fs::create_dir_all(dir)?;
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))
        .map_err(std::io::Error::other)?;
    std::fs::write(dir.join("config.json"), c.to_string())?;
    let mut vocab_map = serde_json::Map::new();
    for (i, w) in ["[UNK]", "[CLS]", "[SEP]"].iter().chain(&WORDS).enumerate() {
        vocab_map.insert(w.to_string(), i.into());
    }
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "[UNK]"},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string())
}

/// `n` deterministic sentences of [`WORDS`], 3 to 12 words long.
pub fn random_sentences(n: usize, seed: u64) -> Vec<String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(3..=12);
            (0..len)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
