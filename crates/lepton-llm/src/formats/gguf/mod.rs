//! Reading a GGUF file: hyper-parameters, the embedded tokenizer and chat template, and the weights.
//!
//! candle's `gguf_file` parses the header (metadata and tensor directory); this module turns the
//! `{arch}.*` metadata (`llama`, `qwen2`, `qwen3`, `phi3`, `gemma2`, `gemma3`) into a [`LlamaConfig`] with every field resolved and the
//! architecture's parts ([`crate::decoder::arch`]), builds a `tokenizers` tokenizer from
//! `tokenizer.ggml.*` (GPT-2 byte-level BPE with the `smollm`/`gpt2` pre-tokenizers, or
//! SentencePiece-style pieces with scores, [`crate::tokenizer::spm`]), and reads tensors as
//! [`QMatrix`] after checking their names, types and shapes: the types in [`NATIVE_TYPES`] stay
//! quantized, others are expanded to f32 only within [`DEQUANTIZE_BUDGET`].
//!
//! Nothing is allocated from a number in the file before it is checked (`bounds`): the tensor
//! directory against the file length when the file is opened, the hyper-parameters for being
//! finite, positive and consistent, and `llama.block_count` against the tensors the file has.

mod bounds;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;

use crate::models::decoder::arch::{Arch, ArchParts, SUPPORTED_ARCHITECTURES};
use crate::quant::{BlockType, QMatrix, QType};
use crate::{Error, Result};

/// Hyper-parameters of a Llama-family decoder, all resolved (no defaults left to apply).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.name`, or the file stem when absent.
    pub name: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Longest sequence (prompt + generated) the model was trained for.
    pub context_length: usize,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    /// The parts in which the architecture differs from Llama.
    pub arch: ArchParts,
}

/// The tensor types kept quantized in memory, with a kernel each.
pub const NATIVE_TYPES: &str = "F32, Q4_1, Q8_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";

/// Largest f32 expansion of a tensor of another type (F16, BF16, Q4_0, Q2_K, Q3_K, ...) accepted
/// at load: 16 MiB, room for norms and small projections, never a model's weight matrices.
pub const DEQUANTIZE_BUDGET: usize = 16 << 20;

/// GGML's name of a tensor type, as llama.cpp and `gguf-py` print it.
pub fn ggml_type_name(t: GgmlDType) -> &'static str {
    match t {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// Token ids and text the tokenizer section of a GGUF file declares.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    pub bos_id: u32,
    pub eos_id: u32,
    pub bos: String,
    pub eos: String,
    /// Prepend `bos` to prompts (`tokenizer.ggml.add_bos_token`, default false).
    pub add_bos: bool,
    /// Further tokens that end generation (a Hugging Face folder's `eos_token_id` list).
    pub extra_eos_ids: Vec<u32>,
}

/// An opened GGUF file.
pub struct GgufFile {
    path: PathBuf,
    file: fs_err::File,
    content: Content,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.into(),
            source,
        };
        let mut file = fs_err::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        // candle divides by the alignment: check it first.
        let alignment = bounds::declared_alignment(&mut file, path)?.unwrap_or(32);
        let content = Content::read(&mut file).map_err(Error::candle(format!(
            "reading the GGUF header of {}",
            path.display()
        )))?;
        bounds::check_tensor_infos(&content, alignment, file_len, path)?;
        Ok(Self {
            path: path.into(),
            file,
            content,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header: metadata and tensor directory (checked against the file when opened).
    pub fn content(&self) -> &Content {
        &self.content
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Config {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| self.err(format!("missing metadata key {key}")))
    }

    fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        v.to_u64()
            .map(|v| v as usize)
            .or_else(|_| v.to_u32().map(|v| v as usize))
            .map_err(|_| ())
            .or_else(|_| match v.to_i32() {
                Ok(i) if i >= 0 => Ok(i as usize),
                _ => Err(()),
            })
            .map_err(|_| {
                self.err(format!(
                    "metadata key {key} is not a non-negative integer ({v:?})"
                ))
            })
    }

    /// A size: an integer of at least 1.
    fn get_size(&self, key: &str) -> Result<usize> {
        match self.get_usize(key)? {
            0 => Err(self.err(format!("metadata key {key} is 0, expected at least 1"))),
            n => Ok(n),
        }
    }

    /// A float that must be finite and positive (an epsilon, a frequency base).
    fn get_positive_f32(&self, key: &str) -> Result<f32> {
        let v = self.get_f32(key)?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(self.err(format!(
                "metadata key {key} is {v}, expected a finite positive number"
            )))
        }
    }

    fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.get(key)?;
        v.to_f32()
            .or_else(|_| v.to_f64().map(|v| v as f32))
            .map_err(|_| self.err(format!("metadata key {key} is not a float")))
    }

    fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|_| self.err(format!("metadata key {key} is not a string")))
    }

    /// The architecture's hyper-parameters; errors name the missing or inconsistent key.
    pub fn llama_config(&self) -> Result<LlamaConfig> {
        let found = self.get_str("general.architecture")?;
        let Some(arch) = Arch::from_gguf(found) else {
            return Err(Error::UnknownArchitecture {
                path: self.path.clone(),
                found: found.into(),
                supported: SUPPORTED_ARCHITECTURES,
            });
        };
        let a = arch.gguf_name();
        let hidden_size = self.get_size(&format!("{a}.embedding_length"))?;
        let num_heads = self.get_size(&format!("{a}.attention.head_count"))?;
        let num_kv_heads = match self
            .content
            .metadata
            .get(&format!("{a}.attention.head_count_kv"))
        {
            Some(_) => self.get_size(&format!("{a}.attention.head_count_kv"))?,
            None => num_heads,
        };
        // The head dimension is `{a}.attention.key_length` when given (Gemma: 256 with a hidden
        // size of 640), else the hidden size over the head count.
        let key_length = format!("{a}.attention.key_length");
        let from_key = self.content.metadata.contains_key(&key_length);
        let head_dim = if from_key {
            let k = self.get_size(&key_length)?;
            let value_length = format!("{a}.attention.value_length");
            if self.content.metadata.contains_key(&value_length) {
                let v = self.get_size(&value_length)?;
                if v != k {
                    return Err(self.err(format!(
                        "{value_length} {v} != {key_length} {k} (different key and value sizes are not supported)"
                    )));
                }
            }
            k
        } else if hidden_size % num_heads != 0 {
            return Err(self.err(format!(
                "{a}.embedding_length {hidden_size} is not a multiple of {a}.attention.head_count {num_heads}"
            )));
        } else {
            hidden_size / num_heads
        };
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(self.err(format!(
                "{a}.attention.head_count {num_heads} is not a multiple of {a}.attention.head_count_kv {num_kv_heads}"
            )));
        }
        if head_dim % 2 != 0 {
            let source = if from_key {
                key_length
            } else {
                format!("{a}.embedding_length / {a}.attention.head_count")
            };
            return Err(self.err(format!(
                "head dimension {head_dim} ({source}) is odd; RoPE needs pairs"
            )));
        }
        if self
            .content
            .metadata
            .contains_key(&format!("{a}.rope.dimension_count"))
        {
            let rope_dim = self.get_usize(&format!("{a}.rope.dimension_count"))?;
            if rope_dim != head_dim {
                return Err(self.err(format!(
                    "{a}.rope.dimension_count {rope_dim} != head dimension {head_dim} (partial RoPE is not supported)"
                )));
            }
        }
        let vocab_size = match self.content.metadata.get(&format!("{a}.vocab_size")) {
            Some(_) => self.get_usize(&format!("{a}.vocab_size"))?,
            None => self
                .get("tokenizer.ggml.tokens")?
                .to_vec()
                .map(Vec::len)
                .unwrap_or(0),
        };
        let name = match self.get_str("general.name") {
            Ok(n) => n.to_string(),
            Err(_) => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if vocab_size == 0 {
            return Err(self.err(format!(
                "the vocabulary is empty ({a}.vocab_size or tokenizer.ggml.tokens)"
            )));
        }
        let rope_theta = match self.content.metadata.get(&format!("{a}.rope.freq_base")) {
            Some(_) => self.get_positive_f32(&format!("{a}.rope.freq_base"))?,
            None => 10_000.0,
        };
        // Layers are loaded one by one from their tensors; a count the tensor directory cannot
        // back is refused before anything is sized by it.
        let num_layers = self.get_size(&format!("{a}.block_count"))?;
        let last = format!("blk.{}.attn_norm.weight", num_layers - 1);
        if !self.has_tensor(&last) {
            return Err(self.err(format!(
                "{a}.block_count is {num_layers} but the file has no tensor {last} ({} tensors in all)",
                self.content.tensor_infos.len()
            )));
        }
        let opt_f32 = |key: &str, default: f32| -> Result<f32> {
            let key = format!("{a}.{key}");
            match self.content.metadata.get(&key) {
                Some(_) => self.get_positive_f32(&key),
                None => Ok(default),
            }
        };
        let mut parts = match arch {
            Arch::Llama => ArchParts::llama(),
            Arch::Qwen2 => ArchParts::qwen2(),
            Arch::Qwen3 => ArchParts::qwen3(),
            Arch::Phi3 => {
                if self.has_tensor("rope_factors_long.weight") {
                    return Err(self.err(
                        "tensor rope_factors_long.weight: Phi-3's LongRoPE (128k-context files) is not supported",
                    ));
                }
                ArchParts::phi3()
            }
            Arch::Gemma2 => ArchParts::gemma2(
                hidden_size,
                self.get_size(&format!("{a}.attention.sliding_window"))?,
                // llama.cpp's defaults when the keys are absent.
                opt_f32("attn_logit_softcapping", 50.0)?,
                opt_f32("final_logit_softcapping", 30.0)?,
                rope_theta,
            ),
            Arch::Gemma3 => {
                let window = self.get_size(&format!("{a}.attention.sliding_window"))?;
                // llama.cpp's default for Gemma 3: five local layers, then one global.
                let pattern_key = format!("{a}.attention.sliding_window_pattern");
                let pattern = if self.content.metadata.contains_key(&pattern_key) {
                    self.get_size(&pattern_key)?
                } else {
                    6
                };
                ArchParts::gemma3(hidden_size, window, pattern)
            }
        };
        // llama.cpp scales the queries of the 27B Gemmas (46 and 62 layers) by
        // `1 / sqrt(hidden / heads)` (their `query_pre_attn_scalar`), the others by `1 / sqrt(head_dim)`.
        if (arch == Arch::Gemma2 && num_layers == 46) || (arch == Arch::Gemma3 && num_layers == 62)
        {
            parts.attn_scale = Some(1.0 / ((hidden_size / num_heads) as f32).sqrt());
        }
        Ok(LlamaConfig {
            name,
            vocab_size,
            hidden_size,
            intermediate_size: self.get_size(&format!("{a}.feed_forward_length"))?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            context_length: self.get_size(&format!("{a}.context_length"))?,
            rope_theta,
            rms_norm_eps: self
                .get_positive_f32(&format!("{a}.attention.layer_norm_rms_epsilon"))?,
            arch: parts,
        })
    }

    /// The chat template, if the file has one.
    pub fn chat_template(&self) -> Option<String> {
        self.get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_owned)
    }

    /// Build the embedded tokenizer: GPT-2-style byte-level BPE (`tokenizer.ggml.model = gpt2`)
    /// or SentencePiece-style with scores and byte fallback (`llama`, as Gemma stores it).
    pub fn tokenizer(&self) -> Result<(tokenizers::Tokenizer, SpecialTokens)> {
        use tokenizers::AddedToken;

        let model = self.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" && model != "llama" {
            return Err(self.err(format!(
                "tokenizer.ggml.model {model:?} is not supported (supported: gpt2, llama)"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let list = self
                .get(key)?
                .to_vec()
                .map_err(|_| self.err(format!("metadata key {key} is not a list")))?;
            list.iter()
                .map(|v| {
                    v.to_string()
                        .cloned()
                        .map_err(|_| self.err(format!("metadata key {key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let types: Vec<i32> = match self.content.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| self.err("tokenizer.ggml.token_type is not a list"))?
                .iter()
                .map(|v| v.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(self.err(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let mut tok = if model == "llama" {
            let scores: Vec<f32> = self
                .get("tokenizer.ggml.scores")?
                .to_vec()
                .map_err(|_| self.err("tokenizer.ggml.scores is not a list"))?
                .iter()
                .map(|v| v.to_f32().unwrap_or(0.0))
                .collect();
            if scores.len() != tokens.len() {
                return Err(self.err(format!(
                    "tokenizer.ggml.scores has {} entries for {} tokens",
                    scores.len(),
                    tokens.len()
                )));
            }
            let add_space_prefix = self
                .get("tokenizer.ggml.add_space_prefix")
                .ok()
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(true);
            crate::tokenizer::spm::build(&tokens, &scores, &types, add_space_prefix)
                .map_err(|e| self.err(format!("building the SentencePiece tokenizer: {e}")))?
        } else {
            self.bpe_tokenizer(&tokens)?
        };
        // Control (3) and user-defined (4) tokens are matched whole in the input text.
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == 3 || t == 4)
            .map(|(s, &t)| AddedToken::from(s.clone(), t == 3))
            .collect();
        let _added = tok.add_special_tokens(special);
        let id = |key: &str| -> Result<u32> {
            let id = self.get_usize(key)?;
            if id >= tokens.len() {
                return Err(self.err(format!(
                    "{key} {id} is not below the vocabulary size {}",
                    tokens.len()
                )));
            }
            Ok(id as u32)
        };
        let bos_id = id("tokenizer.ggml.bos_token_id")?;
        let eos_id = id("tokenizer.ggml.eos_token_id")?;
        let add_bos = self
            .get("tokenizer.ggml.add_bos_token")
            .ok()
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        // Chat models end their turn with a token of their own besides `eos` (Gemma, Qwen's
        // ChatML, Phi-3).
        let extra_eos_ids = ["<end_of_turn>", "<|im_end|>", "<|end|>"]
            .iter()
            .filter_map(|t| tokens.iter().position(|s| s == t))
            .map(|i| i as u32)
            .filter(|&i| i != eos_id)
            .collect();
        let special = SpecialTokens {
            bos_id,
            eos_id,
            bos: tokens[bos_id as usize].clone(),
            eos: tokens[eos_id as usize].clone(),
            add_bos,
            extra_eos_ids,
        };
        Ok((tok, special))
    }

    /// The GPT-2-style byte-level BPE tokenizer of `tokenizer.ggml.tokens` and `.merges`.
    fn bpe_tokenizer(&self, tokens: &[String]) -> Result<tokenizers::Tokenizer> {
        use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::digits::Digits;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        use tokenizers::PreTokenizerWrapper;
        let list = self
            .get("tokenizer.ggml.merges")?
            .to_vec()
            .map_err(|_| self.err("metadata key tokenizer.ggml.merges is not a list"))?;
        let merges: Vec<String> = list
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|_| self.err("metadata key tokenizer.ggml.merges holds a non-string"))
            })
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| {
                        self.err(format!("tokenizer.ggml.merges[{i}] {m:?} is not \"a b\""))
                    })
            })
            .collect::<Result<_>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| self.err(format!("building the BPE tokenizer: {e}")))?;
        let mut tok = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre = self.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let pre: PreTokenizerWrapper = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "default" | "gpt2" | "gpt-2" => byte_level.into(),
            other => {
                return Err(self.err(format!(
                "tokenizer.ggml.pre {other:?} is not supported (supported: smollm, gpt2, default)"
            )))
            }
        };
        tok.with_pre_tokenizer(Some(pre));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        Ok(tok)
    }

    /// Whether the file has a tensor called `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Read tensor `name`, checking its shape (`[rows, cols]` in PyTorch order, GGUF stores them
    /// reversed). Types without a kernel in [`crate::quant`] are dequantized to f32 with candle.
    pub fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let expected = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
                expected: expected.clone(),
            })?;
        let found = info.shape.dims().to_vec();
        if found != expected {
            return Err(Error::TensorShape {
                path: self.path.clone(),
                name: name.into(),
                expected,
                found,
            });
        }
        let dtype = info.ggml_dtype;
        let qtype = match dtype {
            GgmlDType::F32 => Some(QType::F32),
            GgmlDType::Q4_1 => Some(QType::Q4_1),
            GgmlDType::Q8_0 => Some(QType::Q8_0),
            GgmlDType::Q5_0 => Some(QType::Blocks(BlockType::Q5_0)),
            GgmlDType::Q5_1 => Some(QType::Blocks(BlockType::Q5_1)),
            GgmlDType::Q4K => Some(QType::Blocks(BlockType::Q4K)),
            GgmlDType::Q5K => Some(QType::Blocks(BlockType::Q5K)),
            GgmlDType::Q6K => Some(QType::Blocks(BlockType::Q6K)),
            _ => None,
        };
        if qtype.is_none() {
            // Expanded to f32: only small tensors (a norm stored in F16, ...), within a budget.
            let f32_bytes = rows * cols * 4;
            if f32_bytes > DEQUANTIZE_BUDGET {
                return Err(Error::UnsupportedTensorType {
                    path: self.path.clone(),
                    name: name.into(),
                    found: ggml_type_name(dtype),
                    f32_bytes,
                    budget: DEQUANTIZE_BUDGET,
                    supported: NATIVE_TYPES,
                });
            }
        }
        let read_err = |path: &Path, source| Error::Io {
            path: path.into(),
            source,
        };
        match qtype {
            Some(qtype) => {
                // The directory was checked at open: the byte range is inside the file.
                let n = rows * cols / dtype.block_size() * dtype.type_size();
                let start = self.content.tensor_data_offset + info.offset;
                let mut data = vec![0u8; n];
                self.file
                    .seek(SeekFrom::Start(start))
                    .and_then(|_| self.file.read_exact(&mut data))
                    .map_err(|e| read_err(&self.path, e))?;
                QMatrix::new(qtype, rows, cols, data)
                    .map_err(|m| self.err(format!("tensor {name}: {m}")))
            }
            None => {
                let q = self
                    .content
                    .tensor(&mut self.file, name, &candle_core::Device::Cpu)
                    .map_err(Error::candle(format!("reading tensor {name}")))?;
                let values: Vec<f32> = q
                    .dequantize(&candle_core::Device::Cpu)
                    .and_then(|t| t.flatten_all()?.to_vec1())
                    .map_err(Error::candle(format!(
                        "dequantizing tensor {name} ({dtype:?})"
                    )))?;
                QMatrix::from_f32(rows, cols, &values)
                    .map_err(|m| self.err(format!("tensor {name}: {m}")))
            }
        }
    }

    /// Read a 1-D f32 tensor (a norm's weight) of length `len`.
    pub fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let m = self.matrix(name, 1, len)?;
        let mut out = vec![0f32; len];
        m.dequantize_row(0, &mut out);
        Ok(out)
    }
}
