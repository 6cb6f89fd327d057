//! Text classification from a CSV of (text, label): `format = "csv"` with `text-column`.
//!
//! Each text becomes token ids through the [`Vocab`] (characters of all the file's texts plus the
//! padding character NUL `'\0'`, which sorts first and so is id 0; or a `tokenizer.json`, padding
//! with its `[PAD]` / `<pad>` token), then exactly `max-len` ids:
//!
//! - **truncation** keeps the first `max-len` tokens;
//! - **padding** is on the **left**: `max-len - n` pad ids, then the `n` tokens.
//!
//! Left padding puts the end of every text at the last position, so a recurrent layer's final
//! state and `sequence-pool` with `mode = "last"` see the last real token. `sequence-pool` has
//! no mask: `mean` and `max` include the pad positions (their embedding is learned like any other
//! token's). The split is stratified by label and seeded, as for any CSV.
//!
//! # Shapes
//! Sample: `[max-len]` token ids as f32; target: the class index.

use std::collections::BTreeMap;
use std::path::Path;

use crate::budget::{check_declared, MAX_DECODED_BYTES};
use crate::data_report::DataReport;
use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::prepared::Prepared;
use crate::preprocess::Preprocessor;
use crate::spec::{Balance, DataSpec, Task};
use crate::split::stratified_split;
use crate::table::{class_names, load_table};
use crate::vocab::Vocab;

/// `ids` as exactly `max_len` features: the first `max_len` tokens, left-padded with `pad`.
pub fn pad_left(ids: &[u32], max_len: usize, pad: u32) -> Vec<f32> {
    let n = ids.len().min(max_len);
    let mut out = vec![pad as f32; max_len - n];
    out.extend(ids[..n].iter().map(|&id| id as f32));
    out
}

/// Load, tokenize, pad and split a (text, label) CSV.
pub(crate) fn prepare_text_classification(
    spec: &DataSpec,
    text_column: &str,
    base_dir: &Path,
    seed: u64,
) -> Result<Prepared> {
    let max_len = spec.max_len.ok_or_else(|| Error::Spec {
        field: "data.max-len",
        message: "text-column needs a max-len (tokens per text)".into(),
    })?;
    let path = base_dir.join(&spec.path);
    let table = load_table(&path, spec)?;
    let col = table
        .columns
        .iter()
        .position(|c| c == text_column)
        .ok_or_else(|| Error::Spec {
            field: "data.text-column",
            message: format!(
                "{}: no column named '{text_column}' (columns: {}; the label is '{}')",
                path.display(),
                table.columns.join(", "),
                table.label_name
            ),
        })?;
    let texts: Vec<&str> = table
        .rows
        .iter()
        .map(|r| r[col].as_deref().unwrap_or(""))
        .collect();
    let vocab = match &spec.tokenizer {
        Some(t) => Vocab::from_tokenizer_file(&base_dir.join(t))?,
        None => {
            let mut all = String::from("\0");
            for t in &texts {
                all.push_str(t);
            }
            Vocab::chars_of(&all)?
        }
    };
    let pad = vocab.pad_id();
    check_declared(
        &path,
        "the padded token ids (rows x max-len)",
        (texts.len() * max_len * 4) as u64,
        MAX_DECODED_BYTES,
    )
    .map_err(|e| match e {
        Error::Format { message, .. } => Error::Spec {
            field: "data.max-len",
            message: format!("{}: {message}", path.display()),
        },
        other => other,
    })?;
    let names = class_names(&table.labels);
    let mut features = Vec::with_capacity(texts.len() * max_len);
    let mut truncated = 0;
    for (t, line) in texts.iter().zip(&table.lines) {
        let ids = vocab.encode(t).map_err(|e| match e {
            Error::Input(m) => Error::format(&path, format!("line {line}: {m}")),
            other => other,
        })?;
        truncated += usize::from(ids.len() > max_len);
        features.extend(pad_left(&ids, max_len, pad));
    }
    let labels: Vec<u32> = table
        .labels
        .iter()
        .map(|l| names.iter().position(|n| n == l).expect("a known class") as u32)
        .collect();
    let all = Dataset {
        features,
        sample_shape: vec![max_len],
        targets: Targets::Classes {
            labels: labels.clone(),
            class_names: names.clone(),
        },
        weights: None,
    };
    let (pool, test_idx) = if spec.test_split > 0.0 {
        stratified_split(&labels, spec.test_split, seed ^ 0x7e57)
    } else {
        ((0..labels.len()).collect(), Vec::new())
    };
    let sub: Vec<u32> = pool.iter().map(|&i| labels[i]).collect();
    let (keep, held) = stratified_split(&sub, spec.validation_split, seed);
    let train_idx: Vec<usize> = keep.iter().map(|&i| pool[i]).collect();
    let held_idx: Vec<usize> = held.iter().map(|&i| pool[i]).collect();
    if train_idx.is_empty() {
        return Err(Error::format(
            &path,
            "no training samples left after the splits",
        ));
    }
    let mut train = all.select(&train_idx);
    if spec.balance == Balance::Reweight {
        train.reweight_classes();
    }
    let validation = all.select(&held_idx);
    let test = (!test_idx.is_empty()).then(|| all.select(&test_idx));
    let mut class_counts = BTreeMap::new();
    for l in &table.labels {
        *class_counts.entry(l.clone()).or_default() += 1;
    }
    let mut report = DataReport {
        source: path,
        format: "csv".into(),
        task: format!("{:?}", Task::Classification).to_lowercase(),
        class_counts,
        sample_shape: vec![max_len],
        ..DataReport::default()
    };
    report.counts.insert("all".into(), labels.len());
    report.counts.insert("train".into(), train.len());
    report.counts.insert("validation".into(), validation.len());
    report
        .counts
        .insert("test".into(), test.as_ref().map_or(0, Dataset::len));
    report.warnings.push(format!(
        "text column '{text_column}': {} {} tokens, {max_len} per text (left-padded with id \
         {pad}); {truncated} texts truncated",
        vocab.len(),
        vocab.kind()
    ));
    let ignored: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| *c != text_column)
        .map(String::as_str)
        .collect();
    if !ignored.is_empty() {
        report.warnings.push(format!(
            "columns not used by a text classifier: {}",
            ignored.join(", ")
        ));
    }
    Ok(Prepared {
        train,
        validation,
        test,
        preprocessor: Preprocessor::Text {
            vocab,
            max_len,
            class_names: names,
        },
        report,
        lm: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_on_the_left_and_truncation_keeps_the_start() {
        assert_eq!(pad_left(&[5, 6], 4, 0), vec![0., 0., 5., 6.]);
        assert_eq!(pad_left(&[1, 2, 3, 4, 5], 3, 0), vec![1., 2., 3.]);
        assert_eq!(pad_left(&[], 2, 9), vec![9., 9.]);
    }

    fn prep(csv: &str, extra: &str) -> Result<Prepared> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.csv"), csv).unwrap();
        let spec: DataSpec = toml::from_str(&format!(
            "format = \"csv\"\npath = \"t.csv\"\nlabel = \"label\"\nvalidation-split = 0.25\n{extra}"
        ))
        .unwrap();
        spec.validate()?;
        prepare_text_classification(&spec, spec.text_column.as_deref().unwrap(), dir.path(), 0)
    }

    #[test]
    fn texts_become_padded_ids_with_nul_as_padding() {
        let csv = "text,label\nab,x\nba,y\nabab,x\nb,y\n";
        let p = prep(csv, "text-column = \"text\"\nmax-len = 3\n").unwrap();
        let Preprocessor::Text {
            vocab,
            max_len,
            class_names,
        } = &p.preprocessor
        else {
            panic!()
        };
        assert_eq!((vocab.len(), *max_len), (3, 3), "NUL, a, b");
        assert_eq!(vocab.pad_id(), 0);
        assert_eq!(class_names, &["x", "y"]);
        let mut all: Vec<Vec<f32>> = (0..p.train.len())
            .map(|i| p.train.sample(i).to_vec())
            .chain((0..p.validation.len()).map(|i| p.validation.sample(i).to_vec()))
            .collect();
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(
            all,
            [[0., 0., 2.], [0., 1., 2.], [0., 2., 1.], [1., 2., 1.]]
        );
    }

    /// 20,000 texts of 65,536 ids would take 5.2 GB: refused before allocating.
    #[test]
    fn padded_ids_over_the_memory_budget_are_refused_before_allocation() {
        let csv = format!("text,label\n{}", "ab,x\nba,y\n".repeat(10_000));
        let e = prep(&csv, "text-column = \"text\"\nmax-len = 65536\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.max-len") && e.contains("byte limit"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_text_column_and_max_len_are_named() {
        let csv = "text,label\nab,x\nba,y\n";
        let e = prep(csv, "text-column = \"review\"\nmax-len = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.text-column") && e.contains("'review'"),
            "{e}"
        );
        let e = prep(csv, "text-column = \"text\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.max-len"), "{e}");
    }
}
