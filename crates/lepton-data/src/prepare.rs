//! From a `[data]` spec to preprocessed train / validation / test datasets, plus a data report.

use std::path::Path;

pub use crate::data_report::DataReport;
use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::images::{load_cifar10, load_image_folder, load_mnist, ImageSet};
pub use crate::prepared::Prepared;
use crate::preprocess::Preprocessor;
use crate::spec::{Balance, DataSpec, Format, MissingPolicy, PreprocessSpec, Task};
use crate::split::{kfold, stratified_split};
use crate::table::{class_names, infer_task, load_table, Table};
use crate::text::load_language_model;

enum Raw {
    Images {
        train: ImageSet,
        test: Option<ImageSet>,
    },
    Table {
        table: Table,
        test: Option<Table>,
        task: Task,
        class_names: Vec<String>,
    },
}

fn load_raw(spec: &DataSpec, base_dir: &Path, report: &mut DataReport) -> Result<Raw> {
    spec.validate()?;
    let path = base_dir.join(&spec.path);
    let test_path = spec.test_path.as_ref().map(|p| base_dir.join(p));
    report.source = path.clone();
    report.format = format!("{:?}", spec.format).to_lowercase();
    if spec.text_column.is_some() {
        return Err(Error::Spec {
            field: "data.text-column",
            message: "text classification data is read for training only (no cross-validation, \
                      inspection or evaluation of text columns yet)"
                .into(),
        });
    }
    if spec.sequence.is_some() {
        return Err(Error::Spec {
            field: "data.sequence",
            message: "time series are read for training only (k-fold would mix time; no \
                      inspection or evaluation of windowed CSV files yet)"
                .into(),
        });
    }
    let raw = match spec.format {
        Format::Text => {
            return Err(Error::Spec {
                field: "data.format",
                message: "text is read for language-model training only (no cross-validation, \
                          inspection or evaluation of text files yet)"
                    .into(),
            })
        }
        Format::Mnist => {
            let (train, test) = load_mnist(&path)?;
            let test = match test_path {
                Some(p) => Some(load_mnist(&p)?.0),
                None => test,
            };
            Raw::Images { train, test }
        }
        Format::Cifar10 => {
            let (train, test) = load_cifar10(&path)?;
            let test = match test_path {
                Some(p) => Some(load_cifar10(&p)?.0),
                None => test,
            };
            Raw::Images { train, test }
        }
        Format::ImageFolder => {
            let train = load_image_folder(&path, spec.size, spec.channels)?;
            let test = match test_path {
                Some(p) => Some(load_image_folder(
                    &p,
                    Some([train.height, train.width]),
                    Some(train.channels),
                )?),
                None => None,
            };
            if let Some(t) = &test {
                if t.class_names != train.class_names {
                    return Err(Error::format(
                        &path,
                        "the test folder's classes differ from the training folder's",
                    ));
                }
            }
            Raw::Images { train, test }
        }
        Format::Csv => {
            let mut table = load_table(&path, spec)?;
            let mut test = test_path.map(|p| load_table(&p, spec)).transpose()?;
            if let Some(t) = &test {
                if t.columns != table.columns {
                    return Err(Error::format(
                        &t.path,
                        "columns differ from the training file's",
                    ));
                }
            }
            for (c, name) in table.columns.iter().enumerate() {
                report.missing.insert(
                    name.clone(),
                    table.rows.iter().filter(|r| r[c].is_none()).count(),
                );
            }
            report.missing_policy = Some(format!("{:?}", spec.missing).to_lowercase());
            if spec.missing == MissingPolicy::DropRows {
                let before = table.rows.len();
                drop_incomplete(&mut table);
                if let Some(t) = &mut test {
                    drop_incomplete(t);
                }
                report.rows_dropped = before - table.rows.len();
                if table.rows.is_empty() {
                    return Err(Error::format(
                        &path,
                        "every row has an empty cell (data.missing = \"drop-rows\")",
                    ));
                }
            }
            let all_labels: Vec<String> = table
                .labels
                .iter()
                .chain(test.iter().flat_map(|t| t.labels.iter()))
                .cloned()
                .collect();
            let task = spec.task.unwrap_or_else(|| infer_task(&all_labels));
            let names = if task == Task::Classification {
                class_names(&all_labels)
            } else {
                Vec::new()
            };
            Raw::Table {
                table,
                test,
                task,
                class_names: names,
            }
        }
    };
    Ok(raw)
}

fn drop_incomplete(t: &mut Table) {
    let keep: Vec<usize> = (0..t.rows.len())
        .filter(|&i| t.rows[i].iter().all(Option::is_some))
        .collect();
    t.rows = keep.iter().map(|&i| t.rows[i].clone()).collect();
    t.labels = keep.iter().map(|&i| t.labels[i].clone()).collect();
    t.lines = keep.iter().map(|&i| t.lines[i]).collect();
}

fn count_duplicates<T: std::hash::Hash>(items: impl Iterator<Item = T>) -> usize {
    use std::hash::{BuildHasher, RandomState};
    let hasher = RandomState::new();
    let mut seen = std::collections::HashSet::new();
    items.filter(|it| !seen.insert(hasher.hash_one(it))).count()
}

impl Raw {
    fn strata(&self) -> Vec<u32> {
        match self {
            Raw::Images { train, .. } => train.labels.clone(),
            Raw::Table {
                table,
                task: Task::Classification,
                class_names,
                ..
            } => table_labels(table, class_names).unwrap_or_default(),
            Raw::Table { table, .. } => vec![0; table.labels.len()],
        }
    }

    fn describe(&self, report: &mut DataReport) {
        match self {
            Raw::Images { train, test } => {
                report.task = "classification".into();
                report.sample_shape = vec![train.channels, train.height, train.width];
                report.pins.extend(train.pins.iter().cloned());
                let mut all = train.labels.clone();
                if let Some(t) = test {
                    report.pins.extend(t.pins.iter().cloned());
                    all.extend(&t.labels);
                }
                for l in all {
                    *report
                        .class_counts
                        .entry(
                            train
                                .class_names
                                .get(l as usize)
                                .cloned()
                                .unwrap_or_else(|| l.to_string()),
                        )
                        .or_default() += 1;
                }
                let n = train.sample_len().max(1);
                report.duplicates = count_duplicates(train.pixels.chunks(n));
                report.counts.insert(
                    "all".into(),
                    train.len() + test.as_ref().map_or(0, |t| t.len()),
                );
            }
            Raw::Table {
                table, test, task, ..
            } => {
                report.task = format!("{task:?}").to_lowercase();
                if *task == Task::Classification {
                    for l in table
                        .labels
                        .iter()
                        .chain(test.iter().flat_map(|t| t.labels.iter()))
                    {
                        *report.class_counts.entry(l.clone()).or_default() += 1;
                    }
                }
                report.duplicates = count_duplicates(table.rows.iter().zip(&table.labels));
                report.counts.insert(
                    "all".into(),
                    table.rows.len() + test.as_ref().map_or(0, |t| t.rows.len()),
                );
            }
        }
    }
}

fn table_labels(t: &Table, names: &[String]) -> Result<Vec<u32>> {
    t.labels
        .iter()
        .zip(&t.lines)
        .map(|(l, line)| {
            names
                .iter()
                .position(|n| n == l)
                .map(|p| p as u32)
                .ok_or_else(|| Error::format(&t.path, format!("line {line}: unknown class '{l}'")))
        })
        .collect()
}

fn table_values(t: &Table) -> Result<Vec<f32>> {
    t.labels
        .iter()
        .zip(&t.lines)
        .map(|(l, line)| {
            l.parse::<f32>().map_err(|_| {
                Error::format(
                    &t.path,
                    format!("line {line}: regression target '{l}' is not a number"),
                )
            })
        })
        .collect()
}

/// Build datasets from `train_idx` / `held_idx` (+ optional test) of the raw data.
fn build(
    raw: &Raw,
    spec: &DataSpec,
    pre: &PreprocessSpec,
    train_idx: &[usize],
    held_idx: &[usize],
    test_idx: Option<&[usize]>,
) -> Result<(Dataset, Dataset, Option<Dataset>, Preprocessor)> {
    match raw {
        Raw::Images { train, test } => {
            let fit_set = select_images(train, train_idx);
            let p = Preprocessor::fit_images(&fit_set, pre.normalize);
            let to_ds = |set: &ImageSet| {
                let mut f = Vec::with_capacity(set.len() * set.sample_len());
                for img in set.pixels.chunks_exact(set.sample_len().max(1)) {
                    p.pixels_to_features(img, &mut f);
                }
                Dataset {
                    features: f,
                    sample_shape: p.sample_shape(),
                    targets: Targets::Classes {
                        labels: set.labels.clone(),
                        class_names: set.class_names.clone(),
                    },
                    weights: None,
                }
            };
            let tr = to_ds(&fit_set);
            let va = to_ds(&select_images(train, held_idx));
            let te = match (test, test_idx) {
                (Some(t), _) => Some(to_ds(t)),
                (None, Some(idx)) => Some(to_ds(&select_images(train, idx))),
                (None, None) => None,
            };
            Ok((tr, va, te, p))
        }
        Raw::Table {
            table,
            test,
            task,
            class_names,
        } => {
            let values = if *task == Task::Regression {
                Some(table_values(table)?)
            } else {
                None
            };
            let p = Preprocessor::fit_table(
                table,
                train_idx,
                *task,
                class_names.clone(),
                &spec.categorical,
                pre.normalize,
                values.as_deref().filter(|_| pre.normalize_target),
            )?;
            let targets = |t: &Table, idx: &[usize]| -> Result<Targets> {
                Ok(match task {
                    Task::Classification => {
                        let l = table_labels(t, class_names)?;
                        Targets::Classes {
                            labels: idx.iter().map(|&i| l[i]).collect(),
                            class_names: class_names.clone(),
                        }
                    }
                    Task::Regression => {
                        let v = table_values(t)?;
                        Targets::Regression {
                            values: idx.iter().map(|&i| p.encode_target(v[i])).collect(),
                        }
                    }
                })
            };
            let to_ds = |t: &Table, idx: &[usize]| -> Result<Dataset> {
                Ok(Dataset {
                    features: p.table_features(t, idx, spec.missing)?,
                    sample_shape: p.sample_shape(),
                    targets: targets(t, idx)?,
                    weights: None,
                })
            };
            let tr = to_ds(table, train_idx)?;
            let va = to_ds(table, held_idx)?;
            let te = match (test, test_idx) {
                (Some(t), _) => Some(to_ds(t, &(0..t.rows.len()).collect::<Vec<_>>())?),
                (None, Some(idx)) => Some(to_ds(table, idx)?),
                (None, None) => None,
            };
            Ok((tr, va, te, p))
        }
    }
}

fn select_images(set: &ImageSet, idx: &[usize]) -> ImageSet {
    let n = set.sample_len();
    let mut pixels = Vec::with_capacity(idx.len() * n);
    for &i in idx {
        pixels.extend_from_slice(&set.pixels[i * n..(i + 1) * n]);
    }
    ImageSet {
        pixels,
        labels: idx.iter().map(|&i| set.labels[i]).collect(),
        pins: Vec::new(),
        ..set.clone_meta()
    }
}

impl ImageSet {
    fn clone_meta(&self) -> ImageSet {
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
            ..Default::default()
        }
    }
}

/// Split off the test part (when the format has no test files) and apply `limit`.
fn base_indices(raw: &Raw, spec: &DataSpec, seed: u64) -> (Vec<usize>, Option<Vec<usize>>) {
    let strata = raw.strata();
    let has_test = match raw {
        Raw::Images { test, .. } => test.is_some(),
        Raw::Table { test, .. } => test.is_some(),
    };
    let (mut pool, test) = if !has_test && spec.test_split > 0.0 {
        let (k, t) = stratified_split(&strata, spec.test_split, seed ^ 0x7e57);
        (k, Some(t))
    } else {
        ((0..strata.len()).collect(), None)
    };
    if let Some(limit) = spec.limit {
        if limit < pool.len() {
            let sub: Vec<u32> = pool.iter().map(|&i| strata[i]).collect();
            let (_, keep) = stratified_split(&sub, limit as f32 / pool.len() as f32, seed ^ 0x1e41);
            pool = keep.iter().map(|&i| pool[i]).collect();
        }
    }
    (pool, test)
}

/// Load, split (stratified, seeded), fit the preprocessor on the training split and transform.
pub fn prepare(
    spec: &DataSpec,
    pre: &PreprocessSpec,
    base_dir: &Path,
    seed: u64,
) -> Result<Prepared> {
    if spec.format == Format::Text {
        return prepare_language_model(spec, base_dir);
    }
    if let Some(seq) = &spec.sequence {
        spec.validate()?;
        return crate::series::prepare_series(spec, seq, pre, base_dir);
    }
    if let Some(col) = &spec.text_column {
        spec.validate()?;
        return crate::text_classification::prepare_text_classification(spec, col, base_dir, seed);
    }
    let mut report = DataReport::default();
    let raw = load_raw(spec, base_dir, &mut report)?;
    raw.describe(&mut report);
    let (pool, test_idx) = base_indices(&raw, spec, seed);
    let strata = raw.strata();
    let sub: Vec<u32> = pool.iter().map(|&i| strata[i]).collect();
    let (keep, held) = stratified_split(&sub, spec.validation_split, seed);
    let train_idx: Vec<usize> = keep.iter().map(|&i| pool[i]).collect();
    let held_idx: Vec<usize> = held.iter().map(|&i| pool[i]).collect();
    if train_idx.is_empty() {
        return Err(Error::format(
            &report.source,
            "no training samples left after the splits",
        ));
    }
    let (mut train, validation, test, preprocessor) =
        build(&raw, spec, pre, &train_idx, &held_idx, test_idx.as_deref())?;
    if spec.balance == Balance::Reweight {
        train.reweight_classes();
    }
    report.counts.insert("train".into(), train.len());
    report.counts.insert("validation".into(), validation.len());
    report
        .counts
        .insert("test".into(), test.as_ref().map_or(0, Dataset::len));
    report.sample_shape = preprocessor.sample_shape();
    if validation.is_empty() {
        report.warnings.push("the validation split is empty: early stopping and best-model selection use the training loss".into());
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

/// `format = "text"`: the token parts, the vocabulary as a `Preprocessor::Text` (no classes: a
/// language model) and a report counting tokens per part.
fn prepare_language_model(spec: &DataSpec, base_dir: &Path) -> Result<Prepared> {
    spec.validate()?;
    let (lm, pins) = load_language_model(spec, base_dir)?;
    let t = lm.block_size;
    let preprocessor = Preprocessor::Text {
        vocab: lm.vocab.clone(),
        max_len: t,
        class_names: Vec::new(),
    };
    let empty = || Dataset {
        features: Vec::new(),
        sample_shape: vec![t],
        targets: Targets::Classes {
            labels: Vec::new(),
            class_names: Vec::new(),
        },
        weights: None,
    };
    let mut report = DataReport {
        source: base_dir.join(&spec.path),
        format: "text".into(),
        task: "language-model".into(),
        pins,
        sample_shape: vec![t],
        ..DataReport::default()
    };
    let (tr, va, te) = (lm.train.len(), lm.validation.len(), lm.test.len());
    report.counts.insert("all".into(), tr + va + te);
    report.counts.insert("train".into(), tr);
    report.counts.insert("validation".into(), va);
    report.counts.insert("test".into(), te);
    report.warnings.push(format!(
        "counts are tokens; vocabulary: {} {} tokens",
        lm.vocab.len(),
        lm.vocab.kind()
    ));
    if va == 0 {
        report.warnings.push(
            "the validation part is empty: best-model selection uses the training loss".into(),
        );
    }
    Ok(Prepared {
        train: empty(),
        validation: empty(),
        test: (te > 0).then(empty),
        preprocessor,
        report,
        lm: Some(lm),
    })
}

/// Stratified k-fold: one `Prepared` per fold, with the preprocessor fitted on that fold's
/// training part and the held-out fold as `validation`.
pub fn prepare_folds(
    spec: &DataSpec,
    pre: &PreprocessSpec,
    base_dir: &Path,
    k: usize,
    seed: u64,
) -> Result<Vec<Prepared>> {
    if k < 2 {
        return Err(Error::Spec {
            field: "folds",
            message: format!("k-fold needs at least 2 folds, got {k}"),
        });
    }
    let mut report = DataReport::default();
    let raw = load_raw(spec, base_dir, &mut report)?;
    raw.describe(&mut report);
    let (pool, _) = base_indices(&raw, spec, seed);
    if pool.len() < k {
        return Err(Error::format(
            &report.source,
            format!("{} samples cannot make {k} folds", pool.len()),
        ));
    }
    let strata = raw.strata();
    let sub: Vec<u32> = pool.iter().map(|&i| strata[i]).collect();
    kfold(&sub, k, seed)
        .into_iter()
        .map(|(tr, held)| {
            let tr: Vec<usize> = tr.iter().map(|&i| pool[i]).collect();
            let held: Vec<usize> = held.iter().map(|&i| pool[i]).collect();
            let (mut train, validation, _, preprocessor) =
                build(&raw, spec, pre, &tr, &held, None)?;
            if spec.balance == Balance::Reweight {
                train.reweight_classes();
            }
            let mut report = report.clone();
            report.counts.insert("train".into(), train.len());
            report.counts.insert("validation".into(), validation.len());
            report.sample_shape = preprocessor.sample_shape();
            Ok(Prepared {
                train,
                validation,
                test: None,
                preprocessor,
                report,
                lm: None,
            })
        })
        .collect()
}

/// The fold assignment `prepare_folds` uses, as indices into the loaded rows (for side-by-side
/// comparisons with other tools on the same folds).
pub fn fold_indices(
    spec: &DataSpec,
    base_dir: &Path,
    k: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    let mut report = DataReport::default();
    let raw = load_raw(spec, base_dir, &mut report)?;
    let (pool, _) = base_indices(&raw, spec, seed);
    let strata = raw.strata();
    let sub: Vec<u32> = pool.iter().map(|&i| strata[i]).collect();
    Ok(kfold(&sub, k, seed)
        .into_iter()
        .map(|(_, held)| held.iter().map(|&i| pool[i]).collect())
        .collect())
}

/// The evaluation data of `spec` transformed with an already fitted preprocessor (no fitting,
/// no splitting): the format's test set when it has one (MNIST `t10k-*`, CIFAR `test_batch.bin`,
/// `test-path`), otherwise every sample. Class names must match the preprocessor's.
pub fn load_for_eval(spec: &DataSpec, base_dir: &Path, pre: &Preprocessor) -> Result<Dataset> {
    let mut report = DataReport::default();
    let raw = load_raw(spec, base_dir, &mut report)?;
    let source = report.source;
    let mismatch = |what: String| Error::format(&source, what);
    match raw {
        Raw::Images { train, test } => {
            let set = test.unwrap_or(train);
            let want = pre.sample_shape();
            if want != [set.channels, set.height, set.width] {
                return Err(mismatch(format!(
                    "images are {}x{}x{}, the model takes {want:?}",
                    set.channels, set.height, set.width
                )));
            }
            if set.class_names != pre.class_names() {
                return Err(mismatch(format!(
                    "classes {:?} differ from the model's {:?}",
                    set.class_names,
                    pre.class_names()
                )));
            }
            let mut f = Vec::with_capacity(set.len() * set.sample_len());
            for img in set.pixels.chunks_exact(set.sample_len().max(1)) {
                pre.pixels_to_features(img, &mut f);
            }
            Ok(Dataset {
                features: f,
                sample_shape: want,
                targets: Targets::Classes {
                    labels: set.labels,
                    class_names: set.class_names,
                },
                weights: None,
            })
        }
        Raw::Table { table, test, .. } => {
            let t = test.unwrap_or(table);
            let idx: Vec<usize> = (0..t.rows.len()).collect();
            let names: Vec<&str> = match pre {
                Preprocessor::Tabular { columns, .. } => columns.iter().map(|c| c.name()).collect(),
                Preprocessor::Image { .. } => {
                    return Err(mismatch("the model takes images, this is a table".into()))
                }
                Preprocessor::Text { .. } => {
                    return Err(mismatch("the model takes text, this is a table".into()))
                }
            };
            if t.columns.iter().map(String::as_str).collect::<Vec<_>>() != names {
                return Err(mismatch(format!(
                    "columns {:?} differ from the model's {names:?}",
                    t.columns
                )));
            }
            let targets = match pre.task() {
                Task::Classification => Targets::Classes {
                    labels: table_labels(&t, pre.class_names())?,
                    class_names: pre.class_names().to_vec(),
                },
                Task::Regression => Targets::Regression {
                    values: table_values(&t)?
                        .into_iter()
                        .map(|v| pre.encode_target(v))
                        .collect(),
                },
            };
            Ok(Dataset {
                features: pre.table_features(&t, &idx, spec.missing)?,
                sample_shape: pre.sample_shape(),
                targets,
                weights: None,
            })
        }
    }
}

/// Detect the format of `path` and describe it: a folder of IDX files, a CSV file, a CIFAR-10
/// batch file or folder, or an image folder.
pub fn inspect(path: &Path) -> Result<DataReport> {
    let spec = spec_for_path(path)?;
    let mut report = DataReport::default();
    let raw = load_raw(&spec, Path::new(""), &mut report)?;
    raw.describe(&mut report);
    if let Raw::Table { table, .. } = &raw {
        report.sample_shape = vec![table.columns.len()];
    }
    Ok(report)
}

/// A default `[data]` spec for a path, with the format detected from it (no validation split).
pub fn spec_for_path(path: &Path) -> Result<DataSpec> {
    let format = detect_format(path)?;
    Ok(DataSpec {
        format,
        path: path.to_path_buf(),
        validation_split: 0.0,
        test_split: 0.0,
        test_path: None,
        label: None,
        label_index: None,
        header: true,
        task: None,
        categorical: Vec::new(),
        drop: Vec::new(),
        missing: MissingPolicy::ImputeMean,
        balance: Balance::None,
        size: None,
        channels: None,
        limit: None,
        block_size: None,
        vocab: None,
        tokenizer: None,
        sequence: None,
        text_column: None,
        max_len: None,
    })
}

fn detect_format(path: &Path) -> Result<Format> {
    if path.exists() && !path.is_dir() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        return if name.ends_with(".csv") || name.ends_with(".tsv") || name.ends_with(".txt") {
            Ok(Format::Csv)
        } else if name.ends_with(".bin") {
            Ok(Format::Cifar10)
        } else {
            Err(Error::format(
                path,
                "unknown data format (expected .csv, a CIFAR-10 .bin, or a folder)",
            ))
        };
    }
    if !path.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    let names: Vec<String> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if names.iter().any(|n| n.contains("idx3-ubyte")) {
        Ok(Format::Mnist)
    } else if names
        .iter()
        .any(|n| n.starts_with("data_batch") && n.ends_with(".bin"))
    {
        Ok(Format::Cifar10)
    } else {
        Ok(Format::ImageFolder)
    }
}
