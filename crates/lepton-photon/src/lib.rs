//! The photon: one self-describing, checksummed file holding a trained model: weights, model
//! spec, loss (hence the output activation), fitted preprocessor, class names, input schema and
//! evaluation metrics.
//!
//! # Byte layout (format version 1)
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `LEPTONPH` |
//! | 8 | 4 | format version, u32 little-endian |
//! | 12 | 8 | header length `H`, u64 little-endian |
//! | 20 | 32 | SHA-256 of the header bytes |
//! | 52 | `H` | header: JSON [`Manifest`] (holds the weights' length and SHA-256) |
//! | 52+`H` | 0-63 | zero padding to a multiple of 64 |
//! | aligned | `weights_len` | safetensors blob with the model's tensors (PyTorch `state_dict` names) |
//!
//! Files are written atomically (temporary file, fsync, rename, fsync of the folder) and fully
//! verified on open: magic, version, lengths, both checksums, then the JSON and the tensors.

mod error;
mod model;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use lepton_data::Preprocessor;
use lepton_nn::{LossSpec, ModelSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use error::{Error, Result};
pub use model::{top_k, LoadedModel, Prediction};

/// The magic bytes at the start of every photon.
pub const MAGIC: &[u8; 8] = b"LEPTONPH";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const PREAMBLE: usize = 8 + 4 + 8 + 32;

/// The header of a photon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub lepton_version: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub name: String,
    pub model: ModelSpec,
    pub input_shape: Vec<usize>,
    pub loss: LossSpec,
    pub preprocessor: Preprocessor,
    /// Evaluation metrics (the report), free-form.
    pub metrics: serde_json::Value,
    pub weights_len: u64,
    pub weights_sha256: String,
}

/// What goes into a photon besides the weights.
#[derive(Debug, Clone)]
pub struct PhotonContents {
    pub name: String,
    pub model: ModelSpec,
    pub input_shape: Vec<usize>,
    pub loss: LossSpec,
    pub preprocessor: Preprocessor,
    pub metrics: serde_json::Value,
}

/// An opened, verified photon file.
pub struct Photon {
    path: PathBuf,
    manifest: Manifest,
    map: memmap2::Mmap,
    weights_at: usize,
}

fn pad(n: usize) -> usize {
    (64 - n % 64) % 64
}

impl std::fmt::Debug for Photon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Photon")
            .field("path", &self.path)
            .field("name", &self.manifest.name)
            .finish()
    }
}

impl Photon {
    /// Write a photon with the given tensors.
    pub fn write(
        path: &Path,
        contents: &PhotonContents,
        weights: &HashMap<String, Tensor>,
    ) -> Result<()> {
        let tmp = tempfile_path(path, "weights");
        candle_core::safetensors::save(weights, &tmp).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let blob = std::fs::read(&tmp).map_err(|e| Error::io(&tmp, e));
        let _ = std::fs::remove_file(&tmp);
        let blob = blob?;
        Self::write_blob(path, contents, &blob)
    }

    /// Write a photon whose weights are an existing safetensors file (e.g. a run's `best.safetensors`).
    pub fn write_from_safetensors(
        path: &Path,
        contents: &PhotonContents,
        weights_file: &Path,
    ) -> Result<()> {
        let blob = std::fs::read(weights_file).map_err(|e| Error::io(weights_file, e))?;
        safetensors::SafeTensors::deserialize(&blob).map_err(|e| Error::Weights {
            path: weights_file.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::write_blob(path, contents, &blob)
    }

    fn write_blob(path: &Path, c: &PhotonContents, blob: &[u8]) -> Result<()> {
        // Check that the model builds from these weights before writing anything.
        model::build(&c.model, &c.input_shape, blob, path)?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            lepton_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            name: c.name.clone(),
            model: c.model.clone(),
            input_shape: c.input_shape.clone(),
            loss: c.loss.clone(),
            preprocessor: c.preprocessor.clone(),
            metrics: c.metrics.clone(),
            weights_len: blob.len() as u64,
            weights_sha256: hex::encode(Sha256::digest(blob)),
        };
        let header = serde_json::to_vec(&manifest).map_err(|e| Error::Header {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut out = Vec::with_capacity(PREAMBLE + header.len() + 64 + blob.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&header));
        out.extend_from_slice(&header);
        out.extend(std::iter::repeat_n(0u8, pad(out.len())));
        out.extend_from_slice(blob);
        write_atomic(path, &out)
    }

    /// Open and verify a photon; the weights stay memory-mapped.
    pub fn open(path: &Path) -> Result<Photon> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only; a concurrent writer would have to replace the file,
        // and writers in this crate rename a new file into place instead of writing in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let bad = |message: String| Error::Format {
            path: path.to_path_buf(),
            message,
        };
        if map.len() < 8 || &map[..8] != MAGIC {
            return Err(bad("not a photon file (bad magic bytes)".into()));
        }
        if map.len() < PREAMBLE {
            return Err(bad(format!(
                "truncated: {} bytes, the preamble alone is {PREAMBLE}",
                map.len()
            )));
        }
        let version = u32::from_le_bytes(map[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}; this build of lepton reads version {FORMAT_VERSION}"
            )));
        }
        let hlen = u64::from_le_bytes(map[12..20].try_into().expect("8 bytes"));
        let header_end = (PREAMBLE as u64)
            .checked_add(hlen)
            .filter(|&e| e <= map.len() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "truncated: the header needs {} bytes, the file has {}",
                    PREAMBLE as u64 + hlen,
                    map.len()
                ))
            })? as usize;
        let header = &map[PREAMBLE..header_end];
        if Sha256::digest(header).as_slice() != &map[20..52] {
            return Err(Error::Checksum {
                path: path.to_path_buf(),
                section: "header",
            });
        }
        let manifest: Manifest = serde_json::from_slice(header).map_err(|e| Error::Header {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let weights_at = header_end + pad(header_end);
        let end = (weights_at as u64)
            .checked_add(manifest.weights_len)
            .filter(|&e| e <= map.len() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "truncated: the weights end at byte {}, the file has {}",
                    weights_at as u64 + manifest.weights_len,
                    map.len()
                ))
            })?;
        if end != map.len() as u64 {
            return Err(bad(format!(
                "{} unexpected bytes after the weights",
                map.len() as u64 - end
            )));
        }
        let weights = &map[weights_at..end as usize];
        if hex::encode(Sha256::digest(weights)) != manifest.weights_sha256 {
            return Err(Error::Checksum {
                path: path.to_path_buf(),
                section: "weights",
            });
        }
        Ok(Photon {
            path: path.to_path_buf(),
            manifest,
            map,
            weights_at,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The safetensors blob, borrowed from the mapping.
    pub fn weights(&self) -> &[u8] {
        &self.map[self.weights_at..self.weights_at + self.manifest.weights_len as usize]
    }

    /// Build the model for inference (CPU, f32, eval mode).
    pub fn model(&self) -> Result<LoadedModel> {
        let model = model::build(
            &self.manifest.model,
            &self.manifest.input_shape,
            self.weights(),
            &self.path,
        )?;
        Ok(LoadedModel::new(
            model,
            self.manifest.loss.output_activation(),
            self.manifest.preprocessor.clone(),
        ))
    }

    /// The tensors, as candle tensors.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        candle_core::safetensors::load_buffer(self.weights(), &Device::Cpu).map_err(|e| {
            Error::Weights {
                path: self.path.clone(),
                message: e.to_string(),
            }
        })
    }

    /// A summary for `lepton inspect`.
    pub fn inspect(&self) -> Result<Inspect> {
        let st =
            safetensors::SafeTensors::deserialize(self.weights()).map_err(|e| Error::Weights {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let mut tensors: Vec<TensorInfo> = st
            .tensors()
            .into_iter()
            .map(|(name, v)| TensorInfo {
                name,
                shape: v.shape().to_vec(),
                dtype: format!("{:?}", v.dtype()),
            })
            .collect();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let parameters = tensors
            .iter()
            .filter(|t| !t.name.contains("running_"))
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        Ok(Inspect {
            file: self.path.clone(),
            file_bytes: self.map.len() as u64,
            manifest: self.manifest.clone(),
            parameters,
            tensors,
            checksums_ok: true,
        })
    }
}

/// One tensor in a photon.
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// What `lepton inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Inspect {
    pub file: PathBuf,
    pub file_bytes: u64,
    pub manifest: Manifest,
    pub parameters: usize,
    pub tensors: Vec<TensorInfo>,
    pub checksums_ok: bool,
}

impl Inspect {
    pub fn to_text(&self) -> String {
        let m = &self.manifest;
        let mut s = format!(
            "file        {} ({} bytes)\nformat      photon v{} (lepton {})\nname        {}\ncreated     {} (unix seconds)\nchecksums   {}\ninput       {:?}\ntask        {:?}\nloss        {}\nparameters  {}\n",
            self.file.display(),
            self.file_bytes,
            m.format_version,
            m.lepton_version,
            m.name,
            m.created_at,
            if self.checksums_ok { "verified (header and weights SHA-256)" } else { "NOT verified" },
            m.input_shape,
            m.preprocessor.task(),
            m.loss.kind(),
            self.parameters
        );
        let classes = m.preprocessor.class_names();
        if !classes.is_empty() {
            s += &format!("classes     {}\n", classes.join(", "));
        }
        s += &format!(
            "schema      {}\n",
            serde_json::to_string(&m.preprocessor.input_schema()).unwrap_or_default()
        );
        if let Some(obj) = m.metrics.as_object() {
            for (k, v) in obj {
                if let Some(x) = v.as_f64() {
                    s += &format!("metric      {k} = {x:.4}\n");
                }
            }
        }
        s += "tensors:\n";
        for t in &self.tensors {
            s += &format!("  {:<32} {:?} {}\n", t.name, t.shape, t.dtype);
        }
        s
    }
}

fn tempfile_path(path: &Path, what: &str) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(format!(
        ".{}.{what}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("photon"),
        std::process::id()
    ))
}

/// Temporary file in the same folder, fsync, rename, fsync the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tempfile_path(path, "write");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
