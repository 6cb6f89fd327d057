//! One run directory as `lepton train` leaves it (see `lepton_train::RunDir` for the files) and the
//! summary the tables and the dashboard show: name, model kind, status, epochs, best metric, time,
//! size.
//!
//! Status: the trainer's `status.json` (`running`, `done`, or `failed` with the error) when it says
//! `done` or `failed`; else `done` when `report.json` (the final evaluation, written last) exists;
//! `running` when `metrics.jsonl` changed within [`RUNNING_WINDOW`]; `failed` otherwise (a process
//! killed before its final evaluation leaves `running` in `status.json`, and its files go quiet).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{read_with_budget, Error, Result};
use crate::metrics::{self, Metrics};

/// A run without `report.json` whose `metrics.jsonl` changed this recently counts as running.
pub const RUNNING_WINDOW: Duration = Duration::from_secs(120);
/// Budget for the small TOML/JSON files of a run (spec, best.json, report.json, ...).
pub const FILE_BUDGET: u64 = 32 << 20;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Running,
    Done,
    Failed,
}

impl Status {
    /// `done` with a final report; else `running` when `metrics.jsonl` changed (`updated`)
    /// within [`RUNNING_WINDOW`]; else `failed`.
    ///
    /// `marker` is what the trainer's `status.json` says, if anything: its `done` and `failed`
    /// are final; its `running` still goes quiet like a run without the file (a killed process
    /// cannot write `failed`).
    pub fn infer(has_report: bool, updated: Option<SystemTime>, marker: Option<Status>) -> Status {
        if marker == Some(Status::Failed) {
            Status::Failed
        } else if has_report || marker == Some(Status::Done) {
            Status::Done
        } else if updated.is_some_and(|t| age(t) < RUNNING_WINDOW) {
            Status::Running
        } else {
            Status::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }
}

/// `best.json`, or the last epoch line marked `best` while no `best.json` exists yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Best {
    pub metric: String,
    pub value: f64,
    pub epoch: u64,
}

/// The row of a run in `lepton runs list` and the dashboard's table.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Path relative to the runs directory, `/`-separated: the id the dashboard's API takes.
    pub id: String,
    pub path: PathBuf,
    /// `name` of the spec (the directory name when the spec has none).
    pub name: String,
    /// `mlp`, `cnn`, `lstm`, `transformer`, ... from the spec's layer types.
    pub kind: String,
    pub status: Status,
    /// What the trainer's `status.json` says (absent for runs made before it was written).
    #[serde(skip)]
    pub marker: Option<Status>,
    /// The error a failed run recorded in `status.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Epochs finished (epoch lines in `metrics.jsonl`).
    pub epochs: u64,
    /// `train.epochs` of the spec.
    pub epochs_planned: Option<u64>,
    pub steps: u64,
    pub best: Option<Best>,
    /// Sum of the epochs' `seconds` (training time; the final evaluation is not counted).
    pub train_seconds: f64,
    /// Last change of `metrics.jsonl`, seconds since the Unix epoch.
    pub updated: Option<f64>,
    /// Size of `model.photon` in bytes.
    pub photon_bytes: Option<u64>,
    /// Size of `best.safetensors` in bytes.
    pub weights_bytes: Option<u64>,
    /// Headline numbers of `report.json` (accuracy, log-loss, macro F1, or the regression errors).
    pub report: serde_json::Map<String, serde_json::Value>,
    /// Files that could not be read, and skipped `metrics.jsonl` lines.
    pub warnings: Vec<String>,
}

/// A run read from disk: its summary plus what the detail views need.
#[derive(Debug, Clone)]
pub struct Run {
    pub info: RunInfo,
    /// `spec.toml` as a TOML table (`None` when it could not be read; see the warnings).
    pub spec: Option<toml::Table>,
    pub metrics: Metrics,
    /// `report.json` as JSON.
    pub report: Option<serde_json::Value>,
}

impl Run {
    /// Read the run at `path`; `id` is its name relative to the runs directory. Only a missing
    /// `spec.toml` is an error: every other unreadable file becomes a warning.
    pub fn read(path: &Path, id: &str) -> Result<Run> {
        let spec_path = path.join("spec.toml");
        if !spec_path.is_file() {
            return Err(Error::NotARun {
                path: path.to_path_buf(),
            });
        }
        let mut warnings = Vec::new();
        let spec = match read_toml(&spec_path) {
            Ok(t) => Some(t),
            Err(e) => {
                warnings.push(crate::error_chain(&e));
                None
            }
        };
        let metrics_path = path.join("metrics.jsonl");
        let metrics = metrics::read_all(&metrics_path).unwrap_or_else(|e| {
            warnings.push(crate::error_chain(&e));
            Metrics::default()
        });
        warnings.extend(metrics.warnings.iter().cloned());
        let report = read_json_warn(&path.join("report.json"), &mut warnings);
        let best_json = read_json_warn(&path.join("best.json"), &mut warnings);

        let name = spec
            .as_ref()
            .and_then(|s| s.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| dir_name(path));
        let best = best_json
            .as_ref()
            .and_then(best_from_json)
            .or_else(|| best_from_metrics(&metrics, spec.as_ref()));
        let updated = mtime(&metrics_path).or_else(|| mtime(&spec_path));
        let status_json = read_json_warn(&path.join("status.json"), &mut warnings);
        let marker = status_json
            .as_ref()
            .and_then(|s| s.get("state"))
            .and_then(|s| serde_json::from_value::<Status>(s.clone()).ok());
        let error = status_json
            .as_ref()
            .and_then(|s| s.get("error"))
            .and_then(|e| e.as_str())
            .map(str::to_owned);
        let status = Status::infer(report.is_some(), updated, marker);
        let info = RunInfo {
            id: id.to_owned(),
            path: path.to_path_buf(),
            name,
            kind: spec.as_ref().map_or_else(|| "?".into(), model_kind),
            status,
            marker,
            error,
            epochs: metrics.epochs.len() as u64,
            epochs_planned: spec
                .as_ref()
                .and_then(|s| s.get("train")?.get("epochs")?.as_integer())
                .and_then(|e| u64::try_from(e).ok()),
            steps: metrics
                .steps
                .iter()
                .chain(&metrics.epochs)
                .map(|r| r.step)
                .max()
                .unwrap_or(0),
            best,
            train_seconds: metrics
                .epochs
                .iter()
                .filter_map(|r| r.values.get("seconds"))
                .sum(),
            updated: updated
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            photon_bytes: size(&path.join("model.photon")),
            weights_bytes: size(&path.join("best.safetensors")),
            report: report.as_ref().map(headline).unwrap_or_default(),
            warnings,
        };
        Ok(Run {
            info,
            spec,
            metrics,
            report,
        })
    }
}

/// The numbers of `report.json` worth a column: scalars only, `null`s dropped.
fn headline(report: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    if let Some(map) = report.as_object() {
        for (k, v) in map {
            if v.is_number() || (v.is_string() && k == "task") {
                out.insert(k.clone(), v.clone());
            }
        }
        if let Some(f1) = map.get("macro_avg").and_then(|m| m.get("f1")) {
            out.insert("macro_f1".into(), f1.clone());
        }
    }
    out
}

fn best_from_json(v: &serde_json::Value) -> Option<Best> {
    Some(Best {
        metric: v.get("metric")?.as_str()?.to_owned(),
        value: v.get("value")?.as_f64()?,
        epoch: v.get("epoch")?.as_u64()?,
    })
}

/// While a run trains before its first `best.json`, or when that file is unreadable.
fn best_from_metrics(m: &Metrics, spec: Option<&toml::Table>) -> Option<Best> {
    let r = m.epochs.iter().rev().find(|r| r.best)?;
    let metric = spec
        .and_then(|s| s.get("train")?.get("monitor")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "monitored".into());
    Some(Best {
        metric,
        value: *r.values.get("monitored")?,
        epoch: r.epoch,
    })
}

/// A model's family from its layer types, most specific first.
fn model_kind(spec: &toml::Table) -> String {
    let types: Vec<&str> = spec
        .get("model")
        .and_then(|m| m.get("layers"))
        .and_then(|l| l.as_array())
        .map(|layers| {
            layers
                .iter()
                .filter_map(|l| l.get("type")?.as_str())
                .collect()
        })
        .unwrap_or_default();
    let has = |prefix: &str| types.iter().any(|t| t.starts_with(prefix));
    let kind = if has("transformer") || has("attention") {
        "transformer"
    } else if has("lstm") {
        "lstm"
    } else if has("gru") {
        "gru"
    } else if has("rnn") {
        "rnn"
    } else if has("conv") {
        "cnn"
    } else if has("linear") {
        if types.iter().filter(|t| **t == "linear").count() > 1 {
            "mlp"
        } else {
            "linear"
        }
    } else if types.is_empty() {
        "?"
    } else {
        types[0]
    };
    kind.to_owned()
}

pub(crate) fn read_toml(path: &Path) -> Result<toml::Table> {
    let bytes = read_with_budget(path, FILE_BUDGET)?;
    let text = String::from_utf8_lossy(&bytes);
    toml::from_str(&text).map_err(|e| Error::Toml {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = read_with_budget(path, FILE_BUDGET)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

/// `None` when absent; a warning (and `None`) when present but unreadable.
fn read_json_warn(path: &Path, warnings: &mut Vec<String>) -> Option<serde_json::Value> {
    if !path.exists() {
        return None;
    }
    read_json(path)
        .map_err(|e| warnings.push(crate::error_chain(&e)))
        .ok()
}

fn dir_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

fn size(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name = "tiny"
[[model.layers]]
type = "linear"
[[model.layers]]
type = "relu"
[[model.layers]]
type = "linear"
[train]
epochs = 3
"#;

    fn run_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spec.toml"), SPEC).unwrap();
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            concat!(
                r#"{"kind":"epoch","epoch":0,"step":4,"best":true,"monitored":0.5,"seconds":1.5}"#,
                "\n",
                r#"{"kind":"epoch","epoch":1,"step":8,"best":false,"monitored":0.4,"seconds":2.0}"#,
                "\n",
            ),
        )
        .unwrap();
        dir
    }

    #[test]
    fn running_run_without_best_json_takes_best_from_metrics() {
        let dir = run_dir();
        let run = Run::read(dir.path(), "tiny").unwrap();
        let info = &run.info;
        assert_eq!(info.name, "tiny");
        assert_eq!(info.kind, "mlp");
        assert_eq!(info.status, Status::Running);
        assert_eq!(
            (info.epochs, info.epochs_planned, info.steps),
            (2, Some(3), 8)
        );
        assert_eq!(info.best.as_ref().unwrap().value, 0.5);
        assert_eq!(info.train_seconds, 3.5);
        assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    }

    #[test]
    fn status_json_failed_is_final_and_carries_the_error() {
        let dir = run_dir();
        // Fresh metrics would say "running"; the trainer's own word wins.
        std::fs::write(
            dir.path().join("status.json"),
            r#"{"state":"failed","pid":1,"updated":0,"error":"reading data/t.csv: not found"}"#,
        )
        .unwrap();
        let info = Run::read(dir.path(), "tiny").unwrap().info;
        assert_eq!(info.status, Status::Failed);
        assert_eq!(info.error.as_deref(), Some("reading data/t.csv: not found"));
        // "running" in the file still goes quiet like a run without it (a killed process).
        std::fs::write(
            dir.path().join("status.json"),
            r#"{"state":"running","pid":1,"updated":0,"error":null}"#,
        )
        .unwrap();
        let info = Run::read(dir.path(), "tiny").unwrap().info;
        assert_eq!(info.status, Status::Running);
        let old = SystemTime::now() - RUNNING_WINDOW - Duration::from_secs(1);
        assert_eq!(Status::infer(false, Some(old), info.marker), Status::Failed);
        assert_eq!(
            Status::infer(false, Some(old), Some(Status::Done)),
            Status::Done
        );
    }

    #[test]
    fn report_json_means_done_and_fills_the_headline() {
        let dir = run_dir();
        std::fs::write(
            dir.path().join("report.json"),
            r#"{"task":"classification","accuracy":0.9,"top_k":null,"macro_avg":{"f1":0.8}}"#,
        )
        .unwrap();
        let info = Run::read(dir.path(), "tiny").unwrap().info;
        assert_eq!(info.status, Status::Done);
        assert_eq!(info.report["accuracy"], 0.9);
        assert_eq!(info.report["macro_f1"], 0.8);
        assert!(!info.report.contains_key("top_k"));
    }

    #[test]
    fn malformed_files_become_warnings_naming_them() {
        let dir = run_dir();
        std::fs::write(dir.path().join("report.json"), "{\"accuracy\": 0.9").unwrap();
        std::fs::write(dir.path().join("best.json"), "[").unwrap();
        let info = Run::read(dir.path(), "tiny").unwrap().info;
        assert_eq!(info.warnings.len(), 2, "{:?}", info.warnings);
        assert!(info.warnings[0].contains("report.json"));
        assert!(info.warnings[1].contains("best.json"));
        assert_eq!(info.status, Status::Running);
    }

    #[test]
    fn broken_spec_is_a_warning_not_a_panic() {
        let dir = run_dir();
        std::fs::write(dir.path().join("spec.toml"), "name = ").unwrap();
        let info = Run::read(dir.path(), "x").unwrap().info;
        assert_eq!(info.kind, "?");
        assert!(
            info.warnings[0].contains("spec.toml"),
            "{:?}",
            info.warnings
        );
    }

    #[test]
    fn directory_without_spec_is_not_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = Run::read(dir.path(), "x").unwrap_err();
        assert!(matches!(err, Error::NotARun { .. }));
    }

    #[test]
    fn model_kinds() {
        let kind = |types: &[&str]| {
            let layers: Vec<String> = types
                .iter()
                .map(|t| format!("[[model.layers]]\ntype = \"{t}\"\n"))
                .collect();
            model_kind(&toml::from_str(&layers.concat()).unwrap())
        };
        assert_eq!(kind(&["conv2d", "relu", "linear"]), "cnn");
        assert_eq!(
            kind(&["embedding", "transformer-block", "linear"]),
            "transformer"
        );
        assert_eq!(kind(&["lstm", "linear"]), "lstm");
        assert_eq!(kind(&["linear"]), "linear");
    }
}
