//! Text for language models (`format = "text"`): loading, the contiguous split, and the
//! training and validation windows.
//!
//! The text (one `.txt` file, or every `.txt` file of a folder concatenated in name order) is
//! turned into token ids by the [`Vocab`] (characters by default: the distinct characters of the
//! whole text in code-point order, as nanoGPT's `shakespeare_char`; or a `tokenizer.json`). The
//! token sequence is split **by position** into contiguous parts: the first
//! `1 - validation-split - test-split` trains, the next `validation-split` validates, the rest
//! tests (nanoGPT's 90/10 with the default `validation-split = 0.1`).
//!
//! # Windows
//! A window at `s` reads `T + 1` tokens `ids[s..=s + T]` (`T = block-size`): the inputs are
//! `ids[s..s + T]` and the targets the next tokens `ids[s + 1..=s + T]`.
//! - Training step `k` draws `B` window starts uniformly from the training part with an RNG
//!   seeded by `(seed, k)` alone ([`LanguageModelData::train_batch`]), so a resumed run sees the
//!   same windows as an uninterrupted one.
//! - Validation uses fixed windows ([`window_starts`]): non-overlapping (stride `T`), and when
//!   there are more than the budget, that many evenly spaced ones. They depend on neither the seed
//!   nor the step, so validation losses are comparable across runs and checkpoints.
//!
//! # Shapes
//! A batch is `x: f32 [B, T]` (token ids as exact integers) and `y: u32 [B, T]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::batcher::Batch;
use crate::budget::{read_file, MAX_DECODED_BYTES};
use crate::error::{Error, Result};
use crate::idx::PinCheck;
use crate::spec::DataSpec;
use crate::split::rng;
use crate::vocab::Vocab;

pub use crate::budget::MAX_BLOCK_SIZE;

/// The largest text read in total (all files of a folder): 1 GiB, so that its token ids (at most
/// one 4-byte id per byte of text) stay within [`MAX_DECODED_BYTES`].
pub const MAX_TEXT_BYTES: u64 = MAX_DECODED_BYTES / 4;

/// The RNG stream family of the training windows (distinct from shuffling and splitting).
const WINDOW_SEED: u64 = 0x7e47_b10c_0000_0000;

/// The token ids of a text, split by position, with the vocabulary that made them.
#[derive(Debug, Clone)]
pub struct LanguageModelData {
    /// Tokens per window (`T`).
    pub block_size: usize,
    pub vocab: Vocab,
    /// The training part.
    pub train: Arc<Vec<u32>>,
    /// The validation part (may be empty when `validation-split = 0`).
    pub validation: Vec<u32>,
    /// The test part (empty unless `test-split > 0`).
    pub test: Vec<u32>,
    /// Characters of the validation and test parts' text (their token count for a character
    /// vocabulary; the decoded text's for a tokenizer), for bits per character.
    pub validation_chars: usize,
    pub test_chars: usize,
}

impl LanguageModelData {
    /// Characters per token of the validation (`test = false`) or test part.
    pub fn chars_per_token(&self, test: bool) -> f64 {
        let (chars, tokens) = if test {
            (self.test_chars, self.test.len())
        } else {
            (self.validation_chars, self.validation.len())
        };
        chars as f64 / tokens.max(1) as f64
    }

    /// The `B` random training windows of step `step`: a pure function of `(seed, step)`.
    pub fn train_batch(&self, batch_size: usize, seed: u64, step: u64) -> Result<Batch> {
        let last = self.train.len() - (self.block_size + 1);
        let mut r = rng(seed ^ WINDOW_SEED, step);
        let starts: Vec<usize> = (0..batch_size).map(|_| r.random_range(0..=last)).collect();
        window_batch(&self.train, &starts, self.block_size)
    }
}

/// Fixed evaluation windows of `T + 1` tokens over `tokens`: starts `0, T, 2T, ...`, and when
/// there are more than `max` of them, `max` evenly spaced ones. Empty when the part is shorter
/// than one window.
pub fn window_starts(len: usize, block_size: usize, max: usize) -> Vec<usize> {
    if len < block_size + 1 || max == 0 {
        return Vec::new();
    }
    let n = (len - 1) / block_size;
    if n <= max {
        (0..n).map(|i| i * block_size).collect()
    } else {
        (0..max).map(|k| (k * n / max) * block_size).collect()
    }
}

/// The windows at `starts` as a batch: inputs `f32 [B, T]`, targets `u32 [B, T]`.
pub fn window_batch(tokens: &[u32], starts: &[usize], block_size: usize) -> Result<Batch> {
    let b = starts.len();
    let mut x = Vec::with_capacity(b * block_size);
    let mut y = Vec::with_capacity(b * block_size);
    for &s in starts {
        let w = &tokens[s..=s + block_size];
        x.extend(w[..block_size].iter().map(|&id| id as f32));
        y.extend_from_slice(&w[1..]);
    }
    Ok(Batch {
        x: Tensor::from_vec(x, (b, block_size), &Device::Cpu)?,
        y: Tensor::from_vec(y, (b, block_size), &Device::Cpu)?,
        weights: None,
        indices: starts.to_vec(),
    })
}

/// The `.txt` files of `path` (the file itself, or a folder's `.txt` files in name order).
fn text_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt") && !p.is_dir())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::format(path, "the folder holds no .txt file"));
    }
    Ok(files)
}

/// Read the text of `path` (a file or a folder of `.txt` files) as UTF-8, with the SHA-256 of
/// each file; an empty text is an error naming the path.
pub fn load_text(path: &Path) -> Result<(String, Vec<PinCheck>)> {
    let mut text = String::new();
    let mut pins = Vec::new();
    let mut total = 0u64;
    for file in text_files(path)? {
        let bytes = read_file(&file, MAX_TEXT_BYTES - total)?;
        total += bytes.len() as u64;
        pins.push(PinCheck {
            file: file.clone(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            matches_pin: None,
        });
        let s = String::from_utf8(bytes).map_err(|e| {
            Error::format(
                &file,
                format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )
        })?;
        text.push_str(&s);
    }
    if text.is_empty() {
        return Err(Error::format(
            path,
            "the text is empty: a language model needs text to train on",
        ));
    }
    Ok((text, pins))
}

/// Load, tokenize and split the text of a `format = "text"` spec (paths relative to `base_dir`).
/// Every part that is used must hold at least one window of `block-size + 1` tokens: the error
/// names `data.block-size` and the part.
pub fn load_language_model(
    spec: &DataSpec,
    base_dir: &Path,
) -> Result<(LanguageModelData, Vec<PinCheck>)> {
    let path = base_dir.join(&spec.path);
    let block_size = spec.block_size.ok_or_else(|| Error::Spec {
        field: "data.block-size",
        message: "format = \"text\" needs a block-size".into(),
    })?;
    let (text, pins) = load_text(&path)?;
    let vocab = match &spec.tokenizer {
        Some(t) => Vocab::from_tokenizer_file(&base_dir.join(t))?,
        None => Vocab::chars_of(&text)?,
    };
    let ids = vocab.encode(&text).map_err(|e| match e {
        Error::Input(m) => Error::format(&path, m),
        other => other,
    })?;
    drop(text);
    let n = ids.len();
    let n_val = (n as f64 * spec.validation_split as f64).round() as usize;
    let n_test = (n as f64 * spec.test_split as f64).round() as usize;
    let n_train = n.saturating_sub(n_val + n_test);
    let need = block_size + 1;
    let part_err = |part: &str, len: usize, split: &str| Error::Spec {
        field: "data.block-size",
        message: format!(
            "a window of block-size + 1 = {need} tokens does not fit the {part} part of {} \
             ({len} of its {n} tokens{split}): lower block-size or give more text",
            path.display()
        ),
    };
    if n_train < need {
        return Err(part_err("training", n_train, ""));
    }
    if spec.validation_split > 0.0 && n_val < need {
        return Err(part_err(
            "validation",
            n_val,
            &format!(" with validation-split = {}", spec.validation_split),
        ));
    }
    if spec.test_split > 0.0 && n_test < need {
        return Err(part_err(
            "test",
            n_test,
            &format!(" with test-split = {}", spec.test_split),
        ));
    }
    let validation = ids[n_train..n_train + n_val].to_vec();
    let test = ids[n_train + n_val..].to_vec();
    let chars = |part: &[u32]| -> Result<usize> {
        Ok(match vocab.kind() {
            "chars" => part.len(),
            _ => vocab.decode(part)?.chars().count(),
        })
    };
    let (validation_chars, test_chars) = (chars(&validation)?, chars(&test)?);
    let mut train = ids;
    train.truncate(n_train);
    Ok((
        LanguageModelData {
            block_size,
            vocab,
            train: Arc::new(train),
            validation,
            test,
            validation_chars,
            test_chars,
        },
        pins,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str, block: usize) -> LanguageModelData {
        let vocab = Vocab::chars_of(text).unwrap();
        LanguageModelData {
            block_size: block,
            train: Arc::new(vocab.encode(text).unwrap()),
            vocab,
            validation: Vec::new(),
            test: Vec::new(),
            validation_chars: 0,
            test_chars: 0,
        }
    }

    #[test]
    fn windows_pair_inputs_with_the_next_tokens() {
        let d = data("abcdefgh", 3);
        let b = window_batch(&d.train, &[0, 4], 3).unwrap();
        assert_eq!(b.x.to_vec2::<f32>().unwrap(), [[0., 1., 2.], [4., 5., 6.]]);
        assert_eq!(b.y.to_vec2::<u32>().unwrap(), [[1, 2, 3], [5, 6, 7]]);
    }

    #[test]
    fn train_windows_depend_on_seed_and_step_only_and_stay_in_bounds() {
        let text: String = (0..500).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let d = data(&text, 16);
        let a = d.train_batch(8, 3, 17).unwrap().indices;
        assert_eq!(a, d.train_batch(8, 3, 17).unwrap().indices);
        assert_ne!(a, d.train_batch(8, 3, 18).unwrap().indices);
        assert_ne!(a, d.train_batch(8, 4, 17).unwrap().indices);
        for step in 0..200 {
            let b = d.train_batch(4, 0, step).unwrap();
            assert!(b.indices.iter().all(|&s| s + 16 < 500));
        }
        // The last possible start (500 - 17) is reachable: the range is inclusive.
        let d = data("abcdef", 5);
        assert!(d
            .train_batch(4, 0, 0)
            .unwrap()
            .indices
            .iter()
            .all(|&s| s == 0));
    }

    #[test]
    fn a_tokenizer_splits_tokens_by_position_and_counts_characters() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0,"to":1,"be":2,"or":3,"not":4},
            "unk_token":"[UNK]"}}"#;
        std::fs::write(dir.path().join("tok.json"), json).unwrap();
        std::fs::write(dir.path().join("a.txt"), "to be or not to be ".repeat(10)).unwrap();
        let spec: DataSpec = toml::from_str(
            "format = \"text\"\npath = \"a.txt\"\ntokenizer = \"tok.json\"\nblock-size = 4\n\
             validation-split = 0.2\n",
        )
        .unwrap();
        spec.validate().unwrap();
        let (lm, pins) = load_language_model(&spec, dir.path()).unwrap();
        assert_eq!(lm.vocab.kind(), "tokenizer");
        assert_eq!(pins.len(), 1);
        // 60 word tokens: 48 train, 12 validation, in text order.
        assert_eq!((lm.train.len(), lm.validation.len()), (48, 12));
        assert_eq!(&lm.train[..6], &[1, 2, 3, 4, 1, 2]);
        assert_eq!(&lm.validation[..2], &[1, 2]);
        // The decoder-less tokenizer joins words with spaces: "to be or not to be" twice is 26
        // letters and 11 spaces.
        assert_eq!(lm.validation_chars, 26 + 11);
        assert!(lm.chars_per_token(false) > 3.0);
    }

    #[test]
    fn a_folder_reads_its_txt_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "world").unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello ").unwrap();
        std::fs::write(dir.path().join("c.md"), "ignored").unwrap();
        let (text, pins) = load_text(dir.path()).unwrap();
        assert_eq!(text, "hello world");
        assert_eq!(pins.len(), 2);
        let empty = tempfile::tempdir().unwrap();
        let e = load_text(empty.path()).unwrap_err().to_string();
        assert!(e.contains("no .txt file"), "{e}");
        std::fs::write(empty.path().join("x.txt"), [0xff, 0xfe]).unwrap();
        let e = load_text(empty.path()).unwrap_err().to_string();
        assert!(e.contains("x.txt") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn validation_windows_are_fixed_non_overlapping_and_bounded() {
        assert_eq!(window_starts(10, 3, 100), vec![0, 3, 6]);
        assert_eq!(window_starts(3, 3, 100), Vec::<usize>::new());
        assert_eq!(window_starts(4, 3, 100), vec![0]);
        let s = window_starts(1001, 10, 7);
        assert_eq!(s.len(), 7);
        assert!(s.windows(2).all(|w| w[1] >= w[0] + 10));
        assert!(s.iter().all(|&x| x + 11 <= 1001));
    }
}
