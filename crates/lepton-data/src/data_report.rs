//! [`DataReport`]: what was loaded and what was done to it (counts, class balance, duplicates,
//! missing cells, pins, warnings), written as `data-report.json` into each run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::idx::PinCheck;

/// What was loaded and what was done to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    pub source: PathBuf,
    pub format: String,
    pub task: String,
    /// Samples per split (`all`, `train`, `validation`, `test`).
    pub counts: BTreeMap<String, usize>,
    /// Samples per class over all loaded data.
    pub class_counts: BTreeMap<String, usize>,
    /// Samples whose content equals an earlier sample's (they are kept).
    pub duplicates: usize,
    /// Empty cells per column, and what was done about them.
    pub missing: BTreeMap<String, usize>,
    pub missing_policy: Option<String>,
    pub rows_dropped: usize,
    pub pins: Vec<PinCheck>,
    pub sample_shape: Vec<usize>,
    pub warnings: Vec<String>,
}

impl DataReport {
    /// A short human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "source: {}\nformat: {}  task: {}  sample shape: {:?}\n",
            self.source.display(),
            self.format,
            self.task,
            self.sample_shape
        );
        for (k, v) in &self.counts {
            s += &format!("  {k:<11} {v:>8}\n");
        }
        if !self.class_counts.is_empty() {
            let total: usize = self.class_counts.values().sum();
            s += "class balance:\n";
            for (k, v) in &self.class_counts {
                s += &format!(
                    "  {k:<20} {v:>8}  {:5.1}%\n",
                    100.0 * *v as f64 / total.max(1) as f64
                );
            }
        }
        s += &format!("duplicates: {}\n", self.duplicates);
        let missing: usize = self.missing.values().sum();
        if missing > 0 {
            s += &format!(
                "missing cells: {missing} ({}; {} rows dropped)\n",
                self.missing_policy.as_deref().unwrap_or("-"),
                self.rows_dropped
            );
            for (k, v) in self.missing.iter().filter(|(_, v)| **v > 0) {
                s += &format!("  {k}: {v}\n");
            }
        }
        for p in &self.pins {
            let status = match p.matches_pin {
                Some(true) => "matches the pin",
                Some(false) => "DIFFERS from the pin",
                None => "no pin",
            };
            s += &format!(
                "sha256 {} {}: {status}\n",
                &p.sha256[..16],
                p.file.display()
            );
        }
        for w in &self.warnings {
            s += &format!("warning: {w}\n");
        }
        s
    }
}
