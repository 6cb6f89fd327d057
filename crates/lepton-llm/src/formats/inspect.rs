//! What a pretrained model file holds, without loading its weights: `lepton inspect` on a GGUF file
//! or a Hugging Face folder.
//!
//! Only headers are read (the GGUF metadata and tensor directory, each safetensors file's JSON
//! header, `config.json` and `tokenizer_config.json`), through the same bounded readers the loaders
//! use, so inspecting a 10 GB file costs what its header costs. The summary says whether Lepton runs
//! the model and, if not, why — an unknown architecture or a tensor type without a kernel — so a user
//! learns it before a load fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use serde::Serialize;

use super::gguf::{ggml_type_name, GgufFile, NATIVE_TYPES};
use super::hf::{parse_json_file, read_text_bounded, Architecture, MAX_CONFIG_BYTES};
use crate::models::decoder::arch::Arch;
use crate::{Error, Result};

/// Largest safetensors JSON header read: 100 MiB (as the loaders).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Most weight shards a folder's `model.safetensors.index.json` may name.
const MAX_SHARDS: usize = 4096;

/// A model file's summary.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub path: PathBuf,
    /// `gguf` or `hf`.
    pub format: &'static str,
    /// `general.name` (GGUF) or `_name_or_path` (HF), when present.
    pub name: Option<String>,
    /// `general.architecture` (GGUF) or `model_type` (HF).
    pub architecture: String,
    /// Whether Lepton runs this model.
    pub supported: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// GGUF `general.file_type` as llama.cpp names it (`Q4_K_M`, ...), or the HF weights' number
    /// formats (`F32`, `BF16+F32`; integer buffers left out).
    pub quantization: Option<String>,
    pub parameters: u64,
    pub tensors: usize,
    /// Bytes of the weights (the GGUF file, or the safetensors files).
    pub bytes: u64,
    /// Per tensor type: how many tensors and parameters, and their bytes; most parameters first.
    pub types: Vec<TypeShare>,
    pub context_length: Option<u64>,
    pub hidden_size: Option<u64>,
    pub layers: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub vocab_size: Option<u64>,
    pub chat_template: Option<String>,
}

/// One tensor type's share of a model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TypeShare {
    #[serde(rename = "type")]
    pub dtype: String,
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
}

impl ModelSummary {
    /// Summarise a GGUF file or a Hugging Face folder (by what `path` is).
    pub fn read(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::hf(path)
        } else {
            Self::gguf(path)
        }
    }

    /// Summarise a GGUF file.
    pub fn gguf(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let content = file.content();
        let meta = |key: &str| content.metadata.get(key);
        let text = |key: &str| meta(key).and_then(|v| v.to_string().ok()).cloned();
        let architecture = text("general.architecture").unwrap_or_else(|| "?".into());
        let arch_key = |key: &str| meta(&format!("{architecture}.{key}")).and_then(value_u64);

        let mut types: BTreeMap<&'static str, TypeShare> = BTreeMap::new();
        let mut parameters = 0u64;
        for info in content.tensor_infos.values() {
            let n = info.shape.elem_count() as u64;
            let t = info.ggml_dtype;
            let bytes = n / t.block_size() as u64 * t.type_size() as u64;
            let share = types.entry(ggml_type_name(t)).or_insert_with(|| TypeShare {
                dtype: ggml_type_name(t).into(),
                tensors: 0,
                parameters: 0,
                bytes: 0,
            });
            share.tensors += 1;
            share.parameters += n;
            share.bytes += bytes;
            parameters += n;
        }
        let native: Vec<&str> = NATIVE_TYPES.split(", ").collect();
        let without_kernel: Vec<&str> = types
            .keys()
            .copied()
            .filter(|t| !native.contains(t) && *t != "F16" && *t != "BF16")
            .collect();
        let supported = match Arch::from_gguf(&architecture) {
            None => Err(format!(
                "unknown architecture {architecture} (supported: {})",
                crate::models::decoder::arch::SUPPORTED_ARCHITECTURES
            )),
            Some(_) if !without_kernel.is_empty() => Err(format!(
                "tensor types without a kernel: {} (kept quantized: {NATIVE_TYPES}; others are \
                 expanded to f32 only for small tensors)",
                without_kernel.join(", ")
            )),
            Some(_) => Ok(()),
        };
        let vocab_size = meta("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.len() as u64)
            .or_else(|| arch_key("vocab_size"));
        Ok(ModelSummary {
            path: path.to_path_buf(),
            format: "gguf",
            name: text("general.name"),
            quantization: meta("general.file_type")
                .and_then(value_u64)
                .map(file_type_name),
            supported: supported.is_ok(),
            unsupported: supported.err(),
            parameters,
            tensors: content.tensor_infos.len(),
            bytes: fs_err::metadata(path)
                .map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?
                .len(),
            types: by_parameters(types.into_values()),
            context_length: arch_key("context_length"),
            hidden_size: arch_key("embedding_length"),
            layers: arch_key("block_count"),
            heads: arch_key("attention.head_count"),
            kv_heads: arch_key("attention.head_count_kv"),
            vocab_size,
            chat_template: file.chat_template(),
            architecture,
        })
    }

    /// Summarise a Hugging Face folder: `config.json`, the safetensors headers (one file, or the
    /// shards `model.safetensors.index.json` names), and the chat template.
    pub fn hf(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                file: "config.json".into(),
            });
        }
        let config: serde_json::Value = parse_json_file(&config_path)?;
        let architecture = config["model_type"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| config["architectures"][0].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        let supported = Architecture::detect(&config, &config_path)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let field = |key: &str| config.get(key).and_then(|v| v.as_u64());

        let mut types: BTreeMap<String, TypeShare> = BTreeMap::new();
        let (mut parameters, mut tensors, mut bytes) = (0u64, 0usize, 0u64);
        for shard in weight_files(dir)? {
            bytes += fs_err::metadata(&shard)
                .map_err(|source| Error::Io {
                    path: shard.clone(),
                    source,
                })?
                .len();
            for (dtype, n) in safetensors_header(&shard)? {
                let share = types.entry(dtype.clone()).or_insert_with(|| TypeShare {
                    dtype: dtype.clone(),
                    tensors: 0,
                    parameters: 0,
                    bytes: 0,
                });
                share.tensors += 1;
                share.parameters += n;
                share.bytes += n * dtype_bytes(&dtype);
                parameters += n;
                tensors += 1;
            }
        }
        let types = by_parameters(types.into_values());
        // The weights' number formats; integer tensors (position-id buffers) are not weights.
        let floats: Vec<&str> = types
            .iter()
            .map(|t| t.dtype.as_str())
            .filter(|t| !matches!(*t, "I64" | "I32" | "I16" | "U64" | "U32" | "U16" | "BOOL"))
            .collect();
        let quantization = (!floats.is_empty()).then(|| floats.join("+"));
        Ok(ModelSummary {
            path: dir.to_path_buf(),
            format: "hf",
            name: config["_name_or_path"].as_str().map(str::to_owned),
            supported: supported.is_ok(),
            unsupported: supported.err(),
            quantization,
            parameters,
            tensors,
            bytes,
            types,
            context_length: field("max_position_embeddings"),
            hidden_size: field("hidden_size"),
            layers: field("num_hidden_layers"),
            heads: field("num_attention_heads"),
            kv_heads: field("num_key_value_heads").or_else(|| field("num_attention_heads")),
            vocab_size: field("vocab_size"),
            chat_template: hf_chat_template(dir)?,
            architecture,
        })
    }

    /// The summary as aligned lines for a terminal (the template is shown by its length).
    pub fn to_text(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
        let mut s = format!(
            "file          {} ({} bytes)\nformat        {}\nname          {}\narchitecture  {}\nruns here     {}\nquantization  {}\nparameters    {} in {} tensors\ncontext       {}\nhidden        {}\nlayers        {}\nheads         {} (kv {})\nvocabulary    {}\nchat template {}\ntensor types\n",
            self.path.display(),
            self.bytes,
            self.format,
            self.name.as_deref().unwrap_or("-"),
            self.architecture,
            match &self.unsupported {
                None => "yes".to_string(),
                Some(why) => format!("no: {why}"),
            },
            self.quantization.as_deref().unwrap_or("-"),
            self.parameters,
            self.tensors,
            opt(self.context_length),
            opt(self.hidden_size),
            opt(self.layers),
            opt(self.heads),
            opt(self.kv_heads),
            opt(self.vocab_size),
            self.chat_template
                .as_ref()
                .map_or_else(|| "none".into(), |t| format!("yes ({} characters)", t.len())),
        );
        for t in &self.types {
            s += &format!(
                "  {:<6} {:>5} tensors {:>14} parameters ({:5.1} %) {:>14} bytes\n",
                t.dtype,
                t.tensors,
                t.parameters,
                100.0 * t.parameters as f64 / self.parameters.max(1) as f64,
                t.bytes
            );
        }
        s
    }
}

/// The shares sorted by parameters, most first (ties by type name).
fn by_parameters(shares: impl Iterator<Item = TypeShare>) -> Vec<TypeShare> {
    let mut v: Vec<TypeShare> = shares.collect();
    v.sort_by(|a, b| b.parameters.cmp(&a.parameters).then(a.dtype.cmp(&b.dtype)));
    v
}

/// A non-negative integer metadata value of any width.
fn value_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

/// llama.cpp's name of a `general.file_type` (`enum llama_ftype`; the ids it no longer writes are
/// shown by number).
fn file_type_name(id: u64) -> String {
    let name = match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return format!("file type {id}"),
    };
    name.into()
}

/// Bytes per value of a safetensors dtype (0 for one this summary does not know).
fn dtype_bytes(dtype: &str) -> u64 {
    match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => 0,
    }
}

/// The folder's weight files: `model.safetensors`, or the shards of
/// `model.safetensors.index.json` (each once, in name order).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            file: "model.safetensors (or model.safetensors.index.json)".into(),
        });
    }
    let v: serde_json::Value = parse_json_file(&index)?;
    let bad = |message: String| Error::Config {
        path: index.clone(),
        message,
    };
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| bad("no weight_map object".into()))?;
    let mut files = std::collections::BTreeSet::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map.{tensor} is not a file name")))?;
        // A shard is a plain file name inside the folder, never a path out of it.
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." {
            return Err(bad(format!(
                "weight_map.{tensor}: {file:?} is not a file name in the folder"
            )));
        }
        files.insert(file.to_owned());
        if files.len() > MAX_SHARDS {
            return Err(bad(format!("more than {MAX_SHARDS} weight files")));
        }
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// `(dtype, values)` of every tensor in a safetensors file's header (the data is not read); the
/// header's length is checked against the file and [`MAX_HEADER_BYTES`] before it is read.
fn safetensors_header(path: &Path) -> Result<Vec<(String, u64)>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |message: String| Error::Config {
        path: path.to_path_buf(),
        message,
    };
    let mut f = fs_err::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        bad("not a safetensors file (shorter than its 8-byte header length)".into())
    })?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES || n.saturating_add(8) > file_len {
        return Err(bad(format!(
            "not a safetensors file (header length {n} does not fit the {file_len}-byte file)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out = Vec::with_capacity(header.len());
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v["dtype"]
            .as_str()
            .ok_or_else(|| bad(format!("tensor {name} has no dtype in the header")))?;
        let values = v["shape"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .try_fold(1u64, |acc, d| d.as_u64().and_then(|d| acc.checked_mul(d)))
            })
            .ok_or_else(|| bad(format!("tensor {name} has no valid shape in the header")))?;
        out.push((dtype.to_owned(), values));
    }
    Ok(out)
}

/// The chat template of an HF folder: `chat_template.jinja`, else `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates, of which `default` or the first).
fn hf_chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return read_text_bounded(&jinja, MAX_CONFIG_BYTES).map(Some);
    }
    let config = dir.join("tokenizer_config.json");
    if !config.is_file() {
        return Ok(None);
    }
    let v: serde_json::Value = parse_json_file(&config)?;
    Ok(match &v["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_safetensors(path: &Path, tensors: &[(&str, &str, Vec<usize>)]) {
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for (name, dtype, shape) in tensors {
            let n: usize = shape.iter().product::<usize>() * dtype_bytes(dtype) as usize;
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}),
            );
            offset += n;
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.resize(bytes.len() + offset, 0);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn an_hf_folder_is_summarised_from_its_headers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
                "max_position_embeddings": 512}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ messages }}"}]}"#,
        )
        .unwrap();
        write_safetensors(
            &dir.path().join("model.safetensors"),
            &[
                ("embed_tokens.weight", "BF16", vec![100, 64]),
                ("layers.0.q_proj.weight", "BF16", vec![64, 64]),
                ("norm.weight", "F32", vec![64]),
            ],
        );
        let s = ModelSummary::read(dir.path()).unwrap();
        assert_eq!(s.format, "hf");
        assert_eq!(s.architecture, "llama");
        assert!(s.supported && s.unsupported.is_none());
        assert_eq!(s.parameters, 6400 + 4096 + 64);
        assert_eq!(s.tensors, 3);
        assert_eq!(
            s.types,
            [
                TypeShare {
                    dtype: "BF16".into(),
                    tensors: 2,
                    parameters: 10496,
                    bytes: 20992
                },
                TypeShare {
                    dtype: "F32".into(),
                    tensors: 1,
                    parameters: 64,
                    bytes: 256
                },
            ]
        );
        assert_eq!(s.quantization.as_deref(), Some("BF16+F32"));
        assert_eq!((s.layers, s.heads, s.kv_heads), (Some(2), Some(4), Some(2)));
        assert_eq!(s.context_length, Some(512));
        assert_eq!(s.chat_template.as_deref(), Some("{{ messages }}"));
        assert!(s.to_text().contains("runs here     yes"), "{}", s.to_text());
    }

    #[test]
    fn an_unknown_architecture_and_escaping_shards_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "mamba", "architectures": ["MambaForCausalLM"]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"a.weight": "../outside.safetensors"}}"#,
        )
        .unwrap();
        let err = ModelSummary::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors.index.json") && err.contains("a.weight"),
            "{err}"
        );

        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"a.weight": "m-1.safetensors", "b.weight": "m-2.safetensors"}}"#,
        )
        .unwrap();
        write_safetensors(
            &dir.path().join("m-1.safetensors"),
            &[("a.weight", "F16", vec![8, 8])],
        );
        write_safetensors(
            &dir.path().join("m-2.safetensors"),
            &[("b.weight", "F16", vec![8])],
        );
        let s = ModelSummary::read(dir.path()).unwrap();
        assert_eq!((s.parameters, s.tensors), (72, 2));
        assert!(!s.supported);
        let why = s.unsupported.clone().unwrap();
        assert!(why.contains("mamba"), "{why}");
        assert!(
            s.to_text().contains("runs here     no: "),
            "{}",
            s.to_text()
        );
    }

    #[test]
    fn a_safetensors_header_longer_than_the_file_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
        let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
        let err = ModelSummary::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("header length"),
            "{err}"
        );
    }

    #[test]
    fn llama_cpp_file_type_names() {
        assert_eq!(file_type_name(15), "Q4_K_M");
        assert_eq!(file_type_name(18), "Q6_K");
        assert_eq!(file_type_name(3), "Q4_1");
        assert_eq!(file_type_name(99), "file type 99");
    }
}
