//! Run tracking for Lepton: every `lepton train` run is a directory, and this crate reads them.
//!
//! - [`run`]: one run directory (spec, `metrics.jsonl`, `best.json`, `report.json`, sizes) and
//!   its inferred status; [`metrics`]: the tolerant, tail-able `metrics.jsonl` reader;
//!   [`runs_dir`]: finding runs and resolving run ids without leaving the runs directory;
//!   [`artifacts`]: plots, explanations and compression reports other commands leave in a run.
//! - [`list`], [`show`], [`mod@compare`]: the `lepton runs` tables ([`table`] formats them).
//! - [`tfevents`]: TensorBoard event-file export.
//! - [`server`]: the `lepton ui` dashboard (axum), one self-contained page with its API.

pub mod artifacts;
pub mod compare;
mod error;
pub mod list;
pub mod metrics;
pub mod run;
pub mod runs_dir;
pub mod server;
pub mod show;
pub mod table;
pub mod tfevents;

pub use compare::{compare, Comparison};
pub use error::{Error, Result};
pub use list::{ListQuery, SortKey};
pub use run::{Run, RunInfo, Status};
pub use runs_dir::RunsDir;
pub use show::RunDetail;

/// An error and its causes on one line (`a: b: c`), for warnings that carry on.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
