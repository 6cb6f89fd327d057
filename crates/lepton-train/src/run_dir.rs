//! The files of a run directory.
//!
//! ```text
//! RUN_DIR/spec.toml                 the resolved spec
//! RUN_DIR/preprocessor.json         the fitted lepton_data::Preprocessor
//! RUN_DIR/data-report.json          what was loaded (counts, class balance, pins)
//! RUN_DIR/metrics.jsonl             {"kind":"step",...} every log-every steps, {"kind":"epoch",...} per epoch
//!                                   (the epoch line's `phases`: where the time went, see crate::phases)
//! RUN_DIR/checkpoints/last.*        see [`crate::checkpoint`]
//! RUN_DIR/best.safetensors          model variables of the best epoch (plain names, `layers.0.weight`)
//! RUN_DIR/best.json                 {epoch, metric, value, sha256}
//! RUN_DIR/report.json, report.md    the final evaluation (lepton-eval)
//! RUN_DIR/status.json               running / done / failed (with the error), for dashboards
//! RUN_DIR/learning-curves.png, confusion-matrix.png
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    atomic_write, clean_stale_temps, load_verified, save_tensors, CheckpointPaths,
};
use crate::error::{Error, Result};

/// Where a run stands, as `status.json` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    Done,
    Failed,
}

/// Paths inside a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
    pub checkpoints: CheckpointPaths,
}

/// `best.json`: which epoch `best.safetensors` comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestInfo {
    pub epoch: u64,
    pub step: u64,
    pub metric: String,
    pub value: f64,
    pub sha256: String,
}

impl RunDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            checkpoints: CheckpointPaths::new(root),
        }
    }
    pub fn spec(&self) -> PathBuf {
        self.root.join("spec.toml")
    }
    pub fn preprocessor(&self) -> PathBuf {
        self.root.join("preprocessor.json")
    }
    /// `status.json`: `{"state": "running"|"done"|"failed", "pid", "updated" (Unix seconds),
    /// "error"}`, written by [`RunDir::write_status`].
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// Records where the run stands (atomically; a failure is logged, not returned: the status
    /// is for dashboards, the run must not fail for it).
    pub fn write_status(&self, state: RunStatus, error: Option<&str>) {
        let updated = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = serde_json::json!({
            "state": state,
            "pid": std::process::id(),
            "updated": updated,
            "error": error,
        });
        let path = self.status();
        if let Err(e) = crate::checkpoint::atomic_write(&path, body.to_string().as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the run status");
        }
    }
    pub fn data_report(&self) -> PathBuf {
        self.root.join("data-report.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn best_weights(&self) -> PathBuf {
        self.root.join("best.safetensors")
    }
    pub fn best_info(&self) -> PathBuf {
        self.root.join("best.json")
    }

    pub fn create(&self) -> Result<()> {
        fs_err::create_dir_all(&self.root)
            .map_err(|e| Error::io("creating run directory", &self.root, e))
    }

    /// Remove the temp files a killed run left behind (root and `checkpoints/`).
    pub fn clean_stale_temps(&self) -> Result<usize> {
        Ok(clean_stale_temps(&self.root)? + clean_stale_temps(&self.checkpoints.dir)?)
    }

    /// Remove what a run killed before its first checkpoint may have written besides its spec
    /// (metrics, best model, a partial checkpoint), so it can start over.
    pub fn reset_progress(&self) -> Result<()> {
        for path in [
            self.metrics(),
            self.best_info(),
            self.best_weights(),
            self.checkpoints.next.clone(),
            self.checkpoints.weights.clone(),
        ] {
            match fs_err::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &path, e)),
            }
        }
        Ok(())
    }

    /// Write a JSON file atomically.
    pub fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
            op: "encoding",
            path: path.to_path_buf(),
            source,
        })?;
        atomic_write(path, &bytes)
    }

    /// Read a JSON file.
    pub fn read_json<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<T> {
        let bytes = fs_err::read(path).map_err(|e| Error::io("reading", path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            op: "decoding",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Save the best model's variables and `best.json`.
    pub fn save_best(&self, tensors: &HashMap<String, Tensor>, info: BestInfo) -> Result<()> {
        let sha256 = save_tensors(&self.best_weights(), tensors)?;
        self.write_json(&self.best_info(), &BestInfo { sha256, ..info })
    }

    /// Load the best model's variables, verified against `best.json`.
    pub fn load_best(&self) -> Result<(BestInfo, HashMap<String, Tensor>)> {
        let info: BestInfo = self.read_json(&self.best_info())?;
        let tensors = load_verified(&self.best_weights(), &info.sha256)?;
        Ok((info, tensors))
    }
}

/// Appends JSON lines to `metrics.jsonl` and knows its length, which checkpoints record.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: fs_err::File,
    len: u64,
}

/// Where a reopened log continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStart {
    /// An empty log (a new run).
    Empty,
    /// Cut at this byte length, the position a checkpoint recorded.
    At(u64),
    /// Format 1 checkpoints (no recorded length): drop the step lines after `step` and the epoch
    /// lines of epochs `>= epoch`.
    Lines { step: u64, epoch: u64 },
}

impl MetricsLog {
    /// Open for appending from `start` (a killed run may have logged past its last checkpoint;
    /// the resumed run logs those lines again).
    pub fn open(path: &Path, start: LogStart) -> Result<Self> {
        match start {
            LogStart::Empty => atomic_write(path, b"")?,
            LogStart::At(len) => {
                let f = fs_err::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io("opening", path, e))?;
                let have = f
                    .metadata()
                    .map_err(|e| Error::io("reading metadata of", path, e))?
                    .len();
                if have < len {
                    return Err(Error::checkpoint(
                        path,
                        format!("is {have} bytes, shorter than the {len} bytes the checkpoint recorded (truncated or replaced)"),
                    ));
                }
                f.set_len(len)
                    .map_err(|e| Error::io("truncating", path, e))?;
                f.sync_all().map_err(|e| Error::io("syncing", path, e))?;
            }
            LogStart::Lines { step, epoch } => {
                if path.exists() {
                    let text =
                        fs_err::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
                    let kept: String = text
                        .lines()
                        .filter(|l| {
                            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                                return false;
                            };
                            if v["kind"] == "epoch" {
                                v["epoch"].as_u64().is_some_and(|e| e < epoch)
                            } else {
                                v["step"].as_u64().is_some_and(|s| s <= step)
                            }
                        })
                        .map(|l| format!("{l}\n"))
                        .collect();
                    atomic_write(path, kept.as_bytes())?;
                }
            }
        }
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading metadata of", path, e))?
            .len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
        })
    }

    pub fn append(&mut self, line: &serde_json::Value) -> Result<()> {
        let mut s = line.to_string();
        s.push('\n');
        self.file
            .write_all(s.as_bytes())
            .map_err(|e| Error::io("writing", &self.path, e))?;
        self.len += s.len() as u64;
        Ok(())
    }

    /// Bytes written so far (the position a checkpoint records).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Make the lines written so far durable (before a checkpoint records their length).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }
}

/// A run directory opened for writing.
pub struct RunFiles {
    pub dir: RunDir,
    pub metrics: MetricsLog,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reopening_drops_lines_past_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, LogStart::Empty).unwrap();
        for step in 1..=6 {
            log.append(&json!({"kind": "step", "step": step})).unwrap();
            if step % 3 == 0 {
                log.append(&json!({"kind": "epoch", "epoch": step / 3 - 1, "step": step}))
                    .unwrap();
            }
        }
        drop(log);
        // Checkpoint at the last step of epoch 1, before its epoch line was committed.
        let mut log = MetricsLog::open(&path, LogStart::Lines { step: 6, epoch: 1 }).unwrap();
        log.append(&json!({"kind": "epoch", "epoch": 1, "step": 6}))
            .unwrap();
        let lines: Vec<serde_json::Value> = fs_err::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.iter().filter(|v| v["kind"] == "epoch").count(), 2);
        assert_eq!(lines.iter().filter(|v| v["kind"] == "step").count(), 6);
        let mut log = MetricsLog::open(&path, LogStart::Lines { step: 4, epoch: 1 }).unwrap();
        log.append(&json!({"kind": "step", "step": 5})).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 6, "{text}"); // steps 1-5 + epoch 0
    }

    /// A checkpoint records the log's byte length; a resume cuts there exactly, including a
    /// half-written last line, and refuses a log shorter than recorded.
    #[test]
    fn reopening_at_a_recorded_length_cuts_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, LogStart::Empty).unwrap();
        log.append(&json!({"kind": "step", "step": 1})).unwrap();
        let at = log.len();
        assert_eq!(at, fs_err::metadata(&path).unwrap().len());
        log.append(&json!({"kind": "step", "step": 2})).unwrap();
        drop(log);
        // A kill in the middle of a write.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"kind\":\"st").unwrap();
        drop(f);
        let mut log = MetricsLog::open(&path, LogStart::At(at)).unwrap();
        assert_eq!(log.len(), at);
        log.append(&json!({"kind": "step", "step": 2})).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"kind\":\"step\",\"step\":1}\n{\"kind\":\"step\",\"step\":2}\n"
        );
        let err = MetricsLog::open(&path, LogStart::At(1 << 20))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("metrics.jsonl") && err.contains("shorter"),
            "{err}"
        );
    }
}
