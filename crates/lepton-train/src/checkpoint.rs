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
//! file (truncated or altered). Temp files left by a killed writer (`.NAME.tmp-PID`) are never
//! read; [`clean_stale_temps`] removes them.
//!
//! The state is lossless: every `f64` (best metric, learning rate, running totals, history) is
//! stored in its exact round-trip form ([`crate::lossless`]), so early stopping and best-model
//! selection after a resume compare against the same bits as the uninterrupted run.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::early_stopping::EarlyStopping;
use crate::error::{Error, Result};
use crate::summary::EpochMetrics;

/// Version of the checkpoint state format written: 2 stores floats losslessly and the
/// metrics-log position. Format 1 (plain JSON floats) is still read.
pub const CHECKPOINT_VERSION: u32 = 2;

/// Running sums of the training metrics of the epoch in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTotals {
    /// Sum over batches of `loss * batch size`.
    #[serde(with = "crate::lossless::f64")]
    pub loss_sum: f64,
    /// Correctly classified training samples (classification only).
    #[serde(with = "crate::lossless::f64")]
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
    #[serde(with = "crate::lossless::f64")]
    pub lr: f64,
    /// The name of the metric early stopping and best-model selection use.
    pub metric: String,
    pub early_stopping: EarlyStopping,
    /// Metrics of the finished epochs.
    #[serde(with = "exact_history")]
    pub history: Vec<EpochMetrics>,
    /// Training totals of the epoch in progress.
    pub totals: EpochTotals,
    /// Whether training finished (early stop or last epoch).
    pub finished: bool,
    /// SHA-256 (hex) of `last.safetensors`.
    pub sha256: String,
    /// Length in bytes of `metrics.jsonl` when the checkpoint was written: a resume truncates the
    /// log there (lines a killed run wrote after its checkpoint are written again). Absent in
    /// format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_len: Option<u64>,
    /// Rayon threads of the process that wrote the checkpoint (a resume with another count warns:
    /// parallel reductions may then round differently).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Ranks of the data-parallel group that wrote the checkpoint (absent: one); a resume with
    /// another count is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<usize>,
}

/// [`EpochMetrics`] with lossless floats, for the checkpoint's history (`metrics.jsonl` keeps
/// plain JSON numbers for other tools).
mod exact_history {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::summary::EpochMetrics;

    #[derive(Serialize, Deserialize)]
    struct Exact {
        epoch: u64,
        step: u64,
        #[serde(with = "crate::lossless::f64")]
        lr: f64,
        #[serde(with = "crate::lossless::f64")]
        train_loss: f64,
        #[serde(with = "crate::lossless::option_f64")]
        train_accuracy: Option<f64>,
        #[serde(with = "crate::lossless::option_f64")]
        val_loss: Option<f64>,
        #[serde(with = "crate::lossless::option_f64")]
        val_accuracy: Option<f64>,
        #[serde(
            default,
            with = "crate::lossless::option_f64",
            skip_serializing_if = "Option::is_none"
        )]
        val_perplexity: Option<f64>,
        #[serde(
            default,
            with = "crate::lossless::option_f64",
            skip_serializing_if = "Option::is_none"
        )]
        val_bits_per_token: Option<f64>,
        #[serde(with = "crate::lossless::f64")]
        monitored: f64,
        best: bool,
        #[serde(with = "crate::lossless::f64")]
        seconds: f64,
    }

    pub fn serialize<S: Serializer>(v: &[EpochMetrics], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|m| Exact {
            epoch: m.epoch,
            step: m.step,
            lr: m.lr,
            train_loss: m.train_loss,
            train_accuracy: m.train_accuracy,
            val_loss: m.val_loss,
            val_accuracy: m.val_accuracy,
            val_perplexity: m.val_perplexity,
            val_bits_per_token: m.val_bits_per_token,
            monitored: m.monitored,
            best: m.best,
            seconds: m.seconds,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EpochMetrics>, D::Error> {
        Ok(Vec::<Exact>::deserialize(d)?
            .into_iter()
            .map(|m| EpochMetrics {
                epoch: m.epoch,
                step: m.step,
                lr: m.lr,
                train_loss: m.train_loss,
                train_accuracy: m.train_accuracy,
                val_loss: m.val_loss,
                val_accuracy: m.val_accuracy,
                val_perplexity: m.val_perplexity,
                val_bits_per_token: m.val_bits_per_token,
                monitored: m.monitored,
                best: m.best,
                seconds: m.seconds,
                phases: None,
            })
            .collect())
    }
}

/// Remove the temp files a killed writer left in `dir` (`.NAME.tmp-PID`, see [`atomic_write`]);
/// returns how many. A missing directory has none.
pub fn clean_stale_temps(dir: &Path) -> Result<usize> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            fs_err::remove_file(&path)
                .map_err(|e| Error::io("removing stale temp file", &path, e))?;
            tracing::info!(file = %path.display(), "removed a temp file left by a killed run");
            removed += 1;
        }
    }
    Ok(removed)
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
        if !(1..=CHECKPOINT_VERSION).contains(&state.version) {
            return Err(Error::checkpoint(
                &self.state,
                format!(
                    "format version {} is not supported (expected 1 to {CHECKPOINT_VERSION})",
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
            metrics_len: Some(12),
            threads: Some(2),
            world: Some(2),
        }
    }

    /// Finding 8 (issue 12): the best metric, the learning rate, the totals and the history
    /// come back from `last.json` with the same bits, NaN included (format 1 lost the last bit
    /// of 0.9868995633187773 and could not read a NaN back at all).
    #[test]
    fn state_floats_round_trip_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CheckpointPaths::new(dir.path());
        let metrics = EpochMetrics {
            epoch: 0,
            step: 10,
            lr: 0.1 * std::f64::consts::FRAC_1_SQRT_2,
            train_loss: 1.0 / 3.0,
            train_accuracy: Some(0.9868995633187773),
            val_loss: Some(f64::NAN),
            val_accuracy: None,
            val_perplexity: Some(1.0 / 7.0),
            val_bits_per_token: None,
            monitored: 0.9868995633187773,
            best: true,
            seconds: 0.123456789012345,
            phases: None,
        };
        let mut st = state();
        st.lr = 0.012345678901234568;
        st.early_stopping.best = Some(0.9868995633187773);
        st.early_stopping.best_epoch = Some(0);
        st.totals.loss_sum = 2.0f64.sqrt() * 16.0;
        st.totals.correct = 13.0;
        st.history = vec![metrics.clone()];
        let t = HashMap::from([(
            "model.w".to_string(),
            Tensor::new(&[1f32], &Device::Cpu).unwrap(),
        )]);
        paths.save(&t, &st).unwrap();
        let (back, _) = paths.load().unwrap();
        let bits = |v: f64| v.to_bits();
        assert_eq!(
            back.early_stopping.best.map(bits),
            Some(bits(0.9868995633187773))
        );
        assert_eq!(bits(back.lr), bits(st.lr));
        assert_eq!(bits(back.totals.loss_sum), bits(st.totals.loss_sum));
        let h = &back.history[0];
        assert_eq!(bits(h.monitored), bits(metrics.monitored));
        assert_eq!(bits(h.lr), bits(metrics.lr));
        assert!(h.val_loss.unwrap().is_nan());
        assert_eq!(back.metrics_len, Some(12));
        assert_eq!((back.version, back.threads), (CHECKPOINT_VERSION, Some(2)));
    }

    #[test]
    fn format_1_state_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CheckpointPaths::new(dir.path());
        let t = HashMap::from([(
            "model.w".to_string(),
            Tensor::new(&[1f32], &Device::Cpu).unwrap(),
        )]);
        paths.save(&t, &state()).unwrap();
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&paths.state).unwrap()).unwrap();
        v["version"] = 1.into();
        v["lr"] = 0.1.into();
        v["early_stopping"]["best"] = 0.5.into();
        v.as_object_mut().unwrap().remove("metrics_len");
        std::fs::write(&paths.state, v.to_string()).unwrap();
        let (back, _) = paths.load().unwrap();
        assert_eq!((back.lr, back.early_stopping.best), (0.1, Some(0.5)));
        assert_eq!(back.metrics_len, None);
        v["version"] = 3.into();
        std::fs::write(&paths.state, v.to_string()).unwrap();
        let err = paths.load().unwrap_err().to_string();
        assert!(
            err.contains("last.json") && err.contains("version 3"),
            "{err}"
        );
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".last.json.tmp-4242");
        std::fs::write(&stale, b"{\"vers").unwrap();
        std::fs::write(dir.path().join("keep.json"), b"{}").unwrap();
        assert_eq!(clean_stale_temps(dir.path()).unwrap(), 1);
        assert!(!stale.exists() && dir.path().join("keep.json").exists());
        assert_eq!(clean_stale_temps(&dir.path().join("absent")).unwrap(), 0);
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
