//! [`Vocab`]: how text becomes token ids and back, stored in the run and the photon so that
//! generation and serving see exactly the training-time mapping.
//!
//! Two kinds:
//! - `chars`: one id per distinct character of the training text, in code-point order (what
//!   nanoGPT's `shakespeare_char` does). A character the vocabulary has not seen is an error
//!   naming it and its position, never a silent substitute.
//! - `tokenizer`: a Hugging Face `tokenizer.json`, kept verbatim and parsed once by the
//!   `tokenizers` crate.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest `tokenizer.json` read (the biggest public ones are ~20 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// Token ids are stored in f32 tensors: every id must be exact in f32.
pub const MAX_VOCAB: usize = 1 << 24;

/// A text vocabulary: text to token ids and back.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Stored", into = "Stored")]
pub struct Vocab {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Chars(Vec<char>),
    Tokenizer {
        json: String,
        tokenizer: Arc<tokenizers::Tokenizer>,
    },
}

/// The serialized form.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum Stored {
    /// The characters in id order.
    Chars { chars: String },
    /// A `tokenizer.json`, verbatim.
    Tokenizer { json: String },
}

impl TryFrom<Stored> for Vocab {
    type Error = Error;
    fn try_from(s: Stored) -> Result<Self> {
        match s {
            Stored::Chars { chars } => {
                let chars: Vec<char> = chars.chars().collect();
                if chars.is_empty() || chars.len() > MAX_VOCAB {
                    return Err(Error::Input(format!(
                        "vocab: a character vocabulary needs 1 to {MAX_VOCAB} characters, got {}",
                        chars.len()
                    )));
                }
                if chars.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::Input(
                        "vocab: characters must be distinct and in code-point order".into(),
                    ));
                }
                Ok(Vocab {
                    kind: Kind::Chars(chars),
                })
            }
            Stored::Tokenizer { json } => Vocab::from_tokenizer_json(json, "vocab"),
        }
    }
}

impl From<Vocab> for Stored {
    fn from(v: Vocab) -> Self {
        match v.kind {
            Kind::Chars(chars) => Stored::Chars {
                chars: chars.into_iter().collect(),
            },
            Kind::Tokenizer { json, .. } => Stored::Tokenizer { json },
        }
    }
}

impl PartialEq for Vocab {
    fn eq(&self, other: &Self) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Chars(a), Kind::Chars(b)) => a == b,
            (Kind::Tokenizer { json: a, .. }, Kind::Tokenizer { json: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Chars(c) => write!(f, "Vocab::Chars({} characters)", c.len()),
            Kind::Tokenizer { .. } => write!(f, "Vocab::Tokenizer({} tokens)", self.len()),
        }
    }
}

impl Vocab {
    /// The character vocabulary of `text`: its distinct characters in code-point order.
    pub fn chars_of(text: &str) -> Result<Self> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Stored::Chars {
            chars: chars.into_iter().collect(),
        }
        .try_into()
    }

    /// A Hugging Face `tokenizer.json` file (at most [`MAX_TOKENIZER_BYTES`]).
    pub fn from_tokenizer_file(path: &Path) -> Result<Self> {
        let len = fs_err::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if len > MAX_TOKENIZER_BYTES {
            return Err(Error::format(
                path,
                format!(
                    "{len} bytes is more than the {MAX_TOKENIZER_BYTES}-byte limit for a tokenizer"
                ),
            ));
        }
        let json = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_tokenizer_json(json, &path.display().to_string())
    }

    fn from_tokenizer_json(json: String, origin: &str) -> Result<Self> {
        let tokenizer = tokenizers::Tokenizer::from_bytes(json.as_bytes())
            .map_err(|e| Error::Input(format!("{origin}: not a valid tokenizer.json: {e}")))?;
        let n = tokenizer.get_vocab_size(true);
        if n == 0 || n > MAX_VOCAB {
            return Err(Error::Input(format!(
                "{origin}: a tokenizer needs 1 to {MAX_VOCAB} tokens, this one has {n}"
            )));
        }
        Ok(Vocab {
            kind: Kind::Tokenizer {
                json,
                tokenizer: Arc::new(tokenizer),
            },
        })
    }

    /// The number of token ids (`0..len()`).
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Chars(c) => c.len(),
            Kind::Tokenizer { tokenizer, .. } => tokenizer.get_vocab_size(true),
        }
    }

    /// Never true: a vocabulary has at least one token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `"chars"` or `"tokenizer"`.
    pub fn kind(&self) -> &'static str {
        match &self.kind {
            Kind::Chars(_) => "chars",
            Kind::Tokenizer { .. } => "tokenizer",
        }
    }

    /// The id that pads a text classifier's input (see [`crate::text_classification`]): the NUL
    /// character `'\0'` of a character vocabulary (id 0 when present, as it sorts first), a
    /// tokenizer's `[PAD]` / `<pad>` token; otherwise 0.
    pub fn pad_id(&self) -> u32 {
        match &self.kind {
            Kind::Chars(chars) => chars.binary_search(&'\0').map_or(0, |i| i as u32),
            Kind::Tokenizer { tokenizer, .. } => ["[PAD]", "<pad>"]
                .iter()
                .find_map(|t| tokenizer.token_to_id(t))
                .unwrap_or(0),
        }
    }

    /// The token ids of `text`; a character outside a character vocabulary is an error naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.kind {
            Kind::Chars(chars) => text
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    chars.binary_search(&c).map(|id| id as u32).map_err(|_| {
                        Error::Input(format!(
                            "character {c:?} (U+{:04X}) at position {i} is not in the model's \
                                 {}-character vocabulary",
                            c as u32,
                            chars.len()
                        ))
                    })
                })
                .collect(),
            Kind::Tokenizer { tokenizer, .. } => tokenizer
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Input(format!("tokenizing the text: {e}"))),
        }
    }

    /// The text of `ids`; an id outside `0..len()` is an error naming it.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let n = self.len();
        if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= n) {
            return Err(Error::Input(format!(
                "token id {id} at position {i} is outside the vocabulary (0..{n})"
            )));
        }
        match &self.kind {
            Kind::Chars(chars) => Ok(ids.iter().map(|&id| chars[id as usize]).collect()),
            Kind::Tokenizer { tokenizer, .. } => tokenizer
                .decode(ids, false)
                .map_err(|e| Error::Input(format!("decoding token ids: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_round_trip_and_serde() {
        let v = Vocab::chars_of("hello, world\n").unwrap();
        assert_eq!(v.len(), 10);
        assert_eq!(v.kind(), "chars");
        let ids = v.encode("world").unwrap();
        assert_eq!(v.decode(&ids).unwrap(), "world");
        // Code-point order: '\n' < ' ' < ',' < letters.
        assert_eq!(v.encode("\n ,").unwrap(), vec![0, 1, 2]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"kind":"chars","chars":"\n ,dehlorw"}"#);
        let back: Vocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn unknown_characters_and_ids_are_named() {
        let v = Vocab::chars_of("abc").unwrap();
        let e = v.encode("abz").unwrap_err().to_string();
        assert!(e.contains("'z'") && e.contains("position 2"), "{e}");
        let e = v.decode(&[0, 3]).unwrap_err().to_string();
        assert!(e.contains("token id 3") && e.contains("0..3"), "{e}");
    }

    #[test]
    fn bad_stored_vocabularies_are_refused() {
        for json in [
            r#"{"kind":"chars","chars":""}"#,
            r#"{"kind":"chars","chars":"ba"}"#,
            r#"{"kind":"chars","chars":"aa"}"#,
            r#"{"kind":"chars","chars":"ab","extra":1}"#,
            r#"{"kind":"tokenizer","json":"{}"}"#,
        ] {
            assert!(serde_json::from_str::<Vocab>(json).is_err(), "{json}");
        }
        assert!(Vocab::chars_of("").is_err());
    }

    #[test]
    fn tokenizer_json_round_trip() {
        // A minimal word-level tokenizer.
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0,"to":1,"be":2,"or":3,"not":4},
            "unk_token":"[UNK]"}}"#;
        let v = Vocab::from_tokenizer_json(json.to_string(), "test").unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(
            v.encode("to be or not to be").unwrap(),
            vec![1, 2, 3, 4, 1, 2]
        );
        let back: Vocab = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.encode("not").unwrap(), vec![4]);
    }
}
