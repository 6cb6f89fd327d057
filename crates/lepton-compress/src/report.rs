//! [`Report`]: what a compression did, as JSON and Markdown.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::net::Speed;

/// One model's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// Bytes of the tensors (safetensors blob).
    pub size_bytes: usize,
    pub parameter_count: usize,
    /// Fraction of conv/linear weights that are zero.
    pub sparsity: f64,
    /// Held-out accuracy in percent.
    pub accuracy: f64,
    /// Batch-1 latency (ms, median) and batch-64 throughput (samples/s).
    pub latency_ms: f64,
    pub throughput: f64,
    /// `f32` or `int8`.
    pub precision: String,
}

impl Measure {
    pub(crate) fn new(net: &crate::Net, accuracy: f64, speed: Speed) -> Result<Self> {
        Ok(Self {
            size_bytes: net.size_bytes()?,
            parameter_count: net.parameter_count(),
            sparsity: net.sparsity()?,
            accuracy,
            latency_ms: speed.latency_ms,
            throughput: speed.throughput,
            precision: if net.is_int8() { "int8" } else { "f32" }.into(),
        })
    }
}

/// The gate's decision after one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// `fold-batch-norm`, `prune`, `finetune`, `quantize`.
    pub step: String,
    /// What the step did (channels removed, layers quantized, ...).
    pub detail: String,
    /// Held-out accuracy after the step.
    pub accuracy: f64,
    /// Points lost against the original model.
    pub drop: f64,
    /// `accepted` or `refused` (the drop is above `max-drop`).
    pub decision: String,
}

/// A compression's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub config: crate::CompressConfig,
    /// Held-out samples the gate evaluated on.
    pub held_out_samples: usize,
    pub before: Measure,
    pub after: Measure,
    pub steps: Vec<StepReport>,
    /// Whether the gate accepted every step.
    pub accepted: bool,
    /// Whether the package was written (accepted, or refused with `force`).
    pub written: bool,
    /// Why the gate refused, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl Report {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let (b, a) = (&self.before, &self.after);
        let mut s = format!("# Compression of {}\n\n", self.name);
        s += &match (&self.refusal, self.written) {
            (None, _) => "Accepted by the gate.\n\n".to_string(),
            (Some(r), true) => {
                format!("**Refused by the gate, written anyway (`force`)**: {r}\n\n")
            }
            (Some(r), false) => format!("**Refused by the gate, nothing written**: {r}\n\n"),
        };
        s += "| | before | after | ratio |\n|---|---|---|---|\n";
        let row = |name: &str, x: f64, y: f64, digits: usize| {
            format!(
                "| {name} | {x:.digits$} | {y:.digits$} | {:.3}x |\n",
                if x != 0.0 { y / x } else { 0.0 }
            )
        };
        s += &row("size (bytes)", b.size_bytes as f64, a.size_bytes as f64, 0);
        s += &row(
            "parameters",
            b.parameter_count as f64,
            a.parameter_count as f64,
            0,
        );
        s += &row("sparsity", b.sparsity, a.sparsity, 3);
        s += &row(
            &format!("accuracy (%, {} held-out samples)", self.held_out_samples),
            b.accuracy,
            a.accuracy,
            2,
        );
        s += &row("latency, batch 1 (ms)", b.latency_ms, a.latency_ms, 3);
        s += &row(
            "throughput, batch 64 (samples/s)",
            b.throughput,
            a.throughput,
            0,
        );
        s += &format!("| precision | {} | {} | |\n\n", b.precision, a.precision);
        s += &format!(
            "Gate: at most {} points of accuracy lost.\n\n",
            self.config.max_drop
        );
        s += "| step | what | accuracy | drop | decision |\n|---|---|---|---|---|\n";
        for st in &self.steps {
            s += &format!(
                "| {} | {} | {:.2} | {:.2} | {} |\n",
                st.step, st.detail, st.accuracy, st.drop, st.decision
            );
        }
        s
    }

    /// Write `<dir>/<stem>.json` and `<dir>/<stem>.md`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        fs_err::create_dir_all(dir).map_err(io(dir))?;
        let json = dir.join(format!("{stem}.json"));
        let md = dir.join(format!("{stem}.md"));
        let text = serde_json::to_string_pretty(self).map_err(Error::Json)?;
        fs_err::write(&json, text + "\n").map_err(io(&json))?;
        fs_err::write(&md, self.to_markdown()).map_err(io(&md))?;
        Ok((json, md))
    }
}
