//! `lepton runs compare RUN...`: the hyper-parameters that differ between the runs' specs, and
//! their best metrics side by side.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::run::Run;
use crate::table::{self, Table};

/// The comparison of several runs.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Run names (ids when names repeat), in the order given.
    pub runs: Vec<String>,
    /// Dotted spec keys (`optimizer.lr`, `model.layers[0].out-features`) whose values differ;
    /// `None` where a run's spec lacks the key.
    pub differences: BTreeMap<String, Vec<Option<String>>>,
    /// Result rows (best metric, final report numbers, time, size), one value per run.
    pub metrics: Vec<(String, Vec<Option<String>>)>,
}

/// Compare `runs`.
pub fn compare(runs: &[Run]) -> Comparison {
    let names: Vec<&str> = runs.iter().map(|r| r.info.name.as_str()).collect();
    let unique = names.iter().collect::<BTreeSet<_>>().len() == names.len();
    let labels = runs
        .iter()
        .map(|r| {
            if unique {
                r.info.name.clone()
            } else {
                r.info.id.clone()
            }
        })
        .collect();

    let flat: Vec<BTreeMap<String, String>> = runs
        .iter()
        .map(|r| {
            let mut out = BTreeMap::new();
            if let Some(spec) = &r.spec {
                flatten("", &toml::Value::Table(spec.clone()), &mut out);
            }
            out
        })
        .collect();
    let keys: BTreeSet<&String> = flat.iter().flat_map(|f| f.keys()).collect();
    let mut differences = BTreeMap::new();
    for key in keys {
        if key == "name" {
            continue;
        }
        let values: Vec<Option<String>> = flat.iter().map(|f| f.get(key).cloned()).collect();
        if values.iter().any(|v| v != &values[0]) {
            differences.insert(key.clone(), values);
        }
    }

    let mut metrics: Vec<(String, Vec<Option<String>>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Run) -> Option<String>| {
        let values: Vec<_> = runs.iter().map(f).collect();
        if values.iter().any(Option::is_some) {
            metrics.push((label.to_owned(), values));
        }
    };
    row("status", &|r| Some(r.info.status.as_str().to_owned()));
    row("best metric", &|r| {
        r.info.best.as_ref().map(|b| b.metric.clone())
    });
    row("best value", &|r| {
        r.info.best.as_ref().map(|b| table::number(b.value))
    });
    row("best epoch", &|r| {
        r.info.best.as_ref().map(|b| b.epoch.to_string())
    });
    row("epochs", &|r| Some(r.info.epochs.to_string()));
    let report_keys: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.info.report.keys().cloned())
        .filter(|k| k != "task" && k != "samples")
        .collect();
    for key in &report_keys {
        row(&format!("final {key}"), &|r| {
            r.info.report.get(key)?.as_f64().map(table::number)
        });
    }
    row("train time", &|r| {
        Some(table::duration(r.info.train_seconds))
    });
    row("photon size", &|r| r.info.photon_bytes.map(table::bytes));
    Comparison {
        runs: labels,
        differences,
        metrics,
    }
}

/// Flatten a TOML value to dotted keys; arrays of tables are indexed (`layers[2].type`), other
/// arrays are one value.
fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

impl Comparison {
    /// Two tables: hyper-parameters that differ, then results.
    pub fn render(&self) -> String {
        let header = || std::iter::once(String::new()).chain(self.runs.iter().cloned());
        let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut out = String::new();
        if self.differences.is_empty() {
            out.push_str("hyper-parameters: identical specs\n");
        } else {
            let mut t = Table::new(header());
            for (k, vs) in &self.differences {
                t.row(std::iter::once(k.clone()).chain(vs.iter().map(cell)));
            }
            out.push_str("hyper-parameters that differ:\n");
            out.push_str(&t.render());
        }
        let mut t = Table::new(header());
        for (k, vs) in &self.metrics {
            t.row(std::iter::once(k.clone()).chain(vs.iter().map(cell)));
        }
        out.push_str("\nresults:\n");
        out.push_str(&t.render());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &std::path::Path, name: &str, lr: f64, layers: &str, accuracy: f64) -> Run {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("spec.toml"),
            format!(
                "name = \"{name}\"\nseed = 0\n[optimizer]\nkind = \"adam\"\nlr = {lr}\n{layers}"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("report.json"),
            format!(r#"{{"accuracy": {accuracy}}}"#),
        )
        .unwrap();
        Run::read(&d, name).unwrap()
    }

    #[test]
    fn only_differing_keys_and_results_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let a = run(
            dir.path(),
            "a",
            0.01,
            "[[model.layers]]\ntype = \"linear\"\nout-features = 32\n",
            0.9,
        );
        let b = run(dir.path(), "b", 0.001, "[[model.layers]]\ntype = \"linear\"\nout-features = 64\n[[model.layers]]\ntype = \"relu\"\n", 0.95);
        let c = compare(&[a, b]);
        assert_eq!(c.runs, ["a", "b"]);
        let keys: Vec<&str> = c.differences.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "model.layers[0].out-features",
                "model.layers[1].type",
                "optimizer.lr"
            ]
        );
        assert_eq!(
            c.differences["model.layers[1].type"],
            [None, Some("relu".into())]
        );
        let acc = c
            .metrics
            .iter()
            .find(|(k, _)| k == "final accuracy")
            .unwrap();
        assert_eq!(acc.1, [Some("0.9000".into()), Some("0.9500".into())]);
        let text = c.render();
        assert!(
            text.contains("optimizer.lr") && !text.contains("seed"),
            "{text}"
        );
    }
}
