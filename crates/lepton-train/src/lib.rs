//! The Lepton trainer: a declarative [`Spec`] in, a run directory out.
//!
//! | module | what |
//! |---|---|
//! | [`spec`] | the top-level TOML spec: parsing with key/line errors, validation, shape checks |
//! | [`optim`] | SGD (momentum, Nesterov), Adam, AdamW with savable state |
//! | [`schedule`] | constant / step / cosine / one-cycle learning rates + linear warm-up |
//! | [`early_stopping`] | patience on a validation metric |
//! | [`checkpoint`] | atomic, checksummed checkpoints |
//! | [`observer`] | progress events for the CLI |
//! | [`trainer`] | the training loop ([`Session`]) |
//! | [`launch`] | [`train`], [`resume`] and their data-parallel forms; the run directory |
//! | [`distributed`] | the data-parallel seams: gradient sync, batch shards, reduced metrics |
//! | [`segments`] | the backward pass in segments of layers, for reductions overlapped with it |
//! | [`evaluate`] | evaluation of a trained model on a dataset |
//! | [`language_model`] | the next-token objective, its checks and perplexity / bits |
//! | [`cross_validate`](mod@cross_validate) | k-fold cross-validation |
//! | [`limits`] | budgets a spec must respect (epochs, batch sizes, model integers, activations) |
//! | [`lossless`] | exact `f64` fields in JSON state |
//! | [`summary`] | per-epoch metrics and the run summary |
//! | [`phases`] | where an epoch's wall time goes (data, steps, logging, checkpoints, validation) |

pub mod checkpoint;
pub mod cross_validate;
pub mod distributed;
pub mod early_stopping;
pub mod error;
pub mod evaluate;
pub mod language_model;
pub mod launch;
pub mod limits;
pub mod lossless;
pub mod observer;
pub mod optim;
mod pending;
pub mod phases;
pub mod run_dir;
pub mod schedule;
pub mod segments;
pub mod spec;
pub mod summary;
pub mod trainer;

pub use checkpoint::{CheckpointPaths, CheckpointState};
pub use cross_validate::cross_validate;
pub use distributed::{Distributed, Single};
pub use early_stopping::{EarlyStopping, EarlyStoppingSpec, Mode};
pub use error::{Error, Result};
pub use evaluate::{evaluate_run, predict, report, Predictions};
pub use launch::{resume, resume_parallel, train, train_parallel};
pub use observer::{Event, NoopObserver, Observer};
pub use optim::{Adam, AdamConfig, Optimizer, OptimizerSpec, Sgd, SgdConfig};
pub use phases::{Phase, PhaseClock, PhaseTimes};
pub use run_dir::RunDir;
pub use schedule::{Schedule, ScheduleKind, ScheduleSpec};
pub use spec::{EvalSpec, Monitor, Spec, TrainSpec};
pub use summary::{EpochMetrics, RunSummary};
pub use trainer::Session;
