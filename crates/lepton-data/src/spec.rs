//! The `[data]` and `[preprocess]` sections of a spec file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which loader reads the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A folder with MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, ...); the `t10k-*`
    /// files are the test set.
    Mnist,
    /// A CSV table with one label column.
    Csv,
    /// A folder with one sub-folder of PNG/JPEG images per class.
    ImageFolder,
    /// CIFAR-10's binary batches (`data_batch_*.bin`, `test_batch.bin`).
    Cifar10,
    /// Plain UTF-8 text (a `.txt` file, or a folder of `.txt` files read in name order) for a
    /// language model: see [`crate::text`].
    Text,
}

/// How text becomes token ids (`data.vocab`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VocabKind {
    /// One id per distinct character of the text, in code-point order (nanoGPT's
    /// `shakespeare_char`).
    #[default]
    Chars,
}

/// Classification or regression; for CSV files it is inferred from the label column when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    Classification,
    Regression,
}

/// What to do with empty cells in a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingPolicy {
    /// Fail, naming the first empty cell.
    Error,
    /// Drop rows with any empty cell.
    DropRows,
    /// Replace with the training split's mean (numeric) or most frequent value (categorical).
    #[default]
    ImputeMean,
}

/// Class balancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Leave the classes as they are.
    #[default]
    None,
    /// Weight each sample by `n / (classes * count(class))` in the loss.
    Reweight,
}

fn default_validation_split() -> f32 {
    0.1
}
fn default_true() -> bool {
    true
}

/// The `[data]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataSpec {
    /// The loader.
    pub format: Format,
    /// File or folder, relative to the spec file.
    pub path: PathBuf,
    /// Fraction of the training data held out (stratified) for validation. Default 0.1.
    #[serde(default = "default_validation_split")]
    pub validation_split: f32,
    /// Fraction held out as the test set when the format has no test files of its own. Default 0.
    #[serde(default)]
    pub test_split: f32,
    /// A separate test file or folder (same format), relative to the spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<PathBuf>,
    /// CSV: name of the label column. Default: the last column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// CSV: index of the label column (negative counts from the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_index: Option<i64>,
    /// CSV: whether the first row is a header. Default true.
    #[serde(default = "default_true")]
    pub header: bool,
    /// CSV: classification or regression. Default: classification when the label is not numeric
    /// or holds at most 20 distinct integers, regression otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// CSV: columns to one-hot encode (non-numeric columns always are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categorical: Vec<String>,
    /// CSV: columns to ignore (ids, free text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// CSV: empty-cell policy. Default impute-mean.
    #[serde(default)]
    pub missing: MissingPolicy,
    /// Class balancing. Default none.
    #[serde(default)]
    pub balance: Balance,
    /// Image folders: resize every image to `[height, width]`. Default: the first image's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[usize; 2]>,
    /// Image folders: 1 (grey) or 3 (RGB). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Use at most this many training samples (stratified), for quick runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Text: tokens per training window (the model's input length `T`; each window reads
    /// `T + 1` tokens, inputs and next-token targets). Required for `format = "text"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// Text: the character vocabulary (`"chars"`, the default when no `tokenizer` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<VocabKind>,
    /// Text: a Hugging Face `tokenizer.json` (relative to the spec file) instead of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// CSV: sliding windows over time-ordered rows for forecasting (see [`SequenceSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceSpec>,
    /// CSV: classify the text of this column (the label column as usual); the text becomes
    /// `max-len` token ids through `vocab` / `tokenizer` (see [`crate::text_classification`]
    /// for the padding rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    /// CSV with `text-column`: tokens per text (longer texts are truncated, shorter ones padded
    /// on the left). Required with `text-column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
}

fn one() -> usize {
    1
}

/// `data.sequence`: a time series in a CSV file, one row per time step, rows in time order.
///
/// Sample `i` is the window of rows `i .. i + window` of `columns` (`[window, columns]`
/// features); its target is `target` at row `i + window - 1 + horizon` (one value, `horizon`
/// steps after the window's last row). The split is by time: the first part of the windows
/// trains, the next validates, the last tests (`validation-split`, `test-split`), never shuffled
/// across the boundary, and no window straddles two parts. Columns and target are standardised
/// with the training rows' mean and std (`preprocess.normalize`, `normalize-target`); metrics are
/// reported in the target's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SequenceSpec {
    /// The feature columns, in order (at least one; they may include the target).
    pub columns: Vec<String>,
    /// Rows per sample (at least 1).
    pub window: usize,
    /// How many rows after the window's last row the target is read. Default 1 (the next row).
    #[serde(default = "one")]
    pub horizon: usize,
    /// The column to forecast.
    pub target: String,
}

/// The `[preprocess]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PreprocessSpec {
    /// Images: per-channel mean/std normalisation of pixels in [0, 1]; tables: standardise each
    /// numeric column. Statistics come from the training split only. Default true.
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// Regression: standardise the target too (predictions are mapped back). Default true.
    #[serde(default = "default_true")]
    pub normalize_target: bool,
    /// Image augmentation during training. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentSpec>,
}

impl Default for PreprocessSpec {
    fn default() -> Self {
        Self {
            normalize: true,
            normalize_target: true,
            augment: None,
        }
    }
}

/// Seeded image augmentation, applied on the batcher thread to training batches only.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AugmentSpec {
    /// Pad by this many pixels, then crop back to the original size at a random offset. Default 0.
    #[serde(default)]
    pub random_crop_padding: usize,
    /// Random rotation in `[-d, d]` degrees. Default 0.
    #[serde(default)]
    pub rotate_degrees: f32,
    /// Random shift up to this fraction of the size, per axis. Default 0.
    #[serde(default)]
    pub shift: f32,
    /// Random scale in `[1 - s, 1 + s]`. Default 0.
    #[serde(default)]
    pub scale: f32,
    /// Random horizontal flip (not for digits!). Default false.
    #[serde(default)]
    pub horizontal_flip: bool,
}

impl DataSpec {
    /// Cross-field checks, with errors that name the field.
    pub fn validate(&self) -> crate::Result<()> {
        let frac = |field: &'static str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(crate::Error::Spec {
                    field,
                    message: format!("must be in [0, 1), got {v}"),
                })
            }
        };
        frac("data.validation-split", self.validation_split)?;
        frac("data.test-split", self.test_split)?;
        if self.validation_split + self.test_split >= 1.0 {
            return Err(crate::Error::Spec {
                field: "data.validation-split",
                message: "validation-split + test-split must be below 1".into(),
            });
        }
        if self.label.is_some() && self.label_index.is_some() {
            return Err(crate::Error::Spec {
                field: "data.label",
                message: "give either label or label-index, not both".into(),
            });
        }
        if let Some(c) = self.channels {
            if c != 1 && c != 3 {
                return Err(crate::Error::Spec {
                    field: "data.channels",
                    message: format!("must be 1 or 3, got {c}"),
                });
            }
        }
        if let Some([h, w]) = self.size {
            let max = crate::budget::MAX_IMAGE_SIDE;
            if !(1..=max).contains(&h) || !(1..=max).contains(&w) {
                return Err(crate::Error::Spec {
                    field: "data.size",
                    message: format!("each side must be in 1..={max} pixels, got [{h}, {w}]"),
                });
            }
        }
        if self.format == Format::Text {
            self.validate_text()?;
        } else if self.block_size.is_some() {
            return Err(crate::Error::Spec {
                field: "data.block-size",
                message: "block-size is for format = \"text\"".into(),
            });
        } else if self.text_column.is_some() {
            self.validate_text_column()?;
        } else if self.vocab.is_some() || self.tokenizer.is_some() || self.max_len.is_some() {
            return Err(crate::Error::Spec {
                field: if self.max_len.is_some() {
                    "data.max-len"
                } else {
                    "data.vocab"
                },
                message: "vocab, tokenizer and max-len are for format = \"text\" or a \
                          text-column"
                    .into(),
            });
        }
        if let Some(seq) = &self.sequence {
            if self.format != Format::Csv {
                return Err(crate::Error::Spec {
                    field: "data.sequence",
                    message: "sliding windows need format = \"csv\"".into(),
                });
            }
            seq.validate()?;
        }
        if self.limit == Some(0) {
            return Err(crate::Error::Spec {
                field: "data.limit",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    fn validate_text_column(&self) -> crate::Result<()> {
        let err = |field, message: String| Err(crate::Error::Spec { field, message });
        if self.format != Format::Csv {
            return err("data.text-column", "needs format = \"csv\"".into());
        }
        match self.max_len {
            None => return err("data.max-len", "text-column needs a max-len".into()),
            Some(t) if !(1..=crate::budget::MAX_BLOCK_SIZE).contains(&t) => {
                return err(
                    "data.max-len",
                    format!("must be in 1..={}, got {t}", crate::budget::MAX_BLOCK_SIZE),
                )
            }
            Some(_) => {}
        }
        if self.vocab.is_some() && self.tokenizer.is_some() {
            return err(
                "data.tokenizer",
                "give either vocab = \"chars\" or a tokenizer, not both".into(),
            );
        }
        if self.task == Some(Task::Regression) {
            return err("data.task", "a text classifier needs classes".into());
        }
        let other = [
            ("data.sequence", self.sequence.is_some()),
            ("data.categorical", !self.categorical.is_empty()),
            ("data.limit", self.limit.is_some()),
            ("data.test-path", self.test_path.is_some()),
        ];
        if let Some((field, _)) = other.iter().find(|(_, set)| *set) {
            return err(field, "does not apply with text-column".into());
        }
        Ok(())
    }

    fn validate_text(&self) -> crate::Result<()> {
        let err = |field, message: String| Err(crate::Error::Spec { field, message });
        match self.block_size {
            None => {
                return err(
                    "data.block-size",
                    "format = \"text\" needs a block-size".into(),
                )
            }
            Some(t) if !(1..=crate::budget::MAX_BLOCK_SIZE).contains(&t) => {
                return err(
                    "data.block-size",
                    format!("must be in 1..={}, got {t}", crate::budget::MAX_BLOCK_SIZE),
                )
            }
            Some(_) => {}
        }
        if self.vocab.is_some() && self.tokenizer.is_some() {
            return err(
                "data.tokenizer",
                "give either vocab = \"chars\" or a tokenizer, not both".into(),
            );
        }
        let tabular = [
            ("data.label", self.label.is_some()),
            ("data.label-index", self.label_index.is_some()),
            ("data.test-path", self.test_path.is_some()),
            ("data.limit", self.limit.is_some()),
            ("data.categorical", !self.categorical.is_empty()),
            ("data.drop", !self.drop.is_empty()),
            ("data.balance", self.balance != Balance::None),
            ("data.sequence", self.sequence.is_some()),
            ("data.text-column", self.text_column.is_some()),
            ("data.max-len", self.max_len.is_some()),
        ];
        if let Some((field, _)) = tabular.iter().find(|(_, set)| *set) {
            return err(field, "does not apply to format = \"text\"".into());
        }
        Ok(())
    }
}

impl SequenceSpec {
    fn validate(&self) -> crate::Result<()> {
        let err = |field, message: String| Err(crate::Error::Spec { field, message });
        if self.columns.is_empty() {
            return err("data.sequence.columns", "needs at least one column".into());
        }
        if self.window == 0 {
            return err("data.sequence.window", "must be at least 1".into());
        }
        if self.horizon == 0 {
            return err("data.sequence.horizon", "must be at least 1".into());
        }
        Ok(())
    }
}
