//! Reports: one data set (classification or regression) or a cross-validation, as JSON,
//! Markdown and a terminal table.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classification::ClassificationReport;
use crate::error::{Error, Result};
use crate::language_model::LanguageModelReport;
use crate::regression::RegressionReport;

/// The evaluation of a model on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum Report {
    Classification(ClassificationReport),
    Regression(RegressionReport),
    LanguageModel(LanguageModelReport),
}

impl Report {
    /// The headline metrics by name (`accuracy`, `macro-f1`, `roc-auc`, `log-loss`, or `mse`,
    /// `rmse`, `mae`, `r2`, or `loss`, `perplexity`, `bits-per-token`, `bits-per-char`).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        match self {
            Report::Classification(c) => {
                m.insert("accuracy".into(), c.accuracy);
                m.insert("macro-f1".into(), c.macro_avg.f1);
                m.insert("weighted-f1".into(), c.weighted_avg.f1);
                m.insert("log-loss".into(), c.log_loss);
                if let Some(a) = c.roc_auc {
                    m.insert("roc-auc".into(), a);
                }
                if let Some((k, a)) = c.top_k {
                    m.insert(format!("top-{k}-accuracy"), a);
                }
            }
            Report::Regression(r) => {
                m.insert("mse".into(), r.mse);
                m.insert("rmse".into(), r.rmse);
                m.insert("mae".into(), r.mae);
                m.insert("r2".into(), r.r2);
            }
            Report::LanguageModel(r) => {
                m.insert("loss".into(), r.loss);
                m.insert("perplexity".into(), r.perplexity);
                m.insert("bits-per-token".into(), r.bits_per_token);
                if let Some(b) = r.bits_per_char {
                    m.insert("bits-per-char".into(), b);
                }
            }
        }
        m
    }

    /// A Markdown document: headline metrics, per-class table, confusion matrix.
    pub fn to_markdown(&self, title: &str) -> String {
        let mut s = format!("# {title}\n\n| metric | value |\n|---|---|\n");
        for (k, v) in self.metrics() {
            s += &format!("| {k} | {v:.4} |\n");
        }
        if let Report::LanguageModel(r) = self {
            s += &format!(
                "\n{} tokens in {} windows; loss in nats per token, perplexity = exp(loss), \
                 bits = loss / ln 2.\n",
                r.tokens, r.windows
            );
        }
        if let Report::Classification(c) = self {
            s += &format!("\n{} samples.\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n", c.samples);
            for m in &c.per_class {
                s += &format!(
                    "| {} | {:.4} | {:.4} | {:.4} | {} |\n",
                    m.name, m.precision, m.recall, m.f1, m.support
                );
            }
            s += &format!(
                "| macro avg | {:.4} | {:.4} | {:.4} | {} |\n",
                c.macro_avg.precision, c.macro_avg.recall, c.macro_avg.f1, c.samples
            );
            s += &format!(
                "| weighted avg | {:.4} | {:.4} | {:.4} | {} |\n",
                c.weighted_avg.precision, c.weighted_avg.recall, c.weighted_avg.f1, c.samples
            );
            s += "\nConfusion matrix (rows: true class, columns: predicted class):\n\n| |";
            for m in &c.per_class {
                s += &format!(" {} |", m.name);
            }
            s += "\n|---|";
            s += &"---|".repeat(c.per_class.len());
            s += "\n";
            for (m, row) in c.per_class.iter().zip(&c.confusion) {
                s += &format!("| **{}** |", m.name);
                for v in row {
                    s += &format!(" {v} |");
                }
                s += "\n";
            }
        }
        s
    }

    /// A plain-text table for the terminal.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        for (k, v) in self.metrics() {
            s += &format!("{k:<18} {v:>10.4}\n");
        }
        if let Report::Classification(c) = self {
            s += &format!(
                "\n{:<18} {:>10} {:>10} {:>10} {:>8}\n",
                "class", "precision", "recall", "f1", "support"
            );
            for m in &c.per_class {
                s += &format!(
                    "{:<18} {:>10.4} {:>10.4} {:>10.4} {:>8}\n",
                    truncate(&m.name, 18),
                    m.precision,
                    m.recall,
                    m.f1,
                    m.support
                );
            }
            s += &format!(
                "{:<18} {:>10.4} {:>10.4} {:>10.4} {:>8}\n",
                "macro avg", c.macro_avg.precision, c.macro_avg.recall, c.macro_avg.f1, c.samples
            );
            s += &format!(
                "{:<18} {:>10.4} {:>10.4} {:>10.4} {:>8}\n",
                "weighted avg",
                c.weighted_avg.precision,
                c.weighted_avg.recall,
                c.weighted_avg.f1,
                c.samples
            );
            if c.per_class.len() <= 20 {
                s += "\nconfusion matrix (rows: true, columns: predicted)\n";
                for row in &c.confusion {
                    s += &row.iter().map(|v| format!("{v:>6}")).collect::<String>();
                    s += "\n";
                }
            }
        }
        s
    }

    /// Write `report.json` and `report.md` into `dir`, each atomically.
    pub fn write(&self, dir: &Path, title: &str) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Input(e.to_string()))?;
        write_atomic(&dir.join("report.json"), json.as_bytes())?;
        write_atomic(&dir.join("report.md"), self.to_markdown(title).as_bytes())
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Write a file through a temporary file in the same folder, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("report")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// k-fold cross-validation: per-fold headline metrics and their mean and sample standard
/// deviation (ddof = 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidationReport {
    pub folds: Vec<BTreeMap<String, f64>>,
    pub mean: BTreeMap<String, f64>,
    pub std: BTreeMap<String, f64>,
}

impl CrossValidationReport {
    pub fn new(folds: Vec<BTreeMap<String, f64>>) -> Self {
        let mut mean = BTreeMap::new();
        let mut std = BTreeMap::new();
        if let Some(first) = folds.first() {
            for key in first.keys() {
                let vals: Vec<f64> = folds.iter().filter_map(|f| f.get(key).copied()).collect();
                let n = vals.len() as f64;
                let m = vals.iter().sum::<f64>() / n;
                let var = if vals.len() > 1 {
                    vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)
                } else {
                    0.0
                };
                mean.insert(key.clone(), m);
                std.insert(key.clone(), var.sqrt());
            }
        }
        Self { folds, mean, std }
    }

    pub fn to_table(&self) -> String {
        let mut s = format!(
            "{:<18} {:>10} {:>10}   ({} folds; std is the sample std)\n",
            "metric",
            "mean",
            "std",
            self.folds.len()
        );
        for (k, m) in &self.mean {
            s += &format!("{k:<18} {m:>10.4} {:>10.4}\n", self.std[k]);
        }
        s
    }

    pub fn to_markdown(&self, title: &str) -> String {
        let mut s = format!(
            "# {title}\n\n{}-fold cross-validation (mean ± sample std).\n\n| metric | mean | std |",
            self.folds.len()
        );
        for i in 0..self.folds.len() {
            s += &format!(" fold {} |", i + 1);
        }
        s += "\n|---|---|---|";
        s += &"---|".repeat(self.folds.len());
        s += "\n";
        for (k, m) in &self.mean {
            s += &format!("| {k} | {m:.4} | {:.4} |", self.std[k]);
            for f in &self.folds {
                s += &format!(" {:.4} |", f.get(k).copied().unwrap_or(f64::NAN));
            }
            s += "\n";
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_validation_mean_and_sample_std() {
        let fold = |a: f64| BTreeMap::from([("accuracy".to_string(), a)]);
        let cv = CrossValidationReport::new(vec![fold(0.9), fold(1.0), fold(0.8)]);
        assert!((cv.mean["accuracy"] - 0.9).abs() < 1e-12);
        assert!((cv.std["accuracy"] - 0.1).abs() < 1e-12);
    }

    #[test]
    fn markdown_and_json_are_written() {
        let r = Report::Regression(crate::regression(&[1.0, 2.0], &[1.0, 2.5]).unwrap());
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path(), "test").unwrap();
        let back: Report =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(back, r);
        assert!(std::fs::read_to_string(dir.path().join("report.md"))
            .unwrap()
            .contains("| r2 |"));
    }

    #[test]
    fn language_model_report_lists_perplexity_and_bits() {
        let r =
            Report::LanguageModel(LanguageModelReport::new(1.5, 640, 10).with_chars_per_token(1.0));
        let m = r.metrics();
        assert!((m["perplexity"] - 1.5f64.exp()).abs() < 1e-12);
        assert!((m["bits-per-char"] - 1.5 / std::f64::consts::LN_2).abs() < 1e-12);
        let md = r.to_markdown("lm");
        assert!(
            md.contains("| perplexity |") && md.contains("640 tokens"),
            "{md}"
        );
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
