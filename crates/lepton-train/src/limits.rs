//! Budgets a spec must respect, checked when it is loaded, before any data is read or tensor
//! allocated: an absurd number is a spec error naming its key, never an abort.
//!
//! | check | limit |
//! |---|---|
//! | `train.epochs` | [`MAX_EPOCHS`] |
//! | `train.steps` | [`MAX_STEPS`] |
//! | `train.batch-size`, `train.eval-batch-size` | [`MAX_BATCH_SIZE`] |
//! | every integer under `[model]` (widths, channels, kernel sizes, input dims) | [`MAX_MODEL_INT`] |
//! | activations of one training step (all layer outputs, values and gradients, `f32`) | [`MAX_ACTIVATION_BYTES`] |
//!
//! The per-layer parameter count is lepton-nn's (each layer's shape rule knows its weights).

use crate::error::{Error, Result};

/// Most epochs a spec may ask for: 1,000,000.
pub const MAX_EPOCHS: u64 = 1_000_000;
/// The most optimizer steps of a language model (`train.steps`).
pub const MAX_STEPS: u64 = 1_000_000_000;
/// Largest training or evaluation batch: 2^20 samples.
pub const MAX_BATCH_SIZE: usize = 1 << 20;
/// Largest integer anywhere in `[model]`: 2^24.
pub const MAX_MODEL_INT: i64 = 1 << 24;
/// Largest activation memory of one training step: 16 GiB.
pub const MAX_ACTIVATION_BYTES: u128 = 16 << 30;

/// Every integer in the `[model]` table of `text` must be at most [`MAX_MODEL_INT`]; the error
/// names the key (`model.layers[1].out-features`). Text that is not TOML is left to the parser.
pub fn check_model_integers(text: &str) -> Result<()> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    match doc.get("model") {
        Some(model) => walk(model, "model"),
        None => Ok(()),
    }
}

fn walk(v: &toml::Value, key: &str) -> Result<()> {
    match v {
        toml::Value::Integer(i) if *i > MAX_MODEL_INT => Err(Error::spec(
            key,
            format!("{i} is over the limit of {MAX_MODEL_INT}"),
        )),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| walk(x, &format!("{key}[{i}]"))),
        toml::Value::Table(t) => t
            .iter()
            .try_for_each(|(k, x)| walk(x, &format!("{key}.{k}"))),
        _ => Ok(()),
    }
}

/// Activation memory of one training step with `shapes` (the output shape of each layer, per
/// sample), against [`MAX_ACTIVATION_BYTES`]; the error names `train.batch-size` and the
/// largest layer.
pub fn check_activations(shapes: &[Vec<usize>], batch_size: usize) -> Result<()> {
    let sizes: Vec<u128> = shapes
        .iter()
        .map(|s| s.iter().map(|&d| d as u128).product::<u128>())
        .collect();
    let per_sample: u128 = sizes.iter().sum();
    // Values and gradients, f32.
    let bytes = per_sample
        .saturating_mul(batch_size as u128)
        .saturating_mul(8);
    if bytes <= MAX_ACTIVATION_BYTES {
        return Ok(());
    }
    let (largest, _) = sizes
        .iter()
        .enumerate()
        .max_by_key(|(_, s)| **s)
        .unwrap_or((0, &0));
    Err(Error::spec(
        "train.batch-size",
        format!(
            "one step of {batch_size} samples needs {:.1} GiB of activations, over the {} GiB \
             limit (largest: model.layers[{largest}] with output {:?} per sample)",
            bytes as f64 / (1u64 << 30) as f64,
            MAX_ACTIVATION_BYTES >> 30,
            shapes.get(largest).map(Vec::as_slice).unwrap_or(&[]),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_integers_over_the_limit_name_their_key() {
        let text = "[model]\ninput = [8]\n[[model.layers]]\ntype = \"linear\"\nout-features = 1000000000000\n";
        let err = check_model_integers(text).unwrap_err().to_string();
        assert!(err.contains("model.layers[0].out-features"), "{err}");
        let text = "[model]\ninput = [3, 99999999999]\n";
        let err = check_model_integers(text).unwrap_err().to_string();
        assert!(err.contains("model.input[1]"), "{err}");
        assert!(check_model_integers("[model]\ninput = [1, 28, 28]\n").is_ok());
        assert!(check_model_integers("not toml [").is_ok());
    }

    #[test]
    fn activations_over_the_budget_name_the_batch_size_and_the_layer() {
        let shapes = vec![vec![64, 1024, 1024], vec![10]];
        assert!(check_activations(&shapes, 1).is_ok());
        let err = check_activations(&shapes, 1024).unwrap_err().to_string();
        assert!(
            err.contains("train.batch-size") && err.contains("model.layers[0]"),
            "{err}"
        );
        let huge = vec![vec![usize::MAX, usize::MAX]];
        assert!(check_activations(&huge, usize::MAX).is_err());
    }
}
