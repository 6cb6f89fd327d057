//! Training progress events, for progress bars and logs.

use std::path::Path;

use crate::summary::{EpochMetrics, RunSummary};

/// What the trainer reports while it runs.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Cross-validation starts training fold `fold` (0-based) of `folds`.
    Fold { fold: u64, folds: u64 },
    /// A run starts or resumes.
    Start {
        epochs: u64,
        steps_per_epoch: u64,
        start_epoch: u64,
        start_step: u64,
    },
    /// An epoch starts; `first_batch` > 0 when resuming mid-epoch.
    EpochStart { epoch: u64, first_batch: u64 },
    /// Averages since the last `Step` event (emitted every `train.log-every` steps).
    Step {
        epoch: u64,
        step: u64,
        batch: u64,
        loss: f32,
        accuracy: Option<f32>,
        lr: f64,
        samples_per_sec: f64,
    },
    /// An epoch ends, with its training and validation metrics.
    EpochEnd(&'a EpochMetrics),
    /// A checkpoint was written.
    Checkpoint { path: &'a Path, step: u64 },
    /// The final evaluation is running.
    Evaluating,
    /// The run finished.
    Done(&'a RunSummary),
}

/// Receives [`Event`]s.
pub trait Observer {
    fn event(&mut self, event: Event<'_>);
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn event(&mut self, _: Event<'_>) {}
}
