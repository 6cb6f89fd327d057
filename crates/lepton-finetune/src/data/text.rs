//! Plain text: tokenized (no special tokens, as `tokenizer(text)` of a Llama tokenizer without
//! BOS) and cut into consecutive windows of `seq_len` tokens; the tail that does not fill a
//! window is dropped.

use std::path::Path;

use super::Example;
use crate::error::{Error, Result};

/// Largest text file accepted (bytes), checked before reading.
pub const MAX_TEXT_BYTES: u64 = 256 << 20;

/// Windows of `text`; `what` names the source in errors.
pub fn windows_of(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
    seq_len: usize,
    what: &str,
) -> Result<Vec<Example>> {
    let ids = tokenizer
        .encode(text, false)
        .map_err(|e| Error::Tokenizer {
            what: what.into(),
            message: e.to_string(),
        })?
        .get_ids()
        .to_vec();
    Ok(ids
        .chunks_exact(seq_len)
        .map(|w| Example {
            tokens: w.to_vec(),
            mask: vec![true; seq_len - 1],
        })
        .collect())
}

/// Read `path` and pack it into windows; an empty result is an error naming the file.
pub fn load(
    tokenizer: &tokenizers::Tokenizer,
    path: &Path,
    seq_len: usize,
) -> Result<Vec<Example>> {
    let len = fs_err::metadata(path)
        .map_err(Error::io("reading the data", path))?
        .len();
    if len > MAX_TEXT_BYTES {
        return Err(Error::Dataset {
            path: path.into(),
            message: format!("{len} bytes is over the {MAX_TEXT_BYTES}-byte limit for text data"),
        });
    }
    let text = fs_err::read_to_string(path).map_err(Error::io("reading the data", path))?;
    let w = windows_of(tokenizer, &text, seq_len, &path.display().to_string())?;
    if w.is_empty() {
        return Err(Error::Dataset {
            path: path.into(),
            message: format!("fewer than seq-len = {seq_len} tokens: no training window"),
        });
    }
    Ok(w)
}
