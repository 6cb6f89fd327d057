//! Dynamic-int8 BERT encoder folders: what `lepton compress MODEL_DIR --quantize dynamic-int8`
//! writes and [`crate::bert::Bert::load`] reads.
//!
//! # Format
//! The folder keeps the layout of the f32 folder it came from (`config.json`, `tokenizer.json`,
//! `1_Pooling/config.json`, `modules.json`, ... copied unchanged, so `lepton embed` and
//! `lepton serve` load it as before), with two differences:
//! - [`MARKER_FILE`] (`lepton_quantization.json`), the [`Marker`]: `{"format": "lepton-int8",
//!   "version": 1, "method": "dynamic", "linear_layers": N}` — read strictly (unknown fields,
//!   another format, version or method are errors naming the file);
//! - `model.safetensors`: for each of the `6 · num_hidden_layers` encoder Linear layers (Q, K, V,
//!   attention output, intermediate, output), `<layer>.weight` is **I8** `[out, in]` (codes in
//!   `[-127, 127]`) and `<layer>.weight_scale` is **F32** `[out]`, with `W ≈ scale[j] · code[j][i]`
//!   (per-output-channel symmetric, [`lepton_quant::quantize_per_channel`]); biases, embeddings
//!   and LayerNorms stay F32. Tensors the encoder does not use (a pooler) are not written.
//!
//! At run time each Linear's input is quantized with one scale per row (its largest magnitude / 127)
//! and multiplied exactly in i32 by [`lepton_quant::PackedI8`] (see `models/linear.rs`).
//!
//! Loading checks, before any tensor data is read: the marker; every tensor's presence, shape and
//! dtype (I8 codes, F32 scales with one scale per output channel); that the file is as long as its
//! header says (a truncated file is refused). Sizes come from `config.json` and are checked
//! against the header, which safetensors checks against the file length, so nothing larger than
//! the file is allocated.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::bert::BertConfig;
use crate::error::{Error, Result};
use crate::hf::{parse_json_file, Architecture, HfFolder, MAX_TOKENIZER_BYTES};

/// The marker file of an int8 folder.
pub const MARKER_FILE: &str = "lepton_quantization.json";
const FORMAT: &str = "lepton-int8";
const VERSION: u32 = 1;
const METHOD: &str = "dynamic";

/// The contents of [`MARKER_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Marker {
    /// Always `lepton-int8`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// Always `dynamic` (activations quantized at run time).
    pub method: String,
    /// Linear layers stored as int8 (`6 · num_hidden_layers`).
    pub linear_layers: usize,
}

impl Marker {
    /// The folder's marker, `None` for an f32 folder; a marker that is not exactly this format is
    /// an error naming the file.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MARKER_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let m: Marker = parse_json_file(&path)?;
        let bad = |message: String| Error::Config {
            path: path.clone(),
            message,
        };
        if m.format != FORMAT {
            return Err(bad(format!(
                "format is \"{}\", expected \"{FORMAT}\"",
                m.format
            )));
        }
        if m.version != VERSION {
            return Err(bad(format!(
                "version {} is not supported (this build reads version {VERSION})",
                m.version
            )));
        }
        if m.method != METHOD {
            return Err(bad(format!(
                "method \"{}\" is not supported (only \"{METHOD}\")",
                m.method
            )));
        }
        Ok(Some(m))
    }
}

/// The names (without prefix) and `[out, in]` shapes of a BERT encoder's Linear layers, in file
/// order: per layer Q, K, V, attention output, intermediate, output.
pub fn linear_layers(c: &BertConfig) -> Vec<(String, [usize; 2])> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut out = Vec::with_capacity(6 * c.num_hidden_layers);
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query", [h, h]),
            ("attention.self.key", [h, h]),
            ("attention.self.value", [h, h]),
            ("attention.output.dense", [h, h]),
            ("intermediate.dense", [i, h]),
            ("output.dense", [h, i]),
        ] {
            out.push((format!("{p}.{name}"), shape));
        }
    }
    out
}

/// Every tensor of an int8 folder with its shape: the f32 list of [`crate::bert::expected_tensors`]
/// plus a `.weight_scale` `[out]` per Linear layer.
pub fn expected_tensors(c: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let mut t = crate::bert::expected_tensors(c);
    t.extend(
        linear_layers(c)
            .into_iter()
            .map(|(n, [o, _])| (format!("{n}.weight_scale"), vec![o])),
    );
    t
}

/// A memory-mapped safetensors file whose tensors are read with their dtype and shape checked.
pub struct TypedWeights {
    path: PathBuf,
    map: memmap2::Mmap,
    prefix: String,
}

impl TypedWeights {
    /// Map `path`; the header is validated against the file length (a truncated file is an
    /// error naming it). `prefix` is prepended to every name read (`""` or `"bert."`).
    pub fn open(path: &Path, prefix: &str) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = fs_err::File::open(path).map_err(io)?;
        // SAFETY: the file is only read; a model file changed while it is mapped is a user error
        // whose worst outcome is wrong weights (as with any reader).
        let map = unsafe { memmap2::Mmap::map(file.file()) }.map_err(io)?;
        SafeTensors::read_metadata(&map).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("not a valid safetensors file (truncated or corrupt): {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            prefix: prefix.to_string(),
        })
    }

    fn view(&self, name: &str, shape: &[usize]) -> Result<safetensors::tensor::TensorView<'_>> {
        let full = format!("{}{name}", self.prefix);
        let st = SafeTensors::deserialize(&self.map).map_err(|e| Error::Config {
            path: self.path.clone(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        let v = st.tensor(&full).map_err(|_| Error::MissingTensor {
            path: self.path.clone(),
            name: full.clone(),
            expected: shape.to_vec(),
        })?;
        if v.shape() != shape {
            return Err(Error::TensorShape {
                path: self.path.clone(),
                name: full,
                expected: shape.to_vec(),
                found: v.shape().to_vec(),
            });
        }
        Ok(v)
    }

    fn wrong_dtype(&self, name: &str, found: Dtype, expected: &str) -> Error {
        Error::Config {
            path: self.path.clone(),
            message: format!(
                "tensor {}{name} has dtype {found:?}, expected {expected}",
                self.prefix
            ),
        }
    }

    /// The dtype of tensor `name`, if present.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        let st = SafeTensors::deserialize(&self.map).ok()?;
        let t = st.tensor(&format!("{}{name}", self.prefix)).ok()?;
        Some(t.dtype())
    }

    /// Tensor `name` as f32 (stored as F32, F16 or BF16), checked against `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let v = self.view(name, shape)?;
        let d = v.data();
        Ok(match v.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => return Err(self.wrong_dtype(name, other, "F32, F16 or BF16")),
        })
    }

    /// Tensor `name`, which must be stored as F32, checked against `shape`.
    pub fn f32_exact(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let dtype = self.view(name, shape)?.dtype();
        if dtype != Dtype::F32 {
            return Err(self.wrong_dtype(name, dtype, "F32"));
        }
        self.f32(name, shape)
    }

    /// Tensor `name`, which must be stored as I8 codes in `[-127, 127]`, checked against `shape`.
    pub fn i8(&self, name: &str, shape: &[usize]) -> Result<Vec<i8>> {
        let v = self.view(name, shape)?;
        if v.dtype() != Dtype::I8 {
            return Err(self.wrong_dtype(name, v.dtype(), "I8"));
        }
        let codes: Vec<i8> = v.data().iter().map(|&b| b as i8).collect();
        if codes.contains(&i8::MIN) {
            return Err(Error::Config {
                path: self.path.clone(),
                message: format!(
                    "tensor {}{name} has the code -128 (symmetric codes are in [-127, 127])",
                    self.prefix
                ),
            });
        }
        Ok(codes)
    }
}

/// Refuse an f32 folder (no marker) whose weights file holds int8 Linear weights: it was written
/// by a tool that did not say how to read them.
pub fn refuse_unmarked_int8(weights: &TypedWeights, c: &BertConfig, dir: &Path) -> Result<()> {
    for (name, _) in linear_layers(c) {
        let name = format!("{name}.weight");
        if weights.dtype(&name) == Some(Dtype::I8) {
            return Err(Error::Config {
                path: weights.path.clone(),
                message: format!(
                    "tensor {}{name} is int8 but {} has no {MARKER_FILE} saying how to read it",
                    weights.prefix,
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// What [`write_int8_encoder`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Int8Written {
    /// Bytes of the source `model.safetensors`.
    pub source_bytes: u64,
    /// Bytes of the written `model.safetensors`.
    pub output_bytes: u64,
    /// Linear layers stored as int8.
    pub linear_layers: usize,
}

/// File extensions of weights in other formats, not copied to the int8 folder.
const WEIGHT_EXTENSIONS: [&str; 11] = [
    "safetensors",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "onnx",
    "h5",
    "msgpack",
    "ot",
    "gguf",
    "tflite",
];
/// Subfolders holding other formats' exports, not copied.
const SKIPPED_DIRS: [&str; 4] = ["onnx", "openvino", ".git", ".cache"];

/// Quantize the f32 BERT folder `src` to a dynamic-int8 folder in `out` (an existing, empty
/// directory; the caller makes it atomic): the weights as the module docs say, every other file
/// copied (weights in other formats left out). An int8 folder is refused, as is anything
/// [`crate::bert::Bert::load`] would refuse.
pub fn write_int8_encoder(src: &Path, out: &Path) -> Result<Int8Written> {
    let folder = HfFolder::open(src)?;
    let cfg_path = folder.dir.join("config.json");
    if folder.architecture != Architecture::Bert {
        return Err(Error::Config {
            path: cfg_path,
            message: format!(
                "dynamic int8 needs a BERT encoder, found {:?}",
                folder.architecture
            ),
        });
    }
    if Marker::read(src)?.is_some() {
        return Err(Error::Config {
            path: src.join(MARKER_FILE),
            message: "the folder is already int8 (compress the f32 model it came from)".into(),
        });
    }
    let config: BertConfig = folder.typed_config()?;
    config.check(&cfg_path)?;
    let weights = folder.weights()?;
    crate::bert::check_layer_count(&weights, &cfg_path, config.num_hidden_layers)?;
    let prefix = crate::hf::check_tensors(
        &weights,
        &crate::bert::expected_tensors(&config),
        &["", "bert."],
    )?;
    let reader = TypedWeights::open(&weights, &prefix)?;
    refuse_unmarked_int8(&reader, &config, src)?;

    let linear: std::collections::HashMap<String, [usize; 2]> = linear_layers(&config)
        .into_iter()
        .map(|(n, s)| (format!("{n}.weight"), s))
        .collect();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape) in crate::bert::expected_tensors(&config) {
        let values = reader.f32(&name, &shape)?;
        if let Some(&[o, i]) = linear.get(&name) {
            let (codes, scales) = lepton_quant::quantize_per_channel(o, i, &values);
            let scale_bytes = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
            let code_bytes = codes.iter().map(|&c| c as u8).collect();
            let scale_name = format!("{prefix}{}_scale", name);
            tensors.push((format!("{prefix}{name}"), Dtype::I8, shape, code_bytes));
            tensors.push((scale_name, Dtype::F32, vec![o], scale_bytes));
        } else {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((format!("{prefix}{name}"), Dtype::F32, shape, bytes));
        }
    }
    let out_weights = out.join("model.safetensors");
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Config {
                    path: out_weights.clone(),
                    message: format!("building tensor {n}: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "lepton.quantization".to_string(),
            "int8-dynamic".to_string(),
        ),
    ]);
    safetensors::serialize_to_file(views, Some(meta), &out_weights).map_err(|e| Error::Io {
        path: out_weights.clone(),
        source: std::io::Error::other(e),
    })?;
    copy_other_files(src, out, 0)?;
    let marker = Marker {
        format: FORMAT.into(),
        version: VERSION,
        method: METHOD.into(),
        linear_layers: linear.len(),
    };
    let marker_path = out.join(MARKER_FILE);
    let text = serde_json::to_string_pretty(&marker).map_err(|source| Error::Json {
        path: marker_path.clone(),
        source,
    })?;
    fs_err::write(&marker_path, text + "\n").map_err(|source| Error::Io {
        path: marker_path,
        source,
    })?;
    let len = |p: &Path| {
        fs_err::metadata(p)
            .map(|m| m.len())
            .map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })
    };
    Ok(Int8Written {
        source_bytes: len(&weights)?,
        output_bytes: len(&out_weights)?,
        linear_layers: linear.len(),
    })
}

/// Copy every file of `src` (and its subfolders, two levels deep) to `out`, except weights in
/// any format and exports in [`SKIPPED_DIRS`]; a file over the tokenizer budget is an error.
fn copy_other_files(src: &Path, out: &Path, depth: usize) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    for entry in fs_err::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            if depth < 2 && !SKIPPED_DIRS.contains(&name.as_ref()) {
                let sub = out.join(&*name);
                fs_err::create_dir_all(&sub).map_err(io(&sub))?;
                copy_other_files(&path, &sub, depth + 1)?;
            }
            continue;
        }
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        if !kind.is_file()
            || name == MARKER_FILE
            || ext.is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e.as_str()))
        {
            continue;
        }
        let bytes = fs_err::metadata(&path).map_err(io(&path))?.len();
        if bytes > MAX_TOKENIZER_BYTES {
            return Err(Error::Config {
                path,
                message: format!(
                    "{bytes} bytes is over the {MAX_TOKENIZER_BYTES}-byte limit for a file copied beside the weights"
                ),
            });
        }
        let dst = out.join(&*name);
        fs_err::copy(&path, &dst).map_err(io(&dst))?;
    }
    Ok(())
}
