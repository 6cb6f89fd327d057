//! Early stopping on a validation metric.

use serde::{Deserialize, Serialize};

/// Whether a larger or a smaller metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Min,
    Max,
}

impl Mode {
    /// Whether `value` improves on `best` by more than `min_delta`.
    pub fn improves(self, value: f64, best: Option<f64>, min_delta: f64) -> bool {
        match best {
            None => value.is_finite(),
            Some(b) => match self {
                Mode::Min => value < b - min_delta,
                Mode::Max => value > b + min_delta,
            },
        }
    }
}

/// The `[train.early-stopping]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EarlyStoppingSpec {
    /// Stop after this many epochs without improvement. Default 5.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// The smallest change that counts as an improvement. Default 0.
    #[serde(default)]
    pub min_delta: f64,
}

fn default_patience() -> usize {
    5
}

impl Default for EarlyStoppingSpec {
    fn default() -> Self {
        Self {
            patience: default_patience(),
            min_delta: 0.0,
        }
    }
}

/// Tracks the best metric and the epochs since it improved; saved in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Stored losslessly: patience after a resume compares against the same bits.
    #[serde(with = "crate::lossless::option_f64")]
    pub best: Option<f64>,
    pub best_epoch: Option<u64>,
    pub bad_epochs: usize,
}

impl EarlyStopping {
    /// Record an epoch's metric; returns whether it is a new best.
    pub fn update(&mut self, value: f64, epoch: u64, mode: Mode, min_delta: f64) -> bool {
        if mode.improves(value, self.best, min_delta) {
            self.best = Some(value);
            self.best_epoch = Some(epoch);
            self.bad_epochs = 0;
            true
        } else {
            self.bad_epochs += 1;
            false
        }
    }

    /// Whether training should stop.
    pub fn should_stop(&self, spec: Option<&EarlyStoppingSpec>) -> bool {
        spec.is_some_and(|s| self.bad_epochs >= s.patience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_and_min_delta() {
        let spec = EarlyStoppingSpec {
            patience: 2,
            min_delta: 0.01,
        };
        let mut es = EarlyStopping::default();
        assert!(es.update(1.0, 0, Mode::Min, 0.01));
        assert!(!es.update(0.995, 1, Mode::Min, 0.01)); // improvement below min-delta
        assert!(!es.should_stop(Some(&spec)));
        assert!(es.update(0.9, 2, Mode::Min, 0.01));
        assert_eq!(es.bad_epochs, 0);
        assert!(!es.update(0.95, 3, Mode::Min, 0.01));
        assert!(!es.update(0.95, 4, Mode::Min, 0.01));
        assert!(es.should_stop(Some(&spec)));
        assert!(!es.should_stop(None));
        assert_eq!(es.best, Some(0.9));
        assert_eq!(es.best_epoch, Some(2));
    }

    #[test]
    fn max_mode() {
        let mut es = EarlyStopping::default();
        assert!(es.update(0.5, 0, Mode::Max, 0.0));
        assert!(es.update(0.6, 1, Mode::Max, 0.0));
        assert!(!es.update(0.6, 2, Mode::Max, 0.0));
        assert!(!es.update(f64::NAN, 3, Mode::Max, 0.0));
    }
}
