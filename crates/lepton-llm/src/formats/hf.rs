//! Hugging Face model folders: `config.json` (architecture and hyper-parameters),
//! `model.safetensors` (weights), `tokenizer.json`, and for sentence-transformers models
//! `1_Pooling/config.json` and `modules.json`.
//!
//! [`HfFolder::open`] reads `config.json` and detects the architecture; [`check_tensors`] compares a
//! weights file's header with the tensors an architecture needs, so an incomplete or inconsistent
//! folder gets an error naming the file, the tensor and the shapes before anything is loaded.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The model families this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT-family encoders (`model_type` "bert"): embeddings.
    Bert,
    /// Llama-family decoders (`model_type` "llama"): text generation.
    Llama,
}

const SUPPORTED: &str = "bert (BertModel), llama (LlamaForCausalLM)";

impl Architecture {
    /// Detect the architecture from a parsed `config.json` (`model_type`, else `architectures`).
    pub fn detect(config: &serde_json::Value, path: &Path) -> Result<Self> {
        let model_type = config.get("model_type").and_then(|v| v.as_str());
        let archs: Vec<&str> = config
            .get("architectures")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        match model_type {
            Some("bert") => return Ok(Architecture::Bert),
            Some("llama") => return Ok(Architecture::Llama),
            _ => {}
        }
        if archs.iter().any(|a| a.starts_with("Bert")) && model_type.is_none() {
            return Ok(Architecture::Bert);
        }
        if archs.iter().any(|a| a.starts_with("Llama")) && model_type.is_none() {
            return Ok(Architecture::Llama);
        }
        let found = match (model_type, archs.first()) {
            (Some(t), _) => format!("model_type \"{t}\""),
            (None, Some(a)) => format!("architectures [\"{a}\"]"),
            (None, None) => "(no model_type or architectures field)".to_string(),
        };
        Err(Error::UnknownArchitecture {
            path: path.to_path_buf(),
            found,
            supported: SUPPORTED,
        })
    }
}

/// A Hugging Face model folder with its parsed `config.json`.
#[derive(Debug, Clone)]
pub struct HfFolder {
    pub dir: PathBuf,
    pub architecture: Architecture,
    pub config: serde_json::Value,
}

impl HfFolder {
    /// Open a folder: `config.json` must exist, parse, and name a supported architecture.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a model folder (expected a directory with config.json)",
                ),
            });
        }
        let folder = HfFolder {
            dir: dir.to_path_buf(),
            architecture: Architecture::Bert,
            config: serde_json::Value::Null,
        };
        let config: serde_json::Value = folder.read_json("config.json")?;
        let architecture = Architecture::detect(&config, &folder.dir.join("config.json"))?;
        Ok(HfFolder {
            architecture,
            config,
            ..folder
        })
    }

    /// The path of a file the folder must have.
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::MissingFile {
                dir: self.dir.clone(),
                file: name.to_string(),
            })
        }
    }

    /// The path of an optional file, `None` when absent.
    pub fn optional_file(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.join(name);
        p.is_file().then_some(p)
    }

    /// Parse a JSON file of the folder.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let path = self.file(name)?;
        parse_json_file(&path)
    }

    /// Parse the folder's `config.json` into a typed config.
    pub fn typed_config<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone()).map_err(|source| Error::Json {
            path: self.dir.join("config.json"),
            source,
        })
    }

    /// The weights file (`model.safetensors`).
    pub fn weights(&self) -> Result<PathBuf> {
        self.file("model.safetensors")
    }
}

/// Parse a JSON file; errors name the file.
pub fn parse_json_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text_bounded(path, MAX_CONFIG_BYTES)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Most bytes read from a JSON or template file of a model folder (`config.json`,
/// `tokenizer_config.json`, `chat_template.jinja`, ...): 16 MiB.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Most bytes read from a `tokenizer.json`: 256 MiB (the largest published ones are ~35 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// Read a text file of at most `limit` bytes. The limit is checked on the declared length first,
/// then while reading (a pipe or `/dev/zero` declares none); a longer file is an error naming it.
pub fn read_text_bounded(path: &Path, limit: u64) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_long = || Error::Config {
        path: path.to_path_buf(),
        message: format!("the file is longer than the {limit}-byte limit for this kind of file"),
    };
    let f = fs_err::File::open(path).map_err(io)?;
    let declared = f.metadata().map_err(io)?.len();
    if declared > limit {
        return Err(too_long());
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    f.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_long());
    }
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Tensor names and shapes from a safetensors file's header (the data is not read).
pub fn safetensors_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>> {
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
    if n > 100 << 20 || n + 8 > file_len {
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
    let mut out = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let shape = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| {
                s.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(format!("tensor {name} has no valid shape in the header")))?;
        out.insert(name, shape);
    }
    Ok(out)
}

/// Check that a weights file has every `expected` tensor with its shape, under `prefix` (e.g.
/// `"bert."`) or none. Returns the prefix that matched.
pub fn check_tensors(
    path: &Path,
    expected: &[(String, Vec<usize>)],
    prefixes: &[&str],
) -> Result<String> {
    let shapes = safetensors_shapes(path)?;
    let prefix = prefixes
        .iter()
        .copied()
        .find(|p| {
            expected
                .first()
                .is_some_and(|(n, _)| shapes.contains_key(&format!("{p}{n}")))
        })
        .unwrap_or("");
    for (name, want) in expected {
        let full = format!("{prefix}{name}");
        match shapes.get(&full) {
            None => {
                return Err(Error::MissingTensor {
                    path: path.to_path_buf(),
                    name: full,
                    expected: want.clone(),
                })
            }
            Some(got) if got != want => {
                return Err(Error::TensorShape {
                    path: path.to_path_buf(),
                    name: full,
                    expected: want.clone(),
                    found: got.clone(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(prefix.to_string())
}

/// What a model path on the command line or in `lepton serve` is.
#[derive(Debug, Clone)]
pub enum ModelPath {
    /// A Hugging Face folder.
    Folder(HfFolder),
    /// A GGUF file (quantized decoder with its tokenizer and chat template).
    Gguf(PathBuf),
}

impl ModelPath {
    /// Classify a path: a directory is a Hugging Face folder, a file starting with the `GGUF`
    /// magic is a GGUF file; anything else is an error naming the path.
    pub fn classify(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return HfFolder::open(path).map(ModelPath::Folder);
        }
        let mut magic = [0u8; 4];
        let mut f = fs_err::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if f.read_exact(&mut magic).is_ok() && &magic == b"GGUF" {
            return Ok(ModelPath::Gguf(path.to_path_buf()));
        }
        Err(Error::Config {
            path: path.to_path_buf(),
            message: "not a model: expected a Hugging Face folder (config.json, model.safetensors, tokenizer.json) or a GGUF file".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_architectures_and_names_unknown_ones() {
        let p = Path::new("m/config.json");
        assert_eq!(
            Architecture::detect(&json!({"model_type": "bert"}), p).unwrap(),
            Architecture::Bert
        );
        assert_eq!(
            Architecture::detect(&json!({"architectures": ["LlamaForCausalLM"]}), p).unwrap(),
            Architecture::Llama
        );
        let e = Architecture::detect(&json!({"model_type": "t5"}), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m/config.json") && e.contains("\"t5\""), "{e}");
        let e = Architecture::detect(&json!({}), p).unwrap_err().to_string();
        assert!(e.contains("no model_type"), "{e}");
    }

    fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>)]) {
        let mut header = serde_json::Map::new();
        let mut offset = 0;
        for (name, shape) in tensors {
            let n: usize = shape.iter().product::<usize>() * 4;
            header.insert(
                name.to_string(),
                json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}),
            );
            offset += n;
        }
        let h = serde_json::to_vec(&header).unwrap();
        let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
        bytes.extend(h);
        bytes.extend(vec![0u8; offset]);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn check_tensors_names_missing_and_misshapen_tensors() {
        let dir = std::env::temp_dir().join(format!("lepton-hf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("model.safetensors");
        write_safetensors(&f, &[("bert.a", vec![2, 3]), ("bert.b", vec![4])]);
        let want = |b: Vec<usize>| vec![("a".to_string(), vec![2, 3]), ("b".to_string(), b)];
        assert_eq!(
            check_tensors(&f, &want(vec![4]), &["bert.", ""]).unwrap(),
            "bert."
        );
        let e = check_tensors(&f, &want(vec![5]), &["bert.", ""])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bert.b") && e.contains("[4]") && e.contains("[5]"),
            "{e}"
        );
        let mut w = want(vec![4]);
        w.push(("c".into(), vec![1]));
        let e = check_tensors(&f, &w, &["bert.", ""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing tensor bert.c"), "{e}");
        std::fs::write(&f, b"nope").unwrap();
        assert!(check_tensors(&f, &w, &[""])
            .unwrap_err()
            .to_string()
            .contains("not a safetensors file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
