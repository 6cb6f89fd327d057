//! Chat JSONL: one `{"messages": [{"role": ..., "content": ...}, ...]}` per line, rendered with
//! the model's chat template; the loss is on the assistant messages' tokens only.
//!
//! Each message's tokens are what its turn adds to the rendering: the text between the template
//! rendered over `messages[..k]` and over `messages[..=k]` (with the generation prompt before an
//! assistant turn, so the assistant header is not trained on). One example per line, truncated to
//! `seq_len` tokens and padded (padding is never trained on).

use std::path::Path;

use lepton_llm::chat_template::{ChatMessage, ChatTemplate};
use serde::Deserialize;

use super::Example;
use crate::error::{Error, Result};

/// Largest chat file accepted (bytes), checked before reading.
pub const MAX_CHAT_BYTES: u64 = 256 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    content: String,
}

fn encode(tok: &tokenizers::Tokenizer, text: &str, what: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(text, false)
        .map_err(|e| Error::Tokenizer {
            what: what.into(),
            message: e.to_string(),
        })?
        .get_ids()
        .to_vec())
}

/// The tokens of one conversation and, per token, whether it belongs to an assistant message.
pub fn render(
    tok: &tokenizers::Tokenizer,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    what: &str,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let tpl = |m: &[ChatMessage], gen: bool| {
        template.render(m, gen).map_err(|e| Error::Tokenizer {
            what: what.into(),
            message: format!("rendering the chat template: {e}"),
        })
    };
    let (mut ids, mut owner) = (Vec::new(), Vec::new());
    let mut done = String::new();
    for k in 0..messages.len() {
        let assistant = messages[k].role == "assistant";
        if assistant {
            let header = tpl(&messages[..k], true)?;
            if let Some(h) = header.strip_prefix(done.as_str()) {
                let t = encode(tok, h, what)?;
                owner.extend(std::iter::repeat_n(false, t.len()));
                ids.extend(t);
                done = header;
            }
        }
        let full = tpl(&messages[..=k], false)?;
        let piece = full.strip_prefix(done.as_str()).ok_or_else(|| Error::Tokenizer {
            what: what.into(),
            message: format!("the chat template's rendering of message {k} does not extend the previous messages' rendering"),
        })?;
        let t = encode(tok, piece, what)?;
        owner.extend(std::iter::repeat_n(assistant, t.len()));
        ids.extend(t);
        done = full;
    }
    Ok((ids, owner))
}

/// Read `path`; errors name the line (1-based) and what is wrong with it.
pub fn load(
    tok: &tokenizers::Tokenizer,
    template: Option<&ChatTemplate>,
    path: &Path,
    seq_len: usize,
    pad_id: u32,
) -> Result<Vec<Example>> {
    let len = fs_err::metadata(path)
        .map_err(Error::io("reading the data", path))?
        .len();
    if len > MAX_CHAT_BYTES {
        return Err(Error::Dataset {
            path: path.into(),
            message: format!("{len} bytes is over the {MAX_CHAT_BYTES}-byte limit for chat data"),
        });
    }
    let Some(template) = template else {
        return Err(Error::Dataset {
            path: path.into(),
            message: "chat data needs a chat template, and the base model has none".into(),
        });
    };
    let text = fs_err::read_to_string(path).map_err(Error::io("reading the data", path))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| Error::Data {
            path: path.into(),
            line: i + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if parsed.messages.is_empty() {
            return Err(bad("\"messages\" is empty".into()));
        }
        let msgs: Vec<ChatMessage> = parsed
            .messages
            .into_iter()
            .map(|m| ChatMessage::new(m.role, m.content))
            .collect();
        if !msgs.iter().any(|m| m.role == "assistant") {
            return Err(bad("no \"assistant\" message: nothing to train on".into()));
        }
        let (mut ids, mut owner) = render(
            tok,
            template,
            &msgs,
            &format!("{}:{}", path.display(), i + 1),
        )?;
        ids.truncate(seq_len);
        owner.truncate(seq_len);
        let mut mask: Vec<bool> = owner.iter().skip(1).copied().collect();
        mask.resize(seq_len - 1, false);
        ids.resize(seq_len, pad_id);
        out.push(Example { tokens: ids, mask });
    }
    if out.is_empty() {
        return Err(Error::Dataset {
            path: path.into(),
            message: "no conversation in the file".into(),
        });
    }
    Ok(out)
}
