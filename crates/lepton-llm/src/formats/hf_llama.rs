//! Llama-family decoders from Hugging Face folders: `config.json` (`LlamaForCausalLM`),
//! `model.safetensors` or shards listed in `model.safetensors.index.json`, `tokenizer.json`, and
//! `tokenizer_config.json` (chat template, BOS/EOS tokens).
//!
//! [`llama_config`] resolves the hyper-parameters (errors name `config.json` and the field);
//! [`SafetensorsWeights`] memory-maps the weight files and serves tensors to
//! [`crate::llama::Llama::load`] under their GGUF names: f32, f16 and bf16 tensors become f32
//! [`QMatrix`]es, and Wq / Wk rows are reordered for our interleaved RoPE
//! ([`permute_rope_rows`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::gguf::{LlamaConfig, SpecialTokens};
use crate::hf::HfFolder;
use crate::llama::weights::{permute_rope_rows, WeightSource};
use crate::quant::QMatrix;
use crate::{Error, Result};

/// The hyper-parameters of a Llama folder's `config.json`; errors name the file and the field.
pub fn llama_config(folder: &HfFolder) -> Result<LlamaConfig> {
    let path = folder.dir.join("config.json");
    let c = &folder.config;
    let bad = |message: String| Error::Config {
        path: path.clone(),
        message,
    };
    let uint = |key: &str| -> Result<usize> {
        match c.get(key) {
            None | Some(Value::Null) => Err(bad(format!("missing field {key}"))),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("field {key} is {v}, expected a positive integer"))),
        }
    };
    let float = |key: &str, default: Option<f32>| -> Result<f32> {
        match (c.get(key), default) {
            (None | Some(Value::Null), Some(d)) => Ok(d),
            (None | Some(Value::Null), None) => Err(bad(format!("missing field {key}"))),
            (Some(v), _) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(|x| x as f32)
                .ok_or_else(|| bad(format!("field {key} is {v}, expected a positive number"))),
        }
    };
    let hidden_size = uint("hidden_size")?;
    let num_heads = uint("num_attention_heads")?;
    let num_kv_heads = match c.get("num_key_value_heads") {
        None | Some(Value::Null) => num_heads,
        Some(_) => uint("num_key_value_heads")?,
    };
    if hidden_size % num_heads != 0 {
        return Err(bad(format!(
            "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"
        )));
    }
    if num_heads % num_kv_heads != 0 {
        return Err(bad(format!(
            "num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}"
        )));
    }
    let head_dim = hidden_size / num_heads;
    if head_dim % 2 != 0 {
        return Err(bad(format!(
            "head dimension {head_dim} is odd (RoPE needs pairs)"
        )));
    }
    if let Some(v) = c.get("head_dim").filter(|v| !v.is_null()) {
        if v.as_u64() != Some(head_dim as u64) {
            return Err(bad(format!(
                "field head_dim is {v}, but only hidden_size / num_attention_heads = {head_dim} is supported"
            )));
        }
    }
    if let Some(scaling) = c.get("rope_scaling").filter(|v| !v.is_null()) {
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("(no rope_type)");
        if kind != "default" {
            return Err(bad(format!(
                "field rope_scaling has rope_type {kind:?}, which is not supported (supported: default, or no rope_scaling)"
            )));
        }
    }
    for key in ["attention_bias", "mlp_bias"] {
        if c.get(key).and_then(Value::as_bool) == Some(true) {
            return Err(bad(format!(
                "field {key} is true; biases in the attention or MLP projections are not supported"
            )));
        }
    }
    if let Some(act) = c.get("hidden_act").filter(|v| !v.is_null()) {
        if act.as_str() != Some("silu") {
            return Err(bad(format!(
                "field hidden_act is {act}, only \"silu\" is supported"
            )));
        }
    }
    let name = c
        .get("_name_or_path")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            folder
                .dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "llama".into());
    Ok(LlamaConfig {
        name,
        vocab_size: uint("vocab_size")?,
        hidden_size,
        intermediate_size: uint("intermediate_size")?,
        num_layers: uint("num_hidden_layers")?,
        num_heads,
        num_kv_heads,
        head_dim,
        context_length: uint("max_position_embeddings")?,
        rope_theta: float("rope_theta", Some(10_000.0))?,
        rms_norm_eps: float("rms_norm_eps", None)?,
        arch: crate::models::decoder::arch::ArchParts::llama(),
    })
}

/// Whether the output projection is the embedding matrix (`tie_word_embeddings`, default false).
fn tied_embeddings(folder: &HfFolder) -> Result<bool> {
    match folder.config.get("tie_word_embeddings") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(Error::Config {
            path: folder.dir.join("config.json"),
            message: format!("field tie_word_embeddings is {v}, expected true or false"),
        }),
    }
}

/// One memory-mapped safetensors file with its parsed header.
struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Where the tensor data starts (8-byte length + header).
    data_start: usize,
    metadata: Metadata,
}

impl Shard {
    fn open(path: PathBuf) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = fs_err::File::open(&path).map_err(io)?;
        // SAFETY: the file is only read; a model file changed while it is mapped is a user error
        // whose worst outcome is wrong weights (as with any reader).
        let map = unsafe { memmap2::Mmap::map(file.file()) }.map_err(io)?;
        let (n, metadata) = SafeTensors::read_metadata(&map).map_err(|e| Error::Config {
            path: path.clone(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        Ok(Self {
            path,
            map,
            data_start: 8 + n,
            metadata,
        })
    }
}

/// The weights of a Hugging Face Llama folder, served under GGUF names (see [`WeightSource`]).
pub struct SafetensorsWeights {
    shards: Vec<Shard>,
    /// Tensor name → shard holding it.
    index: HashMap<String, usize>,
    /// Where a missing tensor is reported: `model.safetensors` or the index file.
    listing: PathBuf,
    tied: bool,
    num_heads: usize,
    num_kv_heads: usize,
}

impl SafetensorsWeights {
    /// Open `model.safetensors`, or the shards that `model.safetensors.index.json` lists.
    pub fn open(folder: &HfFolder, config: &LlamaConfig) -> Result<Self> {
        let tied = tied_embeddings(folder)?;
        let (shards, listing) = match folder.optional_file("model.safetensors") {
            Some(p) => (vec![Shard::open(p.clone())?], p),
            None => {
                let index_path = folder.dir.join("model.safetensors.index.json");
                if !index_path.is_file() {
                    return Err(Error::MissingFile {
                        dir: folder.dir.clone(),
                        file: "model.safetensors (or model.safetensors.index.json with its shards)"
                            .into(),
                    });
                }
                let index: Value = folder.read_json("model.safetensors.index.json")?;
                let map = index
                    .get("weight_map")
                    .and_then(Value::as_object)
                    .ok_or_else(|| Error::Config {
                        path: index_path.clone(),
                        message: "missing field weight_map (tensor name → shard file)".into(),
                    })?;
                let mut files = std::collections::BTreeSet::new();
                for (name, file) in map {
                    let file = file.as_str().ok_or_else(|| Error::Config {
                        path: index_path.clone(),
                        message: format!("weight_map.{name} is not a file name"),
                    })?;
                    files.insert(file.to_owned());
                }
                let shards = files
                    .iter()
                    .map(|f| folder.file(f).and_then(Shard::open))
                    .collect::<Result<Vec<_>>>()?;
                (shards, index_path)
            }
        };
        let mut index = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for name in shard.metadata.tensors().into_keys() {
                index.insert(name, i);
            }
        }
        Ok(Self {
            shards,
            index,
            listing,
            tied,
            num_heads: config.num_heads,
            num_kv_heads: config.num_kv_heads,
        })
    }

    /// Names and shapes of all tensors (for diagnostics and tests).
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.index
            .iter()
            .map(|(name, &i)| {
                let info = self.shards[i].metadata.info(name).expect("indexed tensor");
                (name.clone(), info.shape.clone())
            })
            .collect()
    }

    /// Tensor `name` as f32 values, checked against `shape`.
    fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let Some(&i) = self.index.get(name) else {
            return Err(Error::MissingTensor {
                path: self.listing.clone(),
                name: name.into(),
                expected: shape.to_vec(),
            });
        };
        let shard = &self.shards[i];
        let info = shard.metadata.info(name).expect("indexed tensor");
        if info.shape != shape {
            return Err(Error::TensorShape {
                path: shard.path.clone(),
                name: name.into(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let (start, end) = info.data_offsets;
        let bytes = &shard.map[shard.data_start + start..shard.data_start + end];
        let values: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Config {
                    path: shard.path.clone(),
                    message: format!(
                        "tensor {name} has dtype {other:?} (supported: F32, F16, BF16)"
                    ),
                })
            }
        };
        Ok(values)
    }

    /// The Hugging Face name of a GGUF tensor name, and how many heads its rows hold when they
    /// need the RoPE reordering.
    fn hf_name(&self, gguf: &str) -> Option<(String, Option<usize>)> {
        let fixed = match gguf {
            "token_embd.weight" => Some("model.embed_tokens.weight"),
            "output_norm.weight" => Some("model.norm.weight"),
            "output.weight" => Some("lm_head.weight"),
            _ => None,
        };
        if let Some(f) = fixed {
            return Some((f.to_owned(), None));
        }
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, rest) = rest.split_once('.')?;
        let part = rest.strip_suffix(".weight")?;
        let (hf, heads) = match part {
            "attn_norm" => ("input_layernorm", None),
            "attn_q" => ("self_attn.q_proj", Some(self.num_heads)),
            "attn_k" => ("self_attn.k_proj", Some(self.num_kv_heads)),
            "attn_v" => ("self_attn.v_proj", None),
            "attn_output" => ("self_attn.o_proj", None),
            "ffn_norm" => ("post_attention_layernorm", None),
            "ffn_gate" => ("mlp.gate_proj", None),
            "ffn_up" => ("mlp.up_proj", None),
            "ffn_down" => ("mlp.down_proj", None),
            _ => return None,
        };
        Some((format!("model.layers.{layer}.{hf}.weight"), heads))
    }

    fn name(&self, gguf: &str) -> Result<(String, Option<usize>)> {
        self.hf_name(gguf).ok_or_else(|| Error::Config {
            path: self.listing.clone(),
            message: format!("no Hugging Face name for the decoder tensor {gguf}"),
        })
    }
}

impl WeightSource for SafetensorsWeights {
    fn has_tensor(&self, name: &str) -> bool {
        // A separate output projection is required unless the config ties it to the embedding.
        if name == "output.weight" {
            return !self.tied;
        }
        self.hf_name(name)
            .is_some_and(|(n, _)| self.index.contains_key(&n))
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let (hf, heads) = self.name(name)?;
        let mut values = self.read(&hf, &[rows, cols])?;
        if let Some(heads) = heads {
            values = permute_rope_rows(&values, heads, cols);
        }
        QMatrix::from_f32(rows, cols, &values).map_err(|message| Error::Config {
            path: self.listing.clone(),
            message: format!("tensor {hf}: {message}"),
        })
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let (hf, _) = self.name(name)?;
        self.read(&hf, &[len])
    }
}

/// A special token in `tokenizer_config.json`: a string or `{"content": "..."}`.
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The tokenizer, special tokens and chat template of a Llama folder.
pub fn tokenizer_and_template(
    folder: &HfFolder,
) -> Result<(tokenizers::Tokenizer, SpecialTokens, Option<String>)> {
    let tok_path = folder.file("tokenizer.json")?;
    let tokenizer = crate::tokenizer::Tokenizer::from_file(&tok_path)?
        .inner()
        .clone();
    let cfg_path = folder.dir.join("tokenizer_config.json");
    let cfg: Value = match folder.optional_file("tokenizer_config.json") {
        Some(_) => folder.read_json("tokenizer_config.json")?,
        None => Value::Object(Default::default()),
    };
    let special = |key: &str| -> Result<(String, u32)> {
        let text = cfg.get(key).and_then(token_text).ok_or_else(|| {
            if folder.optional_file("tokenizer_config.json").is_none() {
                Error::MissingFile {
                    dir: folder.dir.clone(),
                    file: format!("tokenizer_config.json (for {key})"),
                }
            } else {
                Error::Config {
                    path: cfg_path.clone(),
                    message: format!(
                        "missing field {key} (a token string or {{\"content\": ...}})"
                    ),
                }
            }
        })?;
        let id = tokenizer.token_to_id(&text).ok_or_else(|| Error::Config {
            path: cfg_path.clone(),
            message: format!("{key} {text:?} is not a token of {}", tok_path.display()),
        })?;
        Ok((text, id))
    };
    let (eos, eos_id) = special("eos_token")?;
    // No BOS token: templates that print `bos_token` get EOS's text; BOS is never prepended.
    let (bos, bos_id) = match cfg.get("bos_token") {
        None | Some(Value::Null) => (eos.clone(), eos_id),
        Some(_) => special("bos_token")?,
    };
    let has_bos = !matches!(cfg.get("bos_token"), None | Some(Value::Null));
    let add_bos = has_bos
        && match cfg.get("add_bos_token") {
            Some(Value::Bool(b)) => *b,
            // Not set: prepend BOS when the tokenizer's post-processor would.
            _ => tokenizer
                .encode_fast("a", true)
                .map(|e| e.get_ids().first() == Some(&bos_id))
                .unwrap_or(false),
        };
    let extra_eos_ids = eos_id_list(folder, tokenizer.get_vocab_size(true))?
        .into_iter()
        .filter(|&id| id != eos_id)
        .collect();
    let template = match folder.optional_file("chat_template.jinja") {
        Some(p) => Some(crate::hf::read_text_bounded(
            &p,
            crate::hf::MAX_CONFIG_BYTES,
        )?),
        None => match cfg.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: the "default" one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            Some(v) => {
                return Err(Error::Config {
                    path: cfg_path,
                    message: format!("field chat_template is {v}, expected a string"),
                })
            }
        },
    };
    Ok((
        tokenizer,
        SpecialTokens {
            bos_id,
            eos_id,
            bos,
            eos,
            add_bos,
            extra_eos_ids,
        },
        template,
    ))
}

/// The `eos_token_id` of `generation_config.json`, else of `config.json`: one id or a list (Llama 3
/// ends turns with one of several tokens); absent is an empty list.
fn eos_id_list(folder: &HfFolder, vocab: usize) -> Result<Vec<u32>> {
    let (file, value) = match folder.optional_file("generation_config.json") {
        Some(_) => {
            let v: Value = folder.read_json("generation_config.json")?;
            ("generation_config.json", v.get("eos_token_id").cloned())
        }
        None => ("config.json", None),
    };
    let (file, value) = match value {
        Some(v) if !v.is_null() => (file, v),
        _ => match folder.config.get("eos_token_id") {
            Some(v) if !v.is_null() => ("config.json", v.clone()),
            _ => return Ok(Vec::new()),
        },
    };
    let bad = || Error::Config {
        path: folder.dir.join(file),
        message: format!(
            "field eos_token_id is {value}, expected a token id below {vocab} or a list of them"
        ),
    };
    let one = |v: &Value| {
        v.as_u64()
            .filter(|&id| (id as usize) < vocab)
            .map(|id| id as u32)
    };
    match &value {
        Value::Array(list) => list.iter().map(|v| one(v).ok_or_else(bad)).collect(),
        v => one(v).map(|id| vec![id]).ok_or_else(bad),
    }
}

/// Check that `path` is a Llama folder and return it opened.
pub fn open_llama_folder(dir: &Path) -> Result<HfFolder> {
    let folder = HfFolder::open(dir)?;
    if folder.architecture != crate::Architecture::Llama {
        return Err(Error::Config {
            path: dir.join("config.json"),
            message: format!(
                "a {:?} model is not a text-generation model (expected a Llama-family decoder)",
                folder.architecture
            ),
        });
    }
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn folder(config: Value) -> HfFolder {
        HfFolder {
            dir: PathBuf::from("m"),
            architecture: crate::Architecture::Llama,
            config,
        }
    }

    fn base() -> Value {
        json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
            "rms_norm_eps": 1e-5, "vocab_size": 100, "max_position_embeddings": 256,
        })
    }

    fn err(config: Value) -> String {
        llama_config(&folder(config)).unwrap_err().to_string()
    }

    #[test]
    fn config_fields_resolve_with_defaults() {
        let c = llama_config(&folder(base())).unwrap();
        assert_eq!(
            (
                c.hidden_size,
                c.num_heads,
                c.num_kv_heads,
                c.head_dim,
                c.num_layers
            ),
            (64, 4, 2, 16, 2)
        );
        assert_eq!((c.rope_theta, c.context_length), (10_000.0, 256));
    }

    #[test]
    fn bad_config_fields_are_named() {
        let mut c = base();
        c.as_object_mut().unwrap().remove("hidden_size");
        assert!(err(c).contains("m/config.json: missing field hidden_size"));
        let mut c = base();
        c["num_key_value_heads"] = json!(3);
        assert!(err(c).contains("num_key_value_heads 3"));
        let mut c = base();
        c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0});
        let e = err(c);
        assert!(
            e.contains("rope_scaling") && e.contains("\"llama3\""),
            "{e}"
        );
        let mut c = base();
        c["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        assert!(err(c).contains("\"linear\""));
        let mut c = base();
        c["rms_norm_eps"] = json!("small");
        assert!(err(c).contains("field rms_norm_eps is \"small\""));
        let mut c = base();
        c["attention_bias"] = json!(true);
        assert!(err(c).contains("attention_bias"));
        let mut c = base();
        c["head_dim"] = json!(32);
        assert!(err(c).contains("field head_dim is 32"));
    }

    #[test]
    fn special_tokens_are_strings_or_objects() {
        assert_eq!(token_text(&json!("<s>")).as_deref(), Some("<s>"));
        assert_eq!(
            token_text(&json!({"content": "</s>", "lstrip": false})).as_deref(),
            Some("</s>")
        );
        assert_eq!(token_text(&json!(3)), None);
    }
}
