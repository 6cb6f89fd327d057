//! Training examples for a causal LM: windows of token ids with a loss mask.
//!
//! - [`text`]: plain text tokenized and packed into fixed windows (loss everywhere).
//! - [`chat`]: chat JSONL rendered with the model's template (loss on assistant tokens only).
//!
//! Position `p` of a window predicts token `p + 1`; `mask[p]` says whether that prediction
//! counts, so a window of `T` tokens has `T − 1` targets, as Hugging Face's shifted labels.

pub mod chat;
pub mod text;

/// One window.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// `seq_len` token ids (chat examples are padded).
    pub tokens: Vec<u32>,
    /// `seq_len − 1` flags: whether position `p`'s prediction of `tokens[p + 1]` is trained on.
    pub mask: Vec<bool>,
}

/// Training and validation windows.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
}

/// Hold out the last `fraction` of `all` (at least one window) for validation.
pub fn split_tail(mut all: Vec<Example>, fraction: f64) -> Splits {
    let n_val = ((all.len() as f64 * fraction).round() as usize).clamp(1, all.len().max(1));
    let val = all.split_off(all.len().saturating_sub(n_val));
    Splits { train: all, val }
}

/// The windows of `spec.data` (and `spec.val-data`) for `base`'s tokenizer and template.
pub fn load_splits(
    base: &crate::base::Base,
    spec: &crate::config::FinetuneSpec,
) -> crate::Result<Splits> {
    use crate::config::DataFormat;
    let pad = base.special.eos_id;
    let read = |path: &std::path::Path| match spec.data_format() {
        DataFormat::Chat => chat::load(
            &base.tokenizer,
            base.template.as_ref(),
            path,
            spec.seq_len,
            pad,
        ),
        _ => text::load(&base.tokenizer, path, spec.seq_len),
    };
    let mut splits = match &spec.val_data {
        Some(v) => Splits {
            train: read(&spec.data)?,
            val: read(v)?,
        },
        None => split_tail(read(&spec.data)?, spec.val_fraction),
    };
    if let Some(m) = spec.max_val_windows {
        splits.val.truncate(m);
    }
    Ok(splits)
}
