//! Per-epoch metrics and the run summary.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::phases::PhaseTimes;

/// Metrics of one finished epoch (one line of `metrics.jsonl` with `"kind": "epoch"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 0-based epoch.
    pub epoch: u64,
    /// Optimizer steps done at the end of the epoch.
    pub step: u64,
    pub lr: f64,
    pub train_loss: f64,
    /// Training accuracy (classification; with dropout/augmentation active).
    pub train_accuracy: Option<f64>,
    /// Validation loss (absent when the validation split is empty).
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// Language models: `exp(val-loss)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    /// Language models: `val-loss / ln 2`, bits per token (per character for a character
    /// vocabulary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_bits_per_token: Option<f64>,
    /// The value of the monitored metric this epoch.
    pub monitored: f64,
    /// Whether this epoch produced the best model so far.
    pub best: bool,
    /// Wall time of the epoch in seconds (training + validation).
    pub seconds: f64,
    /// Where the wall time since the previous epoch line went (see [`crate::phases`]). Not
    /// kept in checkpoints: `None` in a history read back from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseTimes>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub name: String,
    pub run_dir: PathBuf,
    pub epochs: u64,
    pub steps: u64,
    /// The monitored metric (e.g. `val-accuracy`) and its best value.
    pub metric: String,
    pub best_metric: Option<f64>,
    pub best_epoch: Option<u64>,
    pub stopped_early: bool,
    /// Which split the final report evaluates (`test` or `validation`).
    pub eval_split: String,
    /// Headline numbers of the final report, e.g. `accuracy` or `r2`.
    pub final_metrics: Vec<(String, f64)>,
    /// Training wall time in seconds (this process only, when resumed).
    pub train_seconds: f64,
    /// Paths of the written report files.
    pub report: PathBuf,
    pub best_weights: PathBuf,
}
