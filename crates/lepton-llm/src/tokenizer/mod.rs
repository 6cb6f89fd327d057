//! Tokenization through the `tokenizers` crate: a thin wrapper that loads `tokenizer.json`
//! without the padding and truncation baked into the file (we pad per batch and decide on
//! truncation per request), and reports whether an input was truncated.

pub mod chat_template;
pub mod spm;

use std::path::Path;

use crate::error::{Error, Result};

/// One encoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Tokens the input had before truncation (equal to `ids.len()` when not truncated).
    pub full_len: usize,
}

impl Encoded {
    pub fn truncated(&self) -> bool {
        self.full_len > self.ids.len()
    }
}

/// A tokenizer.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Load a `tokenizer.json`; its fixed padding and truncation settings are dropped.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::hf::read_text_bounded(path, crate::hf::MAX_TOKENIZER_BYTES)?;
        let mut inner: tokenizers::Tokenizer = text.parse().map_err(Error::tokenizer(format!(
            "loading tokenizer {}",
            path.display()
        )))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(Error::tokenizer("disabling truncation"))?;
        Ok(Tokenizer { inner })
    }

    /// Wrap a tokenizer built elsewhere (e.g. from a GGUF vocabulary).
    pub fn from_inner(inner: tokenizers::Tokenizer) -> Self {
        Tokenizer { inner }
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of one text, with the model's special tokens when `special`.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, special)
            .map_err(Error::tokenizer("tokenizing a text"))?
            .get_ids()
            .to_vec())
    }

    /// Encode several texts (in parallel), with special tokens. With `max_len`, a longer input
    /// keeps its first tokens and its trailing special tokens (`[CLS] a b … [SEP]`), as the
    /// `tokenizers` truncation of a single sequence does.
    pub fn encode_batch(&self, texts: &[&str], max_len: Option<usize>) -> Result<Vec<Encoded>> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(Error::tokenizer("tokenizing a batch of texts"))?;
        Ok(encs
            .into_iter()
            .map(|e| {
                let (ids, types) = (e.get_ids(), e.get_type_ids());
                let n = ids.len();
                match max_len {
                    Some(max) if n > max => {
                        let tail = e
                            .get_special_tokens_mask()
                            .iter()
                            .rev()
                            .take_while(|&&m| m == 1)
                            .count()
                            .min(max);
                        let cut = |v: &[u32]| [&v[..max - tail], &v[n - tail..]].concat();
                        Encoded {
                            ids: cut(ids),
                            type_ids: cut(types),
                            full_len: n,
                        }
                    }
                    _ => Encoded {
                        ids: ids.to_vec(),
                        type_ids: types.to_vec(),
                        full_len: n,
                    },
                }
            })
            .collect())
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(Error::tokenizer("decoding token ids"))
    }
}
