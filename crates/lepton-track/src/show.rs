//! `lepton runs show RUN` and the dashboard's run detail: the summary, the last epoch's metrics,
//! the final report and the artifacts.

use serde::Serialize;

use crate::artifacts::{self, Artifacts};
use crate::metrics::Record;
use crate::run::{Run, RunInfo};
use crate::table::{self, Table};

/// Everything the detail views show about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub info: RunInfo,
    /// `spec.toml` converted to JSON.
    pub spec: Option<serde_json::Value>,
    /// `report.json` (confusion matrix, per-class scores, ...).
    pub report_full: Option<serde_json::Value>,
    pub last_epoch: Option<Record>,
    pub artifacts: Artifacts,
}

impl RunDetail {
    pub fn new(run: Run) -> Self {
        let artifacts = artifacts::list(&run.info.path);
        Self {
            spec: run.spec.as_ref().and_then(|s| serde_json::to_value(s).ok()),
            report_full: run.report,
            last_epoch: run.metrics.epochs.last().cloned(),
            artifacts,
            info: run.info,
        }
    }

    /// The human-readable `runs show` text.
    pub fn render(&self) -> String {
        let i = &self.info;
        let mut rows: Vec<(&str, String)> = vec![
            ("name", i.name.clone()),
            ("path", i.path.display().to_string()),
            ("kind", i.kind.clone()),
            ("status", i.status.as_str().into()),
        ];
        let planned = i
            .epochs_planned
            .map_or_else(String::new, |p| format!(" of {p}"));
        rows.push((
            "epochs",
            format!("{}{planned} ({} steps)", i.epochs, i.steps),
        ));
        if let Some(b) = &i.best {
            let best = format!(
                "{} {} (epoch {})",
                table::number(b.value),
                b.metric,
                b.epoch
            );
            rows.push(("best", best));
        }
        rows.push(("train time", table::duration(i.train_seconds)));
        if let Some(n) = i.photon_bytes {
            rows.push(("model.photon", table::bytes(n)));
        }
        if let Some(n) = i.weights_bytes {
            rows.push(("best.safetensors", table::bytes(n)));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out: String = rows
            .iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect();
        if let Some(last) = &self.last_epoch {
            out.push_str(&format!("\nlast epoch ({}):\n", last.epoch));
            let mut t = Table::new(["metric", "value"]);
            for (k, v) in &last.values {
                t.row([k.clone(), table::number(*v)]);
            }
            out.push_str(&t.render());
        }
        if !i.report.is_empty() {
            out.push_str("\nfinal evaluation (report.json):\n");
            let mut t = Table::new(["metric", "value"]);
            for (k, v) in &i.report {
                let value = match (v.as_u64(), v.as_f64(), v.as_str()) {
                    (Some(n), _, _) => n.to_string(),
                    (None, Some(x), _) => table::number(x),
                    (None, None, Some(s)) => s.to_owned(),
                    _ => v.to_string(),
                };
                t.row([k.clone(), value]);
            }
            out.push_str(&t.render());
        }
        let a = &self.artifacts;
        if !a.plots.is_empty() {
            out.push_str(&format!("\nplots: {}\n", a.plots.join(", ")));
        }
        if !a.explanations.is_empty() {
            out.push_str(&format!(
                "explanations: {} files in explain/\n",
                a.explanations.len()
            ));
        }
        if !a.compression.is_empty() {
            let names: Vec<&str> = a.compression.iter().map(|c| c.name.as_str()).collect();
            out.push_str(&format!("compression reports: {}\n", names.join(", ")));
        }
        for w in &i.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}
