//! [`CompressConfig`]: the `[compress]` section of a spec and the options of `lepton compress`.

use serde::{Deserialize, Serialize};

use crate::calibrate::Calibration;
use crate::error::{Error, Result};
use crate::prune::check_ratio;
use crate::quantize::Quantize;

/// The compression steps and the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CompressConfig {
    /// Fraction of weights (or, with `structured`, of channels and neurons) to remove, in
    /// `[0, 1)`. Default: no pruning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<f64>,
    /// Remove whole channels/neurons (L1 norm) instead of single weights. Default `false`.
    #[serde(default)]
    pub structured: bool,
    /// Fine-tune epochs after pruning (masks kept). Default 0.
    #[serde(default)]
    pub finetune_epochs: usize,
    /// Fine-tune learning rate (AdamW). Default 1e-3.
    #[serde(default = "default_lr")]
    pub finetune_lr: f64,
    /// Fine-tune batch size. Default 128.
    #[serde(default = "default_batch")]
    pub finetune_batch_size: usize,
    /// `int8` (static, calibrated) or `dynamic-int8`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<Quantize>,
    /// Training samples whose activation ranges set the static int8 scales. Default 512.
    #[serde(default = "default_calibration")]
    pub calibration_samples: usize,
    /// How static int8 picks each activation range: `mse` (the range with the least expected
    /// squared quantization error, from a histogram, as PyTorch's `HistogramObserver`) or
    /// `minmax` (the largest `|x|`), or `per-layer` (each layer's of the two chosen on the
    /// held-out samples). Default `mse`.
    #[serde(default)]
    pub calibration: Calibration,
    /// Static int8: fold each layer's mean output shift on the calibration samples into its
    /// bias (`crate::bias_correction`). Default `true`.
    #[serde(default = "default_true")]
    pub bias_correction: bool,
    /// Static int8: give each layer input never negative on the calibration samples (after a
    /// ReLU) codes with zero point 0 (255 steps over `[0, c]`) instead of the symmetric codes
    /// (127 steps over `[0, c]`, the negative half unused). Default `false`: on mnist-cnn's
    /// held-out split it lost 2 of 6,000 images (98.833 → 98.80 %), see `bench/RESULTS.md`.
    #[serde(default)]
    pub zero_point_codes: bool,
    /// Largest accepted drop of the held-out metric (accuracy, in points) after any step.
    /// Default 0.5.
    #[serde(default = "default_max_drop")]
    pub max_drop: f64,
    /// Encoder folders: least accepted mean cosine of the int8 embeddings to the f32 ones, in
    /// `(0, 1]`. Default 0.995.
    #[serde(default = "default_min_cosine")]
    pub min_cosine: f64,
    /// Write the package even when the gate refuses (the report says so). Default `false`.
    #[serde(default)]
    pub force: bool,
    /// Seed of the fine-tune's shuffling and dropout. Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn default_lr() -> f64 {
    1e-3
}
fn default_batch() -> usize {
    128
}
fn default_true() -> bool {
    true
}
fn default_calibration() -> usize {
    512
}
fn default_max_drop() -> f64 {
    0.5
}
fn default_min_cosine() -> f64 {
    0.995
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            prune: None,
            structured: false,
            finetune_epochs: 0,
            finetune_lr: default_lr(),
            finetune_batch_size: default_batch(),
            quantize: None,
            calibration_samples: default_calibration(),
            calibration: Calibration::default(),
            bias_correction: true,
            zero_point_codes: false,
            max_drop: default_max_drop(),
            min_cosine: default_min_cosine(),
            force: false,
            seed: 0,
        }
    }
}

impl CompressConfig {
    /// Cross-field checks, each error naming its key.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.prune {
            check_ratio(r)?;
        }
        let bad = |field, message: String| Err(Error::Setting { field, message });
        if self.prune.is_none() && self.quantize.is_none() {
            return bad("prune", "nothing to do: give prune and/or quantize".into());
        }
        if self.finetune_epochs > 0 && self.prune.is_none() {
            return bad(
                "finetune-epochs",
                "a fine-tune follows pruning: give prune too".into(),
            );
        }
        if !(self.max_drop.is_finite() && self.max_drop >= 0.0) {
            return bad(
                "max-drop",
                format!("{} must be a finite number of points ≥ 0", self.max_drop),
            );
        }
        if !(self.min_cosine > 0.0 && self.min_cosine <= 1.0) {
            return bad(
                "min-cosine",
                format!("{} must be in (0, 1]", self.min_cosine),
            );
        }
        if !(self.finetune_lr.is_finite() && self.finetune_lr > 0.0) {
            return bad(
                "finetune-lr",
                format!("{} must be finite and > 0", self.finetune_lr),
            );
        }
        if self.finetune_batch_size == 0 {
            return bad("finetune-batch-size", "must be at least 1".into());
        }
        if self.quantize == Some(Quantize::Int8) && self.calibration_samples == 0 {
            return bad("calibration-samples", "static int8 needs at least 1".into());
        }
        Ok(())
    }
}
