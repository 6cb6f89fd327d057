//! A text-generation model: decoder weights, tokenizer and chat template from one GGUF file or a
//! Hugging Face Llama folder.

use std::path::Path;

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::gguf::{GgufFile, SpecialTokens};
use crate::llama::Llama;
use crate::{Error, Result};

/// A loaded generative model (Llama family, from GGUF or a Hugging Face folder).
pub struct TextModel {
    name: String,
    llama: Llama,
    tokenizer: tokenizers::Tokenizer,
    special: SpecialTokens,
    template: Option<ChatTemplate>,
}

impl std::fmt::Debug for TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextModel")
            .field("name", &self.name)
            .field("config", self.llama.config())
            .finish()
    }
}

impl TextModel {
    /// Load a GGUF file or a Hugging Face Llama folder. Errors name the file and the
    /// missing/inconsistent key, field or tensor.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::load_folder(path);
        }
        let mut file = GgufFile::open(path)?;
        let config = file.llama_config()?;
        let (tokenizer, special) = file.tokenizer()?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(Error::Config {
                path: path.into(),
                message: format!(
                    "the tokenizer has {vocab} tokens but the model's vocabulary is {}",
                    config.vocab_size
                ),
            });
        }
        let template = match file.chat_template() {
            Some(src) => Some(load_template(
                &src,
                &special,
                path,
                "tokenizer.chat_template",
            )?),
            None => match config.arch.default_chat_template() {
                Some(src) => Some(load_template(src, &special, path, "default chat template")?),
                None => None,
            },
        };
        let name = config.name.clone();
        let llama = Llama::load(&mut file, config)?;
        // The metadata (every token as a string) and the tokenizer's build buffers are freed
        // by now; give their pages back (see `runtime::memory`).
        drop(file);
        crate::runtime::memory::release_freed();
        Ok(Self {
            name,
            llama,
            tokenizer,
            special,
            template,
        })
    }

    /// Load a Hugging Face folder (`config.json` of a `LlamaForCausalLM`, safetensors weights,
    /// `tokenizer.json`, `tokenizer_config.json`); see [`crate::hf_llama`].
    pub fn load_folder(dir: &Path) -> Result<Self> {
        let folder = crate::hf_llama::open_llama_folder(dir)?;
        let config = crate::hf_llama::llama_config(&folder)?;
        let (tokenizer, special, template) = crate::hf_llama::tokenizer_and_template(&folder)?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(Error::Config {
                path: dir.join("tokenizer.json"),
                message: format!(
                    "the tokenizer has {vocab} tokens but config.json's vocab_size is {}",
                    config.vocab_size
                ),
            });
        }
        let template = match template {
            Some(src) => Some(load_template(&src, &special, dir, "chat template")?),
            None => None,
        };
        let mut weights = crate::hf_llama::SafetensorsWeights::open(&folder, &config)?;
        // Layers are sized by the tensors they load, but refuse a count the files cannot back
        // before anything else is done with it.
        let last = format!("blk.{}.attn_norm.weight", config.num_layers - 1);
        if !crate::llama::WeightSource::has_tensor(&weights, &last) {
            return Err(Error::Config {
                path: dir.join("config.json"),
                message: format!(
                    "field num_hidden_layers is {} but the weights have no tensor model.layers.{}.input_layernorm.weight",
                    config.num_layers,
                    config.num_layers - 1
                ),
            });
        }
        let name = config.name.clone();
        let llama = Llama::load(&mut weights, config)?;
        drop(weights);
        crate::runtime::memory::release_freed();
        Ok(Self {
            name,
            llama,
            tokenizer,
            special,
            template,
        })
    }

    /// The model's name (`general.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Longest prompt + completion, in tokens.
    pub fn context_length(&self) -> usize {
        self.llama.config().context_length
    }

    pub fn llama(&self) -> &Llama {
        &self.llama
    }

    /// Tokens that end generation.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids = vec![self.special.eos_id];
        ids.extend(&self.special.extra_eos_ids);
        ids
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are recognised, and
    /// the BOS token is prepended when the file asks for it.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(Error::tokenizer("tokenizing the prompt"))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.special.add_bos {
            ids.push(self.special.bos_id);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, special tokens skipped.
    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(Error::tokenizer("decoding tokens"))
    }

    /// Render `messages` with the model's chat template, ending where the assistant's reply begins.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String> {
        match &self.template {
            Some(t) => t.render(messages, true),
            None => Err(Error::InvalidRequest {
                field: "messages",
                message: format!("model {} has no chat template", self.name),
            }),
        }
    }
}

/// Compile and probe a chat template; a failure refuses the model, naming the file and template.
fn load_template(
    source: &str,
    special: &SpecialTokens,
    path: &Path,
    what: &str,
) -> Result<ChatTemplate> {
    ChatTemplate::new(source, &special.bos, &special.eos).map_err(|e| match e {
        Error::Template { op, source } => Error::Template {
            op: format!("{}: {what}: {op}", path.display()),
            source,
        },
        other => other,
    })
}

/// Turns generated token ids into text pieces that are valid UTF-8 on their own: a token that ends
/// inside a multi-byte character is held back until the character is complete.
#[derive(Debug, Default)]
pub(crate) struct Detokenizer {
    ids: Vec<u32>,
    /// Start of the window decoded for context (byte-level BPE merges across token boundaries).
    prefix: usize,
    /// Tokens up to here have been emitted as text.
    read: usize,
}

impl Detokenizer {
    /// Add one token; returns the new text (possibly empty).
    pub(crate) fn push(&mut self, model: &TextModel, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = model.detokenize(&self.ids[self.prefix..self.read])?;
        let now = model.detokenize(&self.ids[self.prefix..])?;
        if now.len() > before.len()
            && !now.ends_with('\u{FFFD}')
            && now.is_char_boundary(before.len())
        {
            let new = now[before.len()..].to_owned();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(new)
        } else {
            Ok(String::new())
        }
    }
}
