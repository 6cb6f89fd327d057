//! A trial's files in the state directory: `trials/NNNN/{spec.toml, params.json, run/,
//! result.json}`. `params.json` is written before the trial starts (a resumed search reuses the
//! same values), `result.json` when it ends: a trial with a result is never run again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Ran every epoch (or its own early stopping).
    Completed,
    /// Stopped at a rung by ASHA / Hyperband.
    Stopped,
    /// The training process failed.
    Failed,
}

/// The sampled point of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Unit coordinates, one per space key in key order.
    pub unit: Vec<f64>,
    /// The spec values they map to.
    pub values: BTreeMap<String, toml::Value>,
}

/// The outcome of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub id: usize,
    pub status: Status,
    pub params: Params,
    /// The score after each epoch (higher is better: validation accuracy, else minus the loss).
    pub curve: Vec<f64>,
    /// Name of the score: `val_accuracy`, `-val_loss` or `-train_loss`.
    pub metric: String,
    pub seconds: f64,
    /// The last lines of the training's stderr when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TrialResult {
    /// The best score over the curve.
    pub fn best(&self) -> Option<f64> {
        self.curve.iter().copied().reduce(f64::max)
    }
}

/// Paths of trial `id`.
#[derive(Debug, Clone)]
pub struct TrialDir {
    pub id: usize,
    pub root: PathBuf,
}

impl TrialDir {
    pub fn new(state: &Path, id: usize) -> Self {
        Self {
            id,
            root: state.join("trials").join(format!("{id:04}")),
        }
    }
    pub fn spec(&self) -> PathBuf {
        self.root.join("spec.toml")
    }
    pub fn params(&self) -> PathBuf {
        self.root.join("params.json")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn result(&self) -> PathBuf {
        self.root.join("result.json")
    }
    pub fn stderr(&self) -> PathBuf {
        self.root.join("stderr.log")
    }
}

/// Write JSON atomically (temp file + rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        op: "encoding",
        path: path.into(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    fs_err::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
    fs_err::rename(&tmp, path).map_err(|e| Error::io("renaming", path, e))
}

/// Read JSON, `None` when the file does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs_err::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| Error::Json {
                op: "reading",
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// The per-epoch scores in a run's `metrics.jsonl` (epoch lines; a torn last line is ignored)
/// and the metric's name.
pub fn read_curve(run: &Path) -> (Vec<f64>, String) {
    let text = fs_err::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    let mut curve = vec![];
    let mut name = String::from("val_accuracy");
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["kind"] != "epoch" {
            continue;
        }
        let (s, n) = if let Some(a) = v["val_accuracy"].as_f64() {
            (a, "val_accuracy")
        } else if let Some(l) = v["val_loss"].as_f64() {
            (-l, "-val_loss")
        } else {
            (-v["train_loss"].as_f64().unwrap_or(f64::NAN), "-train_loss")
        };
        name = n.into();
        curve.push(if s.is_finite() { s } else { f64::NEG_INFINITY });
    }
    (curve, name)
}
