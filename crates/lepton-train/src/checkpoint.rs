//! Atomic, checksummed checkpoints.
//!
//! A checkpoint is `checkpoints/last.safetensors` (model variables prefixed `model.`, optimizer
//! state prefixed `optim.`) plus `checkpoints/last.json` ([`CheckpointState`]: position in the run,
//! early-stopping state, metric history and the SHA-256 of the safetensors file).
//!
//! Commit protocol, safe against a kill at any instant:
//! 1. write `last.safetensors.next` (temp file, fsync, rename, fsync dir);
//! 2. write `last.json` naming the new checksum (same atomic write);
//! 3. rename `last.safetensors.next` over `last.safetensors`, fsync dir.
//!
//! On load, a `.next` file whose checksum matches `last.json` means step 3 was interrupted: it is
//! completed. Otherwise `last.safetensors` must match the checksum, or the load fails naming the
//! file (truncated or altered).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::early_stopping::EarlyStopping;
use crate::error::{Error, Result};
use crate::summary::EpochMetrics;

/// Version of the checkpoint state format.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Running sums of the training metrics of the epoch in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTotals {
    /// Sum over batches of `loss * batch size`.
    pub loss_sum: f64,
    /// Correctly classified training samples (classification only).
    pub correct: f64,
    pub samples: u64,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub version: u32,
    /// The epoch in progress (0-based).
    pub epoch: u64,
    /// Batches of `epoch` already trained on; the next batch to train is this one.
    pub batch_in_epoch: u64,
    /// Optimizer steps done in the whole run; the schedule position.
    pub step: u64,
    /// The learning rate of the last step.
    pub lr: f64,
    /// The name of the metric early stopping and best-model selection use.
    pub metric: String,
    pub early_stopping: EarlyStopping,
    /// Metrics of the finished epochs.
    pub history: Vec<EpochMetrics>,
    /// Training totals of the epoch in progress.
    pub totals: EpochTotals,
    /// Whether training finished (early stop or last epoch).
    pub finished: bool,
    /// SHA-256 (hex) of `last.safetensors`.
    pub sha256: String,
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = fs_err::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("writing", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
    }
    commit(&tmp, path)
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Rename `from` to `to` and fsync the directory so the rename is durable.
fn commit(from: &Path, to: &Path) -> Result<()> {
    fs_err::rename(from, to).map_err(|e| Error::io("renaming", to, e))?;
    sync_dir(to)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Directories can be opened read-only and fsynced on Unix; elsewhere this is best effort.
    if let Ok(d) = std::fs::File::open(dir) {
        #[cfg(unix)]
        d.sync_all()
            .map_err(|e| Error::io("syncing directory", dir, e))?;
        #[cfg(not(unix))]
        drop(d);
    }
    Ok(())
}

/// Save named tensors as safetensors at `path` atomically; returns the file's SHA-256 (hex).
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<String> {
    let tmp = temp_path(path);
    candle_core::safetensors::save(tensors, &tmp).map_err(|source| Error::Tensor {
        op: format!("writing {}", tmp.display()),
        source,
    })?;
    let sha = {
        let mut f = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| Error::io("opening", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Error::io("reading", &tmp, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hex::encode(hasher.finalize())
    };
    commit(&tmp, path)?;
    Ok(sha)
}

/// Load safetensors from `path`, refusing the file when its SHA-256 differs from `sha256`.
pub fn load_verified(path: &Path, sha256: &str) -> Result<HashMap<String, Tensor>> {
    let bytes = fs_err::read(path).map_err(|e| Error::io("reading checkpoint", path, e))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != sha256 {
        return Err(Error::checkpoint(
            path,
            format!(
                "checksum mismatch (file is truncated or altered: {} bytes, SHA-256 {actual}, expected {sha256})",
                bytes.len()
            ),
        ));
    }
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|source| Error::Tensor {
        op: format!("decoding {}", path.display()),
        source,
    })
}

/// The checkpoint files of a run directory.
#[derive(Debug, Clone)]
pub struct CheckpointPaths {
    pub dir: PathBuf,
    pub weights: PathBuf,
    pub next: PathBuf,
    pub state: PathBuf,
}

impl CheckpointPaths {
    pub fn new(run_dir: &Path) -> Self {
        let dir = run_dir.join("checkpoints");
        Self {
            weights: dir.join("last.safetensors"),
            next: dir.join("last.safetensors.next"),
            state: dir.join("last.json"),
            dir,
        }
    }

    /// Write a checkpoint with the commit protocol above.
    pub fn save(&self, tensors: &HashMap<String, Tensor>, state: &CheckpointState) -> Result<()> {
        fs_err::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        let sha256 = save_tensors(&self.next, tensors)?;
        let state = CheckpointState {
            sha256,
            ..state.clone()
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|source| Error::Json {
            op: "encoding",
            path: self.state.clone(),
            source,
        })?;
        atomic_write(&self.state, &json)?;
        commit(&self.next, &self.weights)
    }

    /// Read and verify the last checkpoint.
    pub fn load(&self) -> Result<(CheckpointState, HashMap<String, Tensor>)> {
        let json = fs_err::read(&self.state)
            .map_err(|e| Error::io("reading checkpoint state", &self.state, e))?;
        let state: CheckpointState =
            serde_json::from_slice(&json).map_err(|source| Error::Json {
                op: "decoding checkpoint state",
                path: self.state.clone(),
                source,
            })?;
        if state.version != CHECKPOINT_VERSION {
            return Err(Error::checkpoint(
                &self.state,
                format!(
                    "format version {} is not supported (expected {CHECKPOINT_VERSION})",
                    state.version
                ),
            ));
        }
        if self.next.exists() {
            match load_verified(&self.next, &state.sha256) {
                Ok(tensors) => {
                    commit(&self.next, &self.weights)?;
                    return Ok((state, tensors));
                }
                Err(_) => {
                    // An unfinished write from before the state file was updated.
                    let _ = fs_err::remove_file(&self.next);
                }
            }
        }
        let tensors = load_verified(&self.weights, &state.sha256)?;
        Ok((state, tensors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CheckpointState {
        CheckpointState {
            version: CHECKPOINT_VERSION,
            epoch: 1,
            batch_in_epoch: 3,
            step: 10,
            lr: 0.1,
            metric: "val-loss".into(),
            early_stopping: EarlyStopping::default(),
            history: vec![],
            totals: EpochTotals::default(),
            finished: false,
            sha256: String::new(),
        }
    }

    #[test]
    fn roundtrip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CheckpointPaths::new(dir.path());
        let t = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let tensors = HashMap::from([("model.w".to_string(), t)]);
        paths.save(&tensors, &state()).unwrap();
        let (st, loaded) = paths.load().unwrap();
        assert_eq!(st.step, 10);
        assert_eq!(
            loaded["model.w"].to_vec1::<f32>().unwrap(),
            vec![1., 2., 3.]
        );

        // Flip one byte of the data: refused, naming the file.
        let mut bytes = std::fs::read(&paths.weights).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&paths.weights, &bytes).unwrap();
        let err = paths.load().unwrap_err().to_string();
        assert!(
            err.contains("last.safetensors") && err.contains("checksum"),
            "{err}"
        );
    }

    #[test]
    fn interrupted_commit_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CheckpointPaths::new(dir.path());
        let t1 = HashMap::from([(
            "model.w".to_string(),
            Tensor::new(&[1f32], &Device::Cpu).unwrap(),
        )]);
        paths.save(&t1, &state()).unwrap();
        // Simulate a kill between steps 2 and 3: `.next` holds the new weights, the state names them.
        let t2 = HashMap::from([(
            "model.w".to_string(),
            Tensor::new(&[2f32], &Device::Cpu).unwrap(),
        )]);
        let sha = save_tensors(&paths.next, &t2).unwrap();
        let st = CheckpointState {
            sha256: sha,
            step: 11,
            ..state()
        };
        atomic_write(&paths.state, &serde_json::to_vec(&st).unwrap()).unwrap();
        let (st, loaded) = paths.load().unwrap();
        assert_eq!(st.step, 11);
        assert_eq!(loaded["model.w"].to_vec1::<f32>().unwrap(), vec![2.]);
        assert!(!paths.next.exists());

        // A kill during step 1: a partial `.next` is ignored, the old checkpoint stays valid.
        std::fs::write(&paths.next, b"partial").unwrap();
        let (_, loaded) = paths.load().unwrap();
        assert_eq!(loaded["model.w"].to_vec1::<f32>().unwrap(), vec![2.]);
    }
}
