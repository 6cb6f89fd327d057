//! Text generation from a language-model photon (`Preprocessor::Text` with no classes, output
//! `[T, vocab]`).
//!
//! # The loop
//! Encode the prompt with the photon's [`Vocab`], then per new token: crop the sequence to its
//! last `max_len` tokens (the longest input the model was built for), forward `[1, T]` ->
//! `[1, T, V]`, take the logits at the last position and [`sample`] one id (temperature 0 =
//! argmax; otherwise the `top-k` largest logits, softmax of `logits / temperature`, one draw from
//! a ChaCha8 generator seeded by `seed`), append it and hand its text to the caller.
//!
//! Text is decoded incrementally: a character vocabulary gives one character per token; a
//! tokenizer's ids are decoded from a window of recent ids and a piece is released only when it
//! no longer ends in an incomplete UTF-8 character (U+FFFD), so a callback never sees half a
//! character. Stop strings are matched on the released text; text that could still become a stop
//! string is held back until it cannot, and the stop string itself is never emitted.
//!
//! Everything is checked before the first forward pass: `max-tokens` against
//! [`MAX_NEW_TOKENS`], the temperature, the prompt (not empty, every character in the
//! vocabulary) and the stop strings.

use std::ops::ControlFlow;

use candle_core::{Device, Tensor};
use candle_nn::ModuleT;
use lepton_data::{Preprocessor, Vocab};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::LoadedModel;

/// The most tokens one generation may produce (a bound on the work of one request).
pub use lepton_infer::MAX_NEW_TOKENS;
/// The most stop strings, and the longest one in bytes.
pub const MAX_STOP_STRINGS: usize = 16;
pub const MAX_STOP_BYTES: usize = 256;

/// How to generate. `GenerateConfig::new(max_tokens)` gives greedy decoding with no stop strings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// Most tokens to generate, 1 to [`MAX_NEW_TOKENS`].
    pub max_tokens: usize,
    /// Softmax temperature in [0, 100]; 0 = greedy (argmax). Default 0.
    pub temperature: f32,
    /// Sample among the `top_k` most likely tokens only; 0 = all. Default 0.
    pub top_k: usize,
    /// Seed of the sampling generator: the same seed, prompt and model give the same text.
    /// Default 0.
    pub seed: u64,
    /// Generation stops before the first of these strings (not emitted). Default none.
    pub stop: Vec<String>,
}

impl GenerateConfig {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn new(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            temperature: 0.0,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
        }
    }

    /// Set the temperature (default 0, greedy).
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Set `top_k` (default 0, off).
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Set the seed (default 0).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set the stop strings (default none).
    pub fn with_stop(mut self, stop: Vec<String>) -> Self {
        self.stop = stop;
        self
    }

    /// Check every field; the error names it.
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 || self.max_tokens > MAX_NEW_TOKENS {
            return Err(invalid(
                "max-tokens",
                format!("is {}; it must be 1 to {MAX_NEW_TOKENS}", self.max_tokens),
            ));
        }
        if !(0.0..=100.0).contains(&self.temperature) {
            return Err(invalid(
                "temperature",
                format!("is {}; it must be in [0, 100]", self.temperature),
            ));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(invalid(
                "stop",
                format!("{} strings, at most {MAX_STOP_STRINGS}", self.stop.len()),
            ));
        }
        if let Some(i) = self
            .stop
            .iter()
            .position(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(invalid(
                &format!("stop[{i}]"),
                format!("must be 1 to {MAX_STOP_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `max-tokens` were generated.
    Length,
    /// A stop string was reached.
    Stop,
    /// The callback asked to stop (e.g. the client went away).
    Cancelled,
}

impl Finish {
    /// OpenAI's name: `length` or `stop` (`cancelled` for a cancelled request).
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::Stop => "stop",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The text after the prompt (the pieces handed to the callback, concatenated).
    pub text: String,
    /// The ids generated (including those of a stop string).
    pub ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish: Finish,
}

fn invalid(field: &str, message: String) -> Error {
    Error::Generate {
        field: field.to_string(),
        message,
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Predict(e.to_string())
}

/// A language-model photon ready to generate: the model, its vocabulary and its longest input.
pub struct Generator<'a> {
    model: &'a LoadedModel,
    vocab: &'a Vocab,
    max_len: usize,
}

impl<'a> Generator<'a> {
    /// The generator of `model`, or an error when it is not a language model.
    pub fn new(model: &'a LoadedModel) -> Result<Self> {
        match model.preprocessor() {
            Preprocessor::Text {
                vocab,
                max_len,
                class_names,
            } if class_names.is_empty() => Ok(Generator {
                model,
                vocab,
                max_len: *max_len,
            }),
            Preprocessor::Text { .. } => Err(invalid(
                "model",
                "is a text classifier, not a language model: use predict".into(),
            )),
            _ => Err(invalid(
                "model",
                "does not take text: only language-model photons generate".into(),
            )),
        }
    }

    pub fn vocab(&self) -> &Vocab {
        self.vocab
    }

    /// The longest input the model takes; longer sequences are cropped to their last tokens.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The prompt's token ids: at least one, every character in the vocabulary (the error names
    /// the character and its position).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(invalid(
                "prompt",
                "is empty; give at least one character to continue".into(),
            ));
        }
        let ids = self
            .vocab
            .encode(prompt)
            .map_err(|e| invalid("prompt", e.to_string()))?;
        if ids.is_empty() {
            return Err(invalid("prompt", "encodes to no tokens".into()));
        }
        Ok(ids)
    }

    /// Logits `[V]` of the next token after `ids` (cropped to the last `max_len`).
    pub fn next_logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let window = &ids[ids.len().saturating_sub(self.max_len)..];
        let t = window.len();
        let x: Vec<f32> = window.iter().map(|&i| i as f32).collect();
        let x = Tensor::from_vec(x, (1, t), &Device::Cpu).map_err(failed)?;
        let y = self.model.model().forward_t(&x, false).map_err(failed)?;
        y.get(0)
            .and_then(|y| y.get(t - 1))
            .and_then(|y| y.to_vec1::<f32>())
            .map_err(failed)
    }

    /// Generate from `prompt`, calling `on_text` with each released piece of text; the callback
    /// returns `ControlFlow::Break(())` to stop (the result's finish is then `Cancelled`).
    pub fn generate(
        &self,
        prompt: &str,
        cfg: &GenerateConfig,
        mut on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generated> {
        cfg.validate()?;
        let mut ids = self.encode_prompt(prompt)?;
        let prompt_tokens = ids.len();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut decoder = Decoder::new(self.vocab);
        let mut stops = StopFilter::new(&cfg.stop);
        let mut text = String::new();
        let mut out = Vec::new();
        let mut emit = |piece: &str, text: &mut String| {
            text.push_str(piece);
            if piece.is_empty() {
                ControlFlow::Continue(())
            } else {
                on_text(piece)
            }
        };
        for _ in 0..cfg.max_tokens {
            let logits = self.next_logits(&ids)?;
            let id = sample(&logits, cfg.temperature, cfg.top_k, &mut rng);
            ids.push(id);
            out.push(id);
            let piece = decoder.push(id)?;
            let (released, stopped) = stops.push(&piece);
            if emit(&released, &mut text).is_break() {
                return Ok(Generated {
                    text,
                    ids: out,
                    prompt_tokens,
                    finish: Finish::Cancelled,
                });
            }
            if stopped {
                return Ok(Generated {
                    text,
                    ids: out,
                    prompt_tokens,
                    finish: Finish::Stop,
                });
            }
        }
        let rest = stops.finish(&decoder.finish()?);
        let finish = if emit(&rest, &mut text).is_break() {
            Finish::Cancelled
        } else {
            Finish::Length
        };
        Ok(Generated {
            text,
            ids: out,
            prompt_tokens,
            finish,
        })
    }
}

/// A fresh seed from the operating system's generator, for requests that give none (report it
/// so the text can be made again).
pub fn random_seed() -> u64 {
    rand::random()
}

/// One token id from `logits`: the first argmax for `temperature == 0`, otherwise a draw from
/// `softmax(logits / temperature)` over the `top_k` largest logits (all when `top_k` is 0 or at
/// least the vocabulary). Non-finite logits never win.
pub fn sample(logits: &[f32], temperature: f32, top_k: usize, rng: &mut impl Rng) -> u32 {
    let key = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
    if temperature == 0.0 {
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if key(x) > key(logits[best]) {
                best = i;
            }
        }
        return best as u32;
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    if top_k > 0 && top_k < logits.len() {
        // Largest first, ties by id: the same candidates whatever the sort's internals.
        idx.sort_by(|&a, &b| key(logits[b]).total_cmp(&key(logits[a])).then(a.cmp(&b)));
        idx.truncate(top_k);
    }
    let max = idx
        .iter()
        .map(|&i| key(logits[i]))
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return idx[0] as u32;
    }
    let t = temperature as f64;
    let weights: Vec<f64> = idx
        .iter()
        .map(|&i| ((key(logits[i]) as f64 - max as f64) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (&i, &w) in idx.iter().zip(&weights) {
        if u < w {
            return i as u32;
        }
        u -= w;
    }
    // Rounding left `u` at the very end: the last candidate with weight.
    idx.iter()
        .zip(&weights)
        .rev()
        .find(|(_, &w)| w > 0.0)
        .map_or(idx[0], |(&i, _)| i) as u32
}

/// Incremental decoding that never splits a UTF-8 character: ids are decoded from
/// `prefix..` and the text beyond the decoding of `prefix..read` is released once it does not end
/// in U+FFFD (the tokenizer's mark of an incomplete byte sequence).
struct Decoder<'a> {
    vocab: &'a Vocab,
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl<'a> Decoder<'a> {
    fn new(vocab: &'a Vocab) -> Self {
        Self {
            vocab,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.vocab.decode(ids).map_err(failed)
    }

    fn push(&mut self, id: u32) -> Result<String> {
        if self.vocab.kind() == "chars" {
            return self.decode(&[id]);
        }
        self.ids.push(id);
        let before = self.decode(&self.ids[self.prefix..self.read])?;
        let now = self.decode(&self.ids[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(new) = now.get(before.len()..) {
                let new = new.to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                return Ok(new);
            }
        }
        Ok(String::new())
    }

    /// What is still held back at the end (an incomplete character is given as decoded).
    fn finish(&mut self) -> Result<String> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let before = self.decode(&self.ids[self.prefix..self.read])?;
        let now = self.decode(&self.ids[self.prefix..])?;
        self.read = self.ids.len();
        Ok(now.get(before.len()..).unwrap_or_default().to_string())
    }
}

/// Holds back text that may be the start of a stop string; reports the first stop string.
struct StopFilter<'a> {
    stop: &'a [String],
    pending: String,
}

impl<'a> StopFilter<'a> {
    fn new(stop: &'a [String]) -> Self {
        Self {
            stop,
            pending: String::new(),
        }
    }

    /// Add `piece`; returns the text that can be released and whether a stop string was reached
    /// (the text before it is released, the stop string and what follows are dropped).
    fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stop.is_empty() {
            return (piece.to_string(), false);
        }
        self.pending.push_str(piece);
        if let Some(at) = self
            .stop
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let keep = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stop.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.pending.len());
        let out = self.pending[..keep].to_string();
        self.pending.drain(..keep);
        (out, false)
    }

    fn finish(&mut self, piece: &str) -> String {
        let (mut out, stopped) = self.push(piece);
        if !stopped {
            out.push_str(&std::mem::take(&mut self.pending));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_largest_and_skips_nan() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(sample(&[0.1, 3.0, 3.0, -1.0], 0.0, 0, &mut rng), 1);
        assert_eq!(sample(&[f32::NAN, 0.5, 0.2], 0.0, 0, &mut rng), 1);
    }

    #[test]
    fn top_k_only_draws_among_the_k_largest() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let logits = [0.0, 5.0, 1.0, 4.9, 2.0];
        for _ in 0..200 {
            let id = sample(&logits, 5.0, 2, &mut rng);
            assert!(id == 1 || id == 3, "{id}");
        }
        // Top-1 at any temperature is greedy.
        assert_eq!(sample(&logits, 1.0, 1, &mut rng), 1);
    }

    #[test]
    fn sampling_follows_the_softmax() {
        // logits ln(1), ln(3): probabilities 1/4 and 3/4.
        let logits = [0.0, 3f32.ln()];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| sample(&logits, 1.0, 0, &mut rng) == 1)
            .count();
        let p = ones as f64 / n as f64;
        assert!((p - 0.75).abs() < 0.02, "{p}");
    }

    #[test]
    fn stop_strings_are_held_back_then_dropped() {
        let stop = vec!["END".to_string()];
        let mut f = StopFilter::new(&stop);
        assert_eq!(f.push("abE"), ("ab".to_string(), false));
        assert_eq!(f.push("N"), (String::new(), false));
        // "ENx" cannot become "END": released.
        assert_eq!(f.push("x"), ("ENx".to_string(), false));
        assert_eq!(f.push("yEN"), ("y".to_string(), false));
        assert_eq!(f.push("Dzz"), (String::new(), true));
        let mut f = StopFilter::new(&stop);
        assert_eq!(f.push("E"), (String::new(), false));
        assert_eq!(f.finish(""), "E");
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (cfg, field) in [
            (GenerateConfig::new(0), "max-tokens"),
            (GenerateConfig::new(MAX_NEW_TOKENS + 1), "max-tokens"),
            (GenerateConfig::new(1).with_temperature(-1.0), "temperature"),
            (
                GenerateConfig::new(1).with_temperature(f32::NAN),
                "temperature",
            ),
            (
                GenerateConfig::new(1).with_stop(vec![String::new()]),
                "stop[0]",
            ),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn tokenizer_decoding_never_splits_a_character() {
        // A byte-level BPE whose tokens are single bytes: "é" is two tokens (0xC3 0xA9).
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
            "post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
            "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
            "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,
            "vocab":{"a":0,"Ã":1,"©":2},"merges":[]}}"#;
        let vocab: Vocab =
            serde_json::from_value(serde_json::json!({"kind": "tokenizer", "json": json})).unwrap();
        assert_eq!(vocab.encode("aé").unwrap(), vec![0, 1, 2]);
        let mut d = Decoder::new(&vocab);
        assert_eq!(d.push(0).unwrap(), "a");
        assert_eq!(d.push(1).unwrap(), "", "half of 'é' is held back");
        assert_eq!(d.push(2).unwrap(), "é");
        assert_eq!(d.push(0).unwrap(), "a");
        assert_eq!(d.finish().unwrap(), "");
    }
}
