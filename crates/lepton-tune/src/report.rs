//! The results of a search: `results.json`, `best.toml` (the best trial's spec), `curves.png`
//! (every trial's score per epoch) and a text table.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::runner::Summary;
use crate::trial::{write_json, Status, TrialDir};

/// Write `results.json`, `best.toml` and `curves.png` into the state directory.
pub fn write(summary: &Summary) -> Result<()> {
    let dir = &summary.dir;
    write_json(&dir.join("results.json"), summary)?;
    if let Some(best) = summary.best {
        let from = TrialDir::new(dir, best).spec();
        fs_err::copy(&from, dir.join("best.toml")).map_err(|e| Error::io("copying", &from, e))?;
    }
    let series: Vec<lepton_eval::plots::Series> = summary
        .trials
        .iter()
        .map(|t| lepton_eval::plots::Series {
            name: format!("{}", t.id),
            points: t
                .curve
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(e, v)| (e as f64 + 1.0, *v))
                .collect(),
        })
        .collect();
    let metric = summary
        .trials
        .first()
        .map_or("score", |t| t.metric.as_str());
    let path = dir.join("curves.png");
    lepton_eval::plots::learning_curves(&path, "trials", metric, &series).map_err(|e| Error::Plot {
        path: path.clone(),
        message: e.to_string(),
    })
}

/// The trials as a text table, best first.
pub fn table(summary: &Summary) -> String {
    let mut rows: Vec<_> = summary.trials.iter().collect();
    rows.sort_by(|a, b| {
        b.best()
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.best().unwrap_or(f64::NEG_INFINITY))
    });
    let mut out = String::new();
    let metric = rows.first().map_or("score", |t| t.metric.as_str());
    let _ = writeln!(
        out,
        "{:>5}  {:>9}  {:>6}  {:>12}  params",
        "trial", "status", "epochs", metric
    );
    for t in rows {
        let status = match t.status {
            Status::Completed => "completed",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        };
        let params: Vec<String> = t
            .params
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let best = t.best().map_or("-".into(), |b| format!("{b:.4}"));
        let _ = writeln!(
            out,
            "{:>5}  {status:>9}  {:>6}  {best:>12}  {}",
            t.id,
            t.curve.len(),
            params.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "best trial {} | {} epochs trained of {} for every trial to the end ({:.0} %) | {} trainings started | {:.1} s",
        summary.best.map_or("-".into(), |b| b.to_string()),
        summary.epochs_run,
        summary.epochs_full,
        100.0 * summary.epochs_run as f64 / summary.epochs_full.max(1) as f64,
        summary.launched,
        summary.seconds
    );
    out
}
