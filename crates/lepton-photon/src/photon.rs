//! An opened photon: open and verify, write atomically, build the model.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::inspect::{Inspect, TensorInfo};
use crate::limits::Limits;
use crate::model::{self, LoadedModel};
use crate::{check, layout, Manifest, PhotonContents, FORMAT_VERSION};

/// The file's bytes: memory-mapped when opened from disk, owned when given in memory.
enum Bytes {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An opened, verified photon file.
pub struct Photon {
    path: PathBuf,
    manifest: Manifest,
    bytes: Bytes,
    weights: std::ops::Range<usize>,
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
        let blob = fs_err::read(&tmp).map_err(|e| Error::io(&tmp, e));
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
        let blob = fs_err::read(weights_file).map_err(|e| Error::io(weights_file, e))?;
        layout::tensors(&blob, weights_file, &Limits::default())?;
        Self::write_blob(path, contents, &blob)
    }

    fn write_blob(path: &Path, c: &PhotonContents, blob: &[u8]) -> Result<()> {
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
        // Refuse to write what `open` would refuse: the same checks, then a model build.
        check::manifest(&manifest, path, &Limits::default())?;
        model::build(&c.model, &c.input_shape, blob, path)?;
        let header = serde_json::to_vec(&manifest).map_err(|e| Error::Header {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_atomic(path, &layout::assemble(&header, blob))
    }

    /// Open and verify a photon with the default [`Limits`]; the weights stay memory-mapped.
    pub fn open(path: &Path) -> Result<Photon> {
        Self::open_with_limits(path, &Limits::default())
    }

    /// Open and verify a photon: magic, version, every length against the file and the limits,
    /// both checksums, the JSON, the agreement of preprocessor, input shape, model and loss, and
    /// the safetensors header. The model itself is built by [`Photon::model`].
    pub fn open_with_limits(path: &Path, limits: &Limits) -> Result<Photon> {
        let file = fs_err::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only; a concurrent writer would have to replace the file,
        // and writers in this crate rename a new file into place instead of writing in place.
        let map = unsafe { memmap2::Mmap::map(file.file()) }.map_err(|e| Error::io(path, e))?;
        Self::verify(path, Bytes::Map(map), limits)
    }

    /// Verify a photon held in memory, as [`Photon::open_with_limits`]; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>, limits: &Limits) -> Result<Photon> {
        Self::verify(path, Bytes::Owned(bytes), limits)
    }

    fn verify(path: &Path, bytes: Bytes, limits: &Limits) -> Result<Photon> {
        let header = layout::header(&bytes, path, limits)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes[header.clone()]).map_err(|e| Error::Header {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                field: "format_version".into(),
                message: format!(
                    "is {} but the preamble says {FORMAT_VERSION}",
                    manifest.format_version
                ),
            });
        }
        // The cheap consistency checks before hashing the weights.
        check::manifest(&manifest, path, limits)?;
        let weights = layout::weights(
            &bytes,
            header.end,
            manifest.weights_len,
            &manifest.weights_sha256,
            path,
        )?;
        layout::tensors(&bytes[weights.clone()], path, limits)?;
        Ok(Photon {
            path: path.to_path_buf(),
            manifest,
            bytes,
            weights,
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
        &self.bytes[self.weights.clone()]
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
            file_bytes: self.bytes.len() as u64,
            manifest: self.manifest.clone(),
            parameters,
            tensors,
            checksums_ok: true,
        })
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
