//! Hyper-parameter search for Lepton: `lepton tune SPEC --space space.toml`.
//!
//! | module | what |
//! |---|---|
//! | [`space`] | the search space: dotted spec keys to log / linear / int / choice ranges |
//! | [`sampler`] | random, grid and TPE (the `tpe` crate) sampling on the unit cube |
//! | [`stopper`] | ASHA and asynchronous Hyperband: stop trials at rungs |
//! | [`trial`] | a trial's files and result |
//! | [`runner`] | [`tune`]: trials as `lepton train` processes, the resumable state directory |
//! | [`report`] | results table, `results.json`, `best.toml`, `curves.png` |
//! | [`error`] | the crate's error |

pub mod error;
pub mod report;
pub mod runner;
pub mod sampler;
pub mod space;
pub mod stopper;
pub mod trial;

pub use error::{Error, Result};
pub use runner::{tune, Summary, TuneConfig};
pub use sampler::SchedulerKind;
pub use space::{Range, Space};
pub use stopper::{Decision, Stopper};
pub use trial::{Status, TrialResult};
