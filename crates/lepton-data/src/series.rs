//! Time series from a CSV file (`data.sequence`): sliding windows for forecasting.
//!
//! One row per time step, rows in time order. The rows are first split **by time** into
//! contiguous parts (train, then validation, then test: `validation-split`, `test-split` of the
//! rows), then each part is cut into windows on its own, so no window reads rows of two parts and
//! nothing is shuffled across a boundary.
//!
//! # Shapes
//! Sample `i` of a part is rows `i .. i + window` of the `columns` (`[window, F]` features, `F`
//! the number of columns); its target is the `target` column at row `i + window - 1 + horizon`
//! (one value). A part of `n` rows has `n - window - horizon + 1` windows.
//!
//! # Normalisation
//! With `preprocess.normalize` each column is standardised with the mean and std of the
//! **training rows** only; with `normalize-target` the target too (predictions are mapped back,
//! so metrics are in the target's units). The fitted statistics are stored as a
//! `Preprocessor::Tabular` (one numeric column per feature, regression, the target's mean/std).

use std::path::Path;

use crate::budget::{check_declared, MAX_DECODED_BYTES};
use crate::data_report::DataReport;
use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::prepared::Prepared;
use crate::preprocess::{Column, Preprocessor};
use crate::spec::{DataSpec, PreprocessSpec, SequenceSpec, Task};
use crate::table::load_table;

/// The numeric columns of a time-series CSV, `[rows][F]`, and its target, each checked.
struct Series {
    /// Row-major `[rows, F]`.
    values: Vec<f32>,
    width: usize,
    target: Vec<f32>,
}

fn load_series(path: &Path, spec: &DataSpec, seq: &SequenceSpec) -> Result<Series> {
    let mut tspec = spec.clone();
    tspec.label = Some(seq.target.clone());
    let table = load_table(path, &tspec).map_err(|e| match e {
        Error::Format { message, .. } if message.starts_with("no label column") => Error::Spec {
            field: "data.sequence.target",
            message: format!("{}: {message}", path.display()),
        },
        other => other,
    })?;
    let mut all = table.columns.clone();
    all.push(table.label_name.clone());
    let parse = |r: usize, name: &str, raw: Option<&str>| -> Result<f32> {
        let line = table.lines[r];
        let s = raw.ok_or_else(|| {
            Error::format(
                path,
                format!("line {line}: column '{name}' is empty (time series need every value)"),
            )
        })?;
        match s.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(Error::format(
                path,
                format!("line {line}: column '{name}' holds '{s}', not a finite number"),
            )),
        }
    };
    // Where each column is: `Some(i)` a feature column of the table, `None` the target.
    let mut idx = Vec::with_capacity(seq.columns.len());
    for (k, name) in seq.columns.iter().enumerate() {
        if seq.columns[..k].contains(name) {
            return Err(Error::Spec {
                field: "data.sequence.columns",
                message: format!("names '{name}' twice"),
            });
        }
        if *name == table.label_name {
            idx.push(None);
        } else {
            let i = table
                .columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| Error::Spec {
                    field: "data.sequence.columns",
                    message: format!(
                        "{}: no column named '{name}' (columns: {})",
                        path.display(),
                        all.join(", ")
                    ),
                })?;
            idx.push(Some(i));
        }
    }
    let rows = table.rows.len();
    let width = idx.len();
    let mut values = Vec::with_capacity(rows * width);
    let mut target = Vec::with_capacity(rows);
    for r in 0..rows {
        for (&c, name) in idx.iter().zip(&seq.columns) {
            let raw = match c {
                Some(c) => table.rows[r][c].as_deref(),
                None => Some(table.labels[r].as_str()).filter(|s| !s.is_empty()),
            };
            values.push(parse(r, name, raw)?);
        }
        let raw = Some(table.labels[r].as_str()).filter(|s| !s.is_empty());
        target.push(parse(r, &seq.target, raw)?);
    }
    Ok(Series {
        values,
        width,
        target,
    })
}

fn mean_std(v: impl Iterator<Item = f32> + Clone) -> (f32, f32) {
    let n = v.clone().count().max(1) as f64;
    let mean = v.clone().map(f64::from).sum::<f64>() / n;
    let var = v.map(|x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean as f32, if std > 1e-12 { std as f32 } else { 1.0 })
}

/// `data.sequence`: windows over a time-ordered CSV, split by time, normalised with the
/// training rows' statistics.
pub(crate) fn prepare_series(
    spec: &DataSpec,
    seq: &SequenceSpec,
    pre: &PreprocessSpec,
    base_dir: &Path,
) -> Result<Prepared> {
    let path = base_dir.join(&spec.path);
    let s = load_series(&path, spec, seq)?;
    let rows = s.target.len();
    let n_val = (rows as f64 * spec.validation_split as f64).round() as usize;
    let n_test = (rows as f64 * spec.test_split as f64).round() as usize;
    let n_train = rows.saturating_sub(n_val + n_test);
    let need = seq.window + seq.horizon;
    let parts = [
        ("training", 0, n_train, true),
        (
            "validation",
            n_train,
            n_train + n_val,
            spec.validation_split > 0.0,
        ),
        ("test", n_train + n_val, rows, spec.test_split > 0.0),
    ];
    for (name, a, b, used) in parts {
        if used && b - a < need {
            return Err(Error::Spec {
                field: "data.sequence.window",
                message: format!(
                    "window + horizon = {need} rows do not fit the {name} part of {} ({} of its \
                     {rows} rows): lower window or horizon, or give more rows",
                    path.display(),
                    b - a
                ),
            });
        }
    }
    let f = s.width;
    let stats: Vec<(f32, f32)> = (0..f)
        .map(|c| {
            if pre.normalize {
                mean_std((0..n_train).map(|r| s.values[r * f + c]))
            } else {
                (0.0, 1.0)
            }
        })
        .collect();
    let (target_mean, target_std) = if pre.normalize_target {
        mean_std(s.target[..n_train].iter().copied())
    } else {
        (0.0, 1.0)
    };
    // Windows overlap: the features take `window` times the rows' size. Checked before allocating.
    let windows_total = [
        (0, n_train),
        (n_train, n_train + n_val),
        (n_train + n_val, rows),
    ]
    .iter()
    .map(|&(a, b)| (b - a + 1).saturating_sub(need) as u64)
    .sum::<u64>();
    check_declared(
        &path,
        "the windows' features",
        windows_total * (seq.window * f * 4) as u64,
        MAX_DECODED_BYTES,
    )
    .map_err(|e| match e {
        Error::Format { message, .. } => Error::Spec {
            field: "data.sequence.window",
            message: format!("{}: {message}", path.display()),
        },
        other => other,
    })?;
    let windows = |a: usize, b: usize| -> Dataset {
        let n = (b - a + 1).saturating_sub(need);
        let mut features = Vec::with_capacity(n * seq.window * f);
        let mut values = Vec::with_capacity(n);
        for i in a..a + n {
            for r in i..i + seq.window {
                for (c, (m, sd)) in stats.iter().enumerate() {
                    features.push((s.values[r * f + c] - m) / sd);
                }
            }
            values.push((s.target[i + seq.window - 1 + seq.horizon] - target_mean) / target_std);
        }
        Dataset {
            features,
            sample_shape: vec![seq.window, f],
            targets: Targets::Regression { values },
            weights: None,
        }
    };
    let train = windows(0, n_train);
    let validation = if n_val > 0 {
        windows(n_train, n_train + n_val)
    } else {
        windows(0, 0)
    };
    let test = (n_test > 0).then(|| windows(n_train + n_val, rows));
    let preprocessor = Preprocessor::Tabular {
        columns: seq
            .columns
            .iter()
            .zip(&stats)
            .map(|(name, &(mean, std))| Column::Numeric {
                name: name.clone(),
                mean,
                std,
                fill: mean,
            })
            .collect(),
        task: Task::Regression,
        class_names: Vec::new(),
        target_mean,
        target_std,
    };
    let mut report = DataReport {
        source: path,
        format: "csv".into(),
        task: "regression".into(),
        sample_shape: vec![seq.window, f],
        ..DataReport::default()
    };
    report.counts.insert("all".into(), rows);
    report.counts.insert("train".into(), train.len());
    report.counts.insert("validation".into(), validation.len());
    report
        .counts
        .insert("test".into(), test.as_ref().map_or(0, Dataset::len));
    report.warnings.push(format!(
        "time series: {rows} rows split by time ({n_train} / {n_val} / {n_test}); counts are \
         windows of {} rows, target '{}' {} row(s) ahead",
        seq.window, seq.target, seq.horizon
    ));
    if validation.is_empty() {
        report.warnings.push(
            "the validation part is empty: best-model selection uses the training loss".into(),
        );
    }
    Ok(Prepared {
        train,
        validation,
        test,
        preprocessor,
        report,
        lm: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_spec(csv: &str, seq: &str) -> (tempfile::TempDir, DataSpec) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.csv"), csv).unwrap();
        let spec: DataSpec = toml::from_str(&format!(
            "format = \"csv\"\npath = \"s.csv\"\nvalidation-split = 0.2\nsequence = {seq}\n"
        ))
        .unwrap();
        spec.validate().unwrap();
        (dir, spec)
    }

    fn csv(rows: usize) -> String {
        let mut s = String::from("t,x,y\n");
        for i in 0..rows {
            s += &format!("{i},{},{}\n", i * 10, i * 100);
        }
        s
    }

    fn prep(dir: &Path, spec: &DataSpec, normalize: bool) -> Result<Prepared> {
        let pre = PreprocessSpec {
            normalize,
            normalize_target: normalize,
            augment: None,
        };
        prepare_series(spec, spec.sequence.as_ref().unwrap(), &pre, dir)
    }

    #[test]
    fn windows_and_targets_follow_the_rows_and_the_split_is_by_time() {
        let (dir, spec) = series_spec(
            &csv(40),
            "{ columns = [\"x\", \"y\"], window = 3, horizon = 2, target = \"y\" }",
        );
        let p = prep(dir.path(), &spec, false).unwrap();
        // 32 training rows -> 32 - 3 - 2 + 1 = 28 windows; 8 validation rows -> 4.
        assert_eq!(p.train.sample_shape, vec![3, 2]);
        assert_eq!(p.train.len(), 28);
        assert_eq!(p.validation.len(), 4);
        assert_eq!(p.train.sample(0), &[0., 0., 10., 100., 20., 200.]);
        let Targets::Regression { values } = &p.train.targets else {
            panic!()
        };
        // Window 0 ends at row 2; horizon 2 -> row 4.
        assert_eq!(values[0], 400.0);
        assert_eq!(*values.last().unwrap(), 3100.0);
        // The first validation window starts at row 32 (no window reads training rows).
        assert_eq!(p.validation.sample(0)[..2], [320., 3200.]);
        let Targets::Regression { values } = &p.validation.targets else {
            panic!()
        };
        assert_eq!(values[0], 3600.0);
    }

    #[test]
    fn normalisation_uses_training_rows_only() {
        let (dir, spec) = series_spec(
            &csv(100),
            "{ columns = [\"x\"], window = 4, target = \"y\" }",
        );
        let p = prep(dir.path(), &spec, true).unwrap();
        let Preprocessor::Tabular {
            columns,
            target_mean,
            ..
        } = &p.preprocessor
        else {
            panic!()
        };
        // Training rows 0..80: x mean 395, y mean 3950 (the validation rows would raise them).
        let Column::Numeric { mean, .. } = &columns[0] else {
            panic!()
        };
        assert!((mean - 395.0).abs() < 1e-3, "{mean}");
        assert!((target_mean - 3950.0).abs() < 1e-2);
        assert_eq!(p.validation.len(), 20 - 4);
        assert_eq!(
            p.preprocessor
                .decode_target(p.preprocessor.encode_target(7.0)),
            7.0
        );
    }

    /// 70,000 rows with a 30,000-row window make 40,000 overlapping windows: 4.8 GB of features
    /// (one column) from a 1 MB file, refused before allocating.
    #[test]
    fn windows_over_the_memory_budget_are_refused_before_allocation() {
        let mut csv = String::from("x,y\n");
        for i in 0..70_000 {
            csv += &format!("{i},{i}\n");
        }
        let (dir, mut spec) = series_spec(
            &csv,
            "{ columns = [\"x\"], window = 30000, target = \"y\" }",
        );
        spec.validation_split = 0.0;
        let (dir2, mut spec2) = series_spec(
            &csv,
            "{ columns = [\"x\", \"y\"], window = 30000, target = \"y\" }",
        );
        spec2.validation_split = 0.0;
        // One column: 40,000 windows x 30,000 x 4 bytes = 4.8 GB; two columns twice that.
        let e = prep(dir.path(), &spec, true).unwrap_err().to_string();
        assert!(
            e.contains("data.sequence.window") && e.contains("byte limit"),
            "{e}"
        );
        let e = prep(dir2.path(), &spec2, true).unwrap_err().to_string();
        assert!(e.contains("data.sequence.window"), "{e}");
    }

    #[test]
    fn missing_or_non_numeric_columns_and_short_parts_are_named() {
        let (dir, spec) = series_spec(
            &csv(30),
            "{ columns = [\"x\", \"z\"], window = 3, target = \"y\" }",
        );
        let e = prep(dir.path(), &spec, true).unwrap_err().to_string();
        assert!(
            e.contains("data.sequence.columns") && e.contains("'z'"),
            "{e}"
        );
        let (dir, spec) = series_spec(
            &csv(30),
            "{ columns = [\"x\"], window = 3, target = \"w\" }",
        );
        let e = prep(dir.path(), &spec, true).unwrap_err().to_string();
        assert!(
            e.contains("data.sequence.target") && e.contains("'w'"),
            "{e}"
        );
        let (dir, spec) = series_spec(
            "t,x,y\n0,1,2\n1,abc,3\n2,1,2\n3,1,2\n4,1,2\n",
            "{ columns = [\"x\"], window = 1, target = \"y\" }",
        );
        let e = prep(dir.path(), &spec, true).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("'x'") && e.contains("abc"),
            "{e}"
        );
        let (dir, spec) = series_spec(
            &csv(30),
            "{ columns = [\"x\"], window = 10, target = \"y\" }",
        );
        let e = prep(dir.path(), &spec, true).unwrap_err().to_string();
        assert!(
            e.contains("data.sequence.window") && e.contains("validation part"),
            "{e}"
        );
    }
}
