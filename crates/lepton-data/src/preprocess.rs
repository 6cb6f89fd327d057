//! The fitted preprocessor: turns raw inputs (images, table rows) into model features. It is fitted
//! on the training split only and stored in model packages, so predictions see exactly the
//! training-time transformation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::images::{decode_image, ImageSet};
use crate::spec::{MissingPolicy, Task};
use crate::table::Table;
use crate::vocab::Vocab;

/// How one table column becomes features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Column {
    /// One feature: `(x - mean) / std`; empty cells become `fill` (the training mean).
    Numeric {
        name: String,
        mean: f32,
        std: f32,
        fill: f32,
    },
    /// One-hot over the training split's values; unknown values give all zeros; empty cells become
    /// the most frequent value.
    Categorical {
        name: String,
        values: Vec<String>,
        fill: String,
    },
}

impl Column {
    pub fn name(&self) -> &str {
        match self {
            Column::Numeric { name, .. } | Column::Categorical { name, .. } => name,
        }
    }
    fn width(&self) -> usize {
        match self {
            Column::Numeric { .. } => 1,
            Column::Categorical { values, .. } => values.len(),
        }
    }
}

/// What a model takes as input, for schemas and documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputSchema {
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
    Tabular {
        columns: Vec<ColumnSchema>,
    },
    /// Text (or token ids `0..vocab-size`), at most `max-len` tokens.
    #[serde(rename_all = "kebab-case")]
    Text {
        vocab_size: usize,
        max_len: usize,
    },
}

/// One input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    /// `None` for numeric columns, the allowed values for categorical ones.
    pub values: Option<Vec<String>>,
}

/// A fitted preprocessor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Preprocessor {
    Image {
        channels: usize,
        height: usize,
        width: usize,
        /// Per-channel mean and std of pixels scaled to [0, 1] (0 and 1 when not normalising).
        mean: Vec<f32>,
        std: Vec<f32>,
        class_names: Vec<String>,
    },
    Tabular {
        columns: Vec<Column>,
        task: Task,
        class_names: Vec<String>,
        /// Regression targets are modelled as `(y - mean) / std`.
        target_mean: f32,
        target_std: f32,
    },
    /// Token sequences: text through `vocab`, at most `max_len` tokens per sample. Token ids
    /// travel as f32 features (exact below 2^24, see [`crate::vocab::MAX_VOCAB`]).
    Text {
        vocab: Vocab,
        /// The longest sequence the model takes (the spec's input length).
        max_len: usize,
        /// Empty for a language model (the targets are the next tokens); a text classifier's
        /// labels otherwise.
        class_names: Vec<String>,
    },
}

fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f32, f32) {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean as f32, if std > 1e-12 { std as f32 } else { 1.0 })
}

impl Preprocessor {
    /// Fit per-channel statistics on training images.
    pub fn fit_images(train: &ImageSet, normalize: bool) -> Self {
        let c = train.channels;
        let plane = train.height * train.width;
        let (mut mean, mut std) = (vec![0.0; c], vec![1.0; c]);
        if normalize && !train.is_empty() {
            for ch in 0..c {
                let vals = train.pixels.chunks_exact(c * plane).flat_map(|img| {
                    img[ch * plane..(ch + 1) * plane]
                        .iter()
                        .map(|&p| p as f64 / 255.0)
                });
                (mean[ch], std[ch]) = mean_std(vals);
            }
        }
        Preprocessor::Image {
            channels: c,
            height: train.height,
            width: train.width,
            mean,
            std,
            class_names: train.class_names.clone(),
        }
    }

    /// Fit column transforms on training rows (`rows` index into `table`).
    pub fn fit_table(
        table: &Table,
        rows: &[usize],
        task: Task,
        class_names: Vec<String>,
        categorical: &[String],
        normalize: bool,
        targets: Option<&[f32]>,
    ) -> Result<Self> {
        let mut columns = Vec::with_capacity(table.columns.len());
        for (c, name) in table.columns.iter().enumerate() {
            let cells = rows.iter().filter_map(|&r| table.rows[r][c].as_deref());
            let numeric =
                !categorical.contains(name) && cells.clone().all(|v| v.parse::<f64>().is_ok());
            if numeric {
                let vals = cells.map(|v| v.parse::<f64>().unwrap_or(0.0));
                let (mean, std) = mean_std(vals.clone());
                let fill = if vals.clone().count() == 0 { 0.0 } else { mean };
                let (mean, std) = if normalize { (mean, std) } else { (0.0, 1.0) };
                columns.push(Column::Numeric {
                    name: name.clone(),
                    mean,
                    std,
                    fill,
                });
            } else {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for v in cells {
                    *counts.entry(v).or_default() += 1;
                }
                let fill = counts
                    .iter()
                    .max_by_key(|(_, &n)| n)
                    .map(|(v, _)| v.to_string())
                    .unwrap_or_default();
                columns.push(Column::Categorical {
                    name: name.clone(),
                    values: counts.keys().map(|s| s.to_string()).collect(),
                    fill,
                });
            }
        }
        let (target_mean, target_std) = match (task, targets) {
            (Task::Regression, Some(t)) if normalize => mean_std(rows.iter().map(|&r| t[r] as f64)),
            _ => (0.0, 1.0),
        };
        Ok(Preprocessor::Tabular {
            columns,
            task,
            class_names,
            target_mean,
            target_std,
        })
    }

    /// Per-sample feature shape.
    pub fn sample_shape(&self) -> Vec<usize> {
        match self {
            Preprocessor::Image {
                channels,
                height,
                width,
                ..
            } => vec![*channels, *height, *width],
            Preprocessor::Tabular { columns, .. } => vec![columns.iter().map(Column::width).sum()],
            Preprocessor::Text { max_len, .. } => vec![*max_len],
        }
    }

    pub fn class_names(&self) -> &[String] {
        match self {
            Preprocessor::Image { class_names, .. }
            | Preprocessor::Tabular { class_names, .. }
            | Preprocessor::Text { class_names, .. } => class_names,
        }
    }

    pub fn task(&self) -> Task {
        match self {
            Preprocessor::Image { .. } | Preprocessor::Text { .. } => Task::Classification,
            Preprocessor::Tabular { task, .. } => *task,
        }
    }

    pub fn input_schema(&self) -> InputSchema {
        match self {
            Preprocessor::Image {
                channels,
                height,
                width,
                ..
            } => InputSchema::Image {
                channels: *channels,
                height: *height,
                width: *width,
            },
            Preprocessor::Tabular { columns, .. } => InputSchema::Tabular {
                columns: columns
                    .iter()
                    .map(|c| ColumnSchema {
                        name: c.name().to_string(),
                        values: match c {
                            Column::Numeric { .. } => None,
                            Column::Categorical { values, .. } => Some(values.clone()),
                        },
                    })
                    .collect(),
            },
            Preprocessor::Text { vocab, max_len, .. } => InputSchema::Text {
                vocab_size: vocab.len(),
                max_len: *max_len,
            },
        }
    }

    /// The vocabulary of a text model.
    pub fn vocab(&self) -> Option<&Vocab> {
        match self {
            Preprocessor::Text { vocab, .. } => Some(vocab),
            _ => None,
        }
    }

    /// Token ids of `text` as features: 1 to `max_len` tokens of the model's vocabulary.
    pub fn text_features(&self, text: &str) -> Result<Vec<f32>> {
        let Preprocessor::Text { vocab, .. } = self else {
            return Err(self.wrong_input("text"));
        };
        let ids = vocab.encode(text)?;
        self.token_features(&ids)
    }

    /// Token ids as features: 1 to `max_len` integers in `0..vocab-size`, each named when wrong.
    pub fn token_features(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let Preprocessor::Text { vocab, max_len, .. } = self else {
            return Err(self.wrong_input("token ids"));
        };
        if ids.is_empty() || ids.len() > *max_len {
            return Err(Error::Input(format!(
                "expected 1 to {max_len} tokens, got {}",
                ids.len()
            )));
        }
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= vocab.len())
        {
            return Err(Error::Input(format!(
                "token id {id} at position {i} is outside the vocabulary (0..{})",
                vocab.len()
            )));
        }
        Ok(ids.iter().map(|&id| id as f32).collect())
    }

    fn wrong_input(&self, given: &str) -> Error {
        let takes = match self {
            Preprocessor::Image { .. } => "images",
            Preprocessor::Tabular { .. } => "table rows",
            Preprocessor::Text { .. } => "text",
        };
        Error::Input(format!("this model takes {takes}, not {given}"))
    }

    /// Map a model output for regression back to target units.
    pub fn decode_target(&self, v: f32) -> f32 {
        match self {
            Preprocessor::Tabular {
                target_mean,
                target_std,
                ..
            } => v * target_std + target_mean,
            Preprocessor::Image { .. } | Preprocessor::Text { .. } => v,
        }
    }

    /// Map a regression target to model units.
    pub fn encode_target(&self, v: f32) -> f32 {
        match self {
            Preprocessor::Tabular {
                target_mean,
                target_std,
                ..
            } => (v - target_mean) / target_std,
            Preprocessor::Image { .. } | Preprocessor::Text { .. } => v,
        }
    }

    /// Normalise `[C, H, W]` pixels (0-255) into features.
    pub fn pixels_to_features(&self, pixels: &[u8], out: &mut Vec<f32>) {
        if let Preprocessor::Image {
            channels,
            height,
            width,
            mean,
            std,
            ..
        } = self
        {
            let plane = height * width;
            for c in 0..*channels {
                let (m, s) = (mean[c], std[c]);
                out.extend(
                    pixels[c * plane..(c + 1) * plane]
                        .iter()
                        .map(|&p| (p as f32 / 255.0 - m) / s),
                );
            }
        }
    }

    /// Features for a decoded image of any size (converted and resized to the trained shape).
    pub fn image_features(&self, img: &image::DynamicImage) -> Result<Vec<f32>> {
        match self {
            Preprocessor::Image {
                channels,
                height,
                width,
                ..
            } => {
                let px = decode_image(img, *channels, *height, *width);
                let mut out = Vec::with_capacity(px.len());
                self.pixels_to_features(&px, &mut out);
                Ok(out)
            }
            Preprocessor::Tabular { .. } | Preprocessor::Text { .. } => {
                Err(self.wrong_input("images"))
            }
        }
    }

    /// Features for raw numbers: pixels 0-255 in `[C, H, W]` order, or numeric table columns in order.
    pub fn raw_features(&self, raw: &[f32]) -> Result<Vec<f32>> {
        match self {
            Preprocessor::Image {
                channels,
                height,
                width,
                mean,
                std,
                ..
            } => {
                let want = channels * height * width;
                if raw.len() != want {
                    return Err(Error::Input(format!(
                        "expected {want} pixel values ({channels}x{height}x{width}), got {}",
                        raw.len()
                    )));
                }
                let plane = height * width;
                Ok(raw
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| (p / 255.0 - mean[i / plane]) / std[i / plane])
                    .collect())
            }
            Preprocessor::Tabular { columns, .. } => {
                if columns
                    .iter()
                    .any(|c| matches!(c, Column::Categorical { .. }))
                {
                    return Err(Error::Input(
                        "this model has categorical columns: send named values".into(),
                    ));
                }
                if raw.len() != columns.len() {
                    return Err(Error::Input(format!(
                        "expected {} values ({}), got {}",
                        columns.len(),
                        self.column_names().join(", "),
                        raw.len()
                    )));
                }
                Ok(columns
                    .iter()
                    .zip(raw)
                    .map(|(c, &v)| match c {
                        Column::Numeric {
                            mean, std, fill, ..
                        } => ((if v.is_nan() { *fill } else { v }) - mean) / std,
                        Column::Categorical { .. } => 0.0,
                    })
                    .collect())
            }
            Preprocessor::Text { .. } => {
                let mut ids = Vec::with_capacity(raw.len());
                for (i, &v) in raw.iter().enumerate() {
                    if !(v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f32) {
                        return Err(Error::Input(format!(
                            "value {v} at position {i} is not a token id (a non-negative integer)"
                        )));
                    }
                    ids.push(v as u32);
                }
                self.token_features(&ids)
            }
        }
    }

    fn column_names(&self) -> Vec<&str> {
        match self {
            Preprocessor::Tabular { columns, .. } => columns.iter().map(Column::name).collect(),
            Preprocessor::Image { .. } | Preprocessor::Text { .. } => Vec::new(),
        }
    }

    /// Features for one table row given as (column name, raw value) pairs. Missing columns are
    /// imputed; unknown columns are an error.
    pub fn row_features(&self, row: &[(&str, &str)]) -> Result<Vec<f32>> {
        let Preprocessor::Tabular { columns, .. } = self else {
            return Err(self.wrong_input("table rows"));
        };
        for (name, _) in row {
            if !columns.iter().any(|c| c.name() == *name) {
                return Err(Error::Input(format!(
                    "unknown column '{name}' (expected: {})",
                    self.column_names().join(", ")
                )));
            }
        }
        let mut out = Vec::with_capacity(self.sample_shape()[0]);
        for col in columns {
            let cell = row
                .iter()
                .find(|(n, _)| *n == col.name())
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty());
            encode_cell(col, cell, &mut out).map_err(Error::Input)?;
        }
        Ok(out)
    }

    /// Features for every row of a table (rows selected by `idx`), applying the missing policy.
    pub(crate) fn table_features(
        &self,
        table: &Table,
        idx: &[usize],
        policy: MissingPolicy,
    ) -> Result<Vec<f32>> {
        let Preprocessor::Tabular { columns, .. } = self else {
            unreachable!("table_features on an image preprocessor")
        };
        let mut out = Vec::with_capacity(idx.len() * self.sample_shape()[0]);
        for &r in idx {
            for (c, col) in columns.iter().enumerate() {
                let cell = table.rows[r][c].as_deref();
                if cell.is_none() && policy == MissingPolicy::Error {
                    return Err(Error::format(
                        &table.path,
                        format!(
                            "line {}: column '{}' is empty (data.missing = \"error\")",
                            table.lines[r],
                            col.name()
                        ),
                    ));
                }
                encode_cell(col, cell, &mut out).map_err(|m| {
                    Error::format(&table.path, format!("line {}: {m}", table.lines[r]))
                })?;
            }
        }
        Ok(out)
    }
}

fn encode_cell(
    col: &Column,
    cell: Option<&str>,
    out: &mut Vec<f32>,
) -> std::result::Result<(), String> {
    match col {
        Column::Numeric {
            name,
            mean,
            std,
            fill,
        } => {
            let v = match cell {
                None => *fill,
                Some(s) => s
                    .parse::<f32>()
                    .map_err(|_| format!("column '{name}': cannot parse '{s}' as a number"))?,
            };
            if !v.is_finite() {
                return Err(format!("column '{name}': value {v} is not finite"));
            }
            out.push((v - mean) / std);
        }
        Column::Categorical { values, fill, .. } => {
            let v = cell.unwrap_or(fill);
            out.extend(values.iter().map(|x| if x == v { 1.0 } else { 0.0 }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::read_table;
    use std::path::Path;

    #[test]
    fn table_fit_standardises_and_one_hot_encodes_from_train_rows_only() {
        let t = read_table(
            "x,c,y\n1,a,0\n3,b,1\n,a,0\n100,z,1\n".as_bytes(),
            Path::new("t.csv"),
            true,
            None,
            None,
            &[],
        )
        .unwrap();
        let p = Preprocessor::fit_table(
            &t,
            &[0, 1, 2],
            Task::Classification,
            vec!["0".into(), "1".into()],
            &[],
            true,
            None,
        )
        .unwrap();
        assert_eq!(p.sample_shape(), vec![3]);
        let f = p
            .table_features(&t, &[0, 1, 2], MissingPolicy::ImputeMean)
            .unwrap();
        // mean 2, std 1 over the two non-empty train values; the empty cell is imputed with the mean.
        assert_eq!(f, vec![-1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(
            p.row_features(&[("x", "4"), ("c", "b")]).unwrap(),
            vec![2.0, 0.0, 1.0]
        );
        assert_eq!(
            p.row_features(&[("x", "2"), ("c", "unseen")]).unwrap(),
            vec![0.0, 0.0, 0.0]
        );
        assert!(p
            .row_features(&[("nope", "1")])
            .unwrap_err()
            .to_string()
            .contains("unknown column 'nope'"));
        assert!(p
            .row_features(&[("x", "abc")])
            .unwrap_err()
            .to_string()
            .contains("cannot parse 'abc'"));
        let err = p
            .table_features(&t, &[2], MissingPolicy::Error)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("'x'"), "{err}");
    }

    #[test]
    fn image_normalisation_uses_channel_statistics() {
        let set = ImageSet {
            channels: 1,
            height: 1,
            width: 2,
            pixels: vec![0, 255, 0, 255],
            labels: vec![0, 1],
            class_names: vec!["a".into(), "b".into()],
            pins: vec![],
        };
        let p = Preprocessor::fit_images(&set, true);
        let Preprocessor::Image { mean, std, .. } = &p else {
            panic!()
        };
        assert!((mean[0] - 0.5).abs() < 1e-6 && (std[0] - 0.5).abs() < 1e-6);
        assert_eq!(p.raw_features(&[0.0, 255.0]).unwrap(), vec![-1.0, 1.0]);
        assert!(p.raw_features(&[0.0]).is_err());
    }
}
