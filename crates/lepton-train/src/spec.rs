//! The top-level spec file: one TOML document describing a whole run.
//!
//! ```toml
//! name = "mnist-cnn"   # default: the file stem
//! seed = 42            # default 0
//! [data]               # lepton_data::DataSpec (paths relative to this file)
//! [preprocess]         # lepton_data::PreprocessSpec, optional
//! [model]              # lepton_nn::ModelSpec
//! [loss]               # lepton_nn::LossSpec, default: cross-entropy (classification) / mse (regression)
//! [optimizer]          # OptimizerSpec, default adam lr 1e-3
//! [schedule]           # ScheduleSpec, default constant
//! [train]              # TrainSpec
//! [eval]               # EvalSpec
//! ```
//!
//! [`Spec::from_file`] parses with `deny_unknown_fields` everywhere (a typo'd key or a wrong type is
//! an error with the file, line, column and key), then validates ranges and, when the input shape
//! is known without loading data, the model's shapes; errors name the key and its line.

use std::path::{Path, PathBuf};

use lepton_data::{DataSpec, Format, PreprocessSpec};
use lepton_nn::{LossSpec, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::early_stopping::{EarlyStoppingSpec, Mode};
use crate::error::{Error, Result};
use crate::limits::{check_activations, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_STEPS};
use crate::optim::OptimizerSpec;
use crate::schedule::ScheduleSpec;

/// The metric that selects the best model and drives early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    ValLoss,
    /// Validation accuracy (higher is better; classification only).
    ValAccuracy,
}

impl Monitor {
    pub fn mode(self) -> Mode {
        match self {
            Monitor::ValLoss => Mode::Min,
            Monitor::ValAccuracy => Mode::Max,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val-loss",
            Monitor::ValAccuracy => "val-accuracy",
        }
    }
}

fn default_epochs() -> u64 {
    10
}
fn default_batch_size() -> usize {
    64
}
fn default_log_every() -> u64 {
    50
}
fn default_checkpoint_every() -> u64 {
    200
}
fn default_eval_batch_size() -> usize {
    1000
}
fn default_steps() -> u64 {
    2000
}
fn default_eval_interval() -> u64 {
    250
}
fn default_eval_windows() -> usize {
    200
}

/// The `[train]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrainSpec {
    /// Passes over the training data. Default 10.
    #[serde(default = "default_epochs")]
    pub epochs: u64,
    /// Samples per optimizer step. Default 64.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Drop the last incomplete batch of each epoch. Default false.
    #[serde(default)]
    pub drop_last: bool,
    /// Clip gradients to this global L2 norm (`clip_grad_norm_`). Default: no clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    /// Best-model selection and early stopping metric. Default: `val-accuracy` for
    /// classification, `val-loss` for regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    /// Early stopping; absent = train all epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingSpec>,
    /// Write a step line to `metrics.jsonl` (and report progress) every this many steps. Default 50.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Checkpoint every this many steps, besides each epoch end. Default 200.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Batch size for validation and evaluation (no gradients). Default 1000.
    #[serde(default = "default_eval_batch_size")]
    pub eval_batch_size: usize,
    /// Text (`data.format = "text"`): optimizer steps, each on `batch-size` random windows
    /// (`epochs` is not used: a language model counts steps, as nanoGPT). Default 2000.
    #[serde(default = "default_steps")]
    pub steps: u64,
    /// Text: validate (and checkpoint, select the best model, check early stopping) every this
    /// many steps; each such interval is one entry of the history. Default 250.
    #[serde(default = "default_eval_interval")]
    pub eval_interval: u64,
    /// Text: validation windows per evaluation (fixed, evenly spaced non-overlapping windows of
    /// the validation part, so losses are comparable across runs). The final report uses every
    /// window. Default 200.
    #[serde(default = "default_eval_windows")]
    pub eval_windows: usize,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            drop_last: false,
            clip_grad_norm: None,
            monitor: None,
            early_stopping: None,
            log_every: default_log_every(),
            checkpoint_every: default_checkpoint_every(),
            eval_batch_size: default_eval_batch_size(),
            steps: default_steps(),
            eval_interval: default_eval_interval(),
            eval_windows: default_eval_windows(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// The `[eval]` section: the final report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EvalSpec {
    /// Write learning-curve and confusion-matrix PNGs. Default true.
    #[serde(default = "default_true")]
    pub plots: bool,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self { plots: true }
    }
}

/// A whole run, as read from a spec file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Spec {
    /// Run name. Default: the spec file's stem.
    #[serde(default)]
    pub name: String,
    /// Seeds initialisation, splits, shuffling, augmentation and dropout. Default 0.
    #[serde(default)]
    pub seed: u64,
    pub data: DataSpec,
    /// Default: normalise, no augmentation.
    #[serde(default)]
    pub preprocess: PreprocessSpec,
    pub model: ModelSpec,
    /// Default: cross-entropy for classification, MSE for regression (resolved when training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossSpec>,
    /// Default: Adam, lr 1e-3.
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    /// Default: constant learning rate.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub train: TrainSpec,
    #[serde(default)]
    pub eval: EvalSpec,
    /// The directory relative paths in `data` are resolved against (the spec file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The TOML text the spec was read from, for locating keys in error messages.
    #[serde(skip)]
    source: Option<String>,
}

impl Spec {
    /// Read, parse and validate a spec file.
    pub fn from_file(path: &Path) -> Result<Spec> {
        let text = fs_err::read_to_string(path).map_err(|e| Error::io("reading spec", path, e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        Spec::from_str_in(&text, &base, &stem).map_err(|e| match e {
            Error::SpecParse { message, .. } => Error::SpecParse {
                path: path.to_path_buf(),
                message,
            },
            Error::Spec { field, message } => Error::SpecParse {
                path: path.to_path_buf(),
                message: format!("{field}: {message}"),
            },
            other => other,
        })
    }

    /// Parse and validate spec text; relative data paths resolve against `base_dir`, and `name`
    /// defaults to `default_name`.
    pub fn from_str_in(text: &str, base_dir: &Path, default_name: &str) -> Result<Spec> {
        let mut spec: Spec = toml::from_str(text).map_err(|e| Error::SpecParse {
            path: PathBuf::new(),
            message: e.to_string().trim_end().to_string(),
        })?;
        spec.base_dir = base_dir.to_path_buf();
        if spec.name.is_empty() {
            spec.name = default_name.to_string();
        }
        spec.source = Some(text.to_string());
        crate::limits::check_model_integers(text).map_err(|e| spec.with_line(e))?;
        spec.validate().map_err(|e| spec.with_line(e))?;
        if let Some(input) = spec.known_input_shape() {
            spec.check_shapes(&input).map_err(|e| spec.with_line(e))?;
        }
        Ok(spec)
    }

    /// The resolved spec as TOML: defaults filled in, data paths absolute, so the file reproduces
    /// the run from any directory.
    pub fn to_toml(&self) -> Result<String> {
        let mut s = self.clone();
        s.data.path = self.resolve(&self.data.path);
        s.data.test_path = self.data.test_path.as_ref().map(|p| self.resolve(p));
        toml::to_string_pretty(&s)
            .map_err(|e| Error::spec("spec", format!("cannot be written as TOML: {e}")))
    }

    /// A path from the spec, resolved against the spec file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let joined = self.base_dir.join(p);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    /// The model's input shape when it is known without loading data: `model.input`, the
    /// fixed shapes of MNIST and CIFAR-10, or `[block-size]` for text.
    pub fn known_input_shape(&self) -> Option<Vec<usize>> {
        if let Some(i) = &self.model.input {
            return Some(i.clone());
        }
        match self.data.format {
            Format::Mnist => Some(vec![1, 28, 28]),
            Format::Cifar10 => Some(vec![3, 32, 32]),
            Format::Text => self.data.block_size.map(|t| vec![t]),
            _ => None,
        }
    }

    /// Whether this spec trains a language model (`data.format = "text"`), counted in steps.
    pub fn is_language_model(&self) -> bool {
        self.data.format == Format::Text
    }

    /// Range checks of every section; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.data.validate().map_err(|e| match e {
            lepton_data::Error::Spec { field, message } => Error::spec(field, message),
            other => Error::Data(other),
        })?;
        self.optimizer.validate()?;
        self.schedule.validate()?;
        let t = &self.train;
        let check = |ok: bool, key: &str, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::spec(format!("train.{key}"), msg))
            }
        };
        check(
            (1..=MAX_EPOCHS).contains(&t.epochs),
            "epochs",
            format!("must be in 1..={MAX_EPOCHS}, got {}", t.epochs),
        )?;
        check(
            (1..=MAX_BATCH_SIZE).contains(&t.batch_size),
            "batch-size",
            format!("must be in 1..={MAX_BATCH_SIZE}, got {}", t.batch_size),
        )?;
        check(
            (1..=MAX_BATCH_SIZE).contains(&t.eval_batch_size),
            "eval-batch-size",
            format!("must be in 1..={MAX_BATCH_SIZE}, got {}", t.eval_batch_size),
        )?;
        check(
            (1..=MAX_STEPS).contains(&t.steps),
            "steps",
            format!("must be in 1..={MAX_STEPS}, got {}", t.steps),
        )?;
        check(
            t.eval_interval >= 1,
            "eval-interval",
            format!("must be at least 1, got {}", t.eval_interval),
        )?;
        check(
            (1..=MAX_BATCH_SIZE).contains(&t.eval_windows),
            "eval-windows",
            format!("must be in 1..={MAX_BATCH_SIZE}, got {}", t.eval_windows),
        )?;
        check(
            t.log_every >= 1,
            "log-every",
            format!("must be at least 1, got {}", t.log_every),
        )?;
        check(
            t.checkpoint_every >= 1,
            "checkpoint-every",
            format!("must be at least 1, got {}", t.checkpoint_every),
        )?;
        if let Some(c) = t.clip_grad_norm {
            check(
                c > 0.0 && c.is_finite(),
                "clip-grad-norm",
                format!("must be > 0, got {c}"),
            )?;
        }
        if let Some(es) = &t.early_stopping {
            check(
                es.patience >= 1,
                "early-stopping.patience",
                format!("must be at least 1, got {}", es.patience),
            )?;
            check(
                es.min_delta >= 0.0 && es.min_delta.is_finite(),
                "early-stopping.min-delta",
                format!("must be >= 0, got {}", es.min_delta),
            )?;
        }
        if self.model.layers.is_empty() {
            return Err(Error::spec("model.layers", "the model has no layers"));
        }
        if self.is_language_model() {
            // `epochs` would be silently ignored: a language model counts steps. Set to anything
            // but its default (in the file or by the CLI's `--epochs`), it is an error. (The
            // resolved spec.toml of a run lists the default, so it cannot be refused by name.)
            if t.epochs != default_epochs() {
                return Err(Error::spec(
                    "train.epochs",
                    "a language model (data.format = \"text\") trains for train.steps steps, \
                     not epochs",
                ));
            }
        }
        Ok(())
    }

    /// Shape inference on `input` (one sample's shape); returns the shape after each layer.
    /// Errors name the layer (`model.layers[i]`) and the shapes; a step whose activations exceed
    /// the memory budget is an error naming `train.batch-size` ([`crate::limits`]).
    pub fn check_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let shapes = self.layer_shapes(input)?;
        check_activations(
            &shapes,
            self.train.batch_size.max(self.train.eval_batch_size / 2),
        )?;
        Ok(shapes)
    }

    fn layer_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        if let Some(declared) = &self.model.input {
            if declared.as_slice() != input {
                return Err(Error::spec(
                    "model.input",
                    format!("is {declared:?} but the data's samples have shape {input:?}"),
                ));
            }
        }
        self.model
            .shapes(input)
            .map_err(|e| match (e.spec_key(), e) {
                // The key (`model.layers[1].out-features`) locates the line in the spec file.
                (
                    Some(key),
                    lepton_nn::Error::Layer { kind, message, .. }
                    | lepton_nn::Error::Size { kind, message, .. },
                ) => Error::spec(key, format!("({kind}) {message}")),
                (_, other) => Error::spec("model", other.to_string()),
            })
    }

    /// A data error; one that names a spec field (`data.block-size`, `data.sequence.columns`)
    /// becomes a spec error with the field's line.
    pub(crate) fn data_error(&self, e: lepton_data::Error) -> Error {
        match e {
            lepton_data::Error::Spec { field, message } => {
                self.with_line(Error::spec(field, message))
            }
            other => Error::Data(other),
        }
    }

    /// Add the line of the key named in a validation error, when it can be found in the source.
    pub(crate) fn with_line(&self, e: Error) -> Error {
        match (e, &self.source) {
            (Error::Spec { field, message }, Some(src)) => {
                // Nested layers (`model.layers[0].layers[1]`) are located by their top-level block.
                let line =
                    locate(src, &field).or_else(|| layer_key(&field).and_then(|k| locate(src, &k)));
                match line {
                    Some(line) => Error::spec(format!("{field} (line {line})"), message),
                    None => Error::spec(field, message),
                }
            }
            (e, _) => e,
        }
    }
}

/// `model.layers[3]` from a message that mentions it.
fn layer_key(message: &str) -> Option<String> {
    let at = message.find("model.layers[")?;
    let rest = &message[at..];
    let end = rest.find(']')?;
    Some(rest[..=end].to_string())
}

/// The 1-based line of a dotted key (`optimizer.lr`, `model.layers[2]`, `train.early-stopping.patience`)
/// in TOML text, by a scan of table headers and keys. `None` when the key is implicit (a default).
pub fn locate(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (t.to_string(), l.to_string()),
        None => (String::new(), key.to_string()),
    };
    // `model.layers[2]` is the third `[[model.layers]]` header.
    if let Some((arr, idx)) = leaf.strip_suffix(']').and_then(|l| l.split_once('[')) {
        let header = format!(
            "[[{}]]",
            if table.is_empty() {
                arr.to_string()
            } else {
                format!("{table}.{arr}")
            }
        );
        let idx: usize = idx.parse().ok()?;
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim().replace(' ', "") == header)
            .nth(idx)
            .map(|(i, _)| i + 1);
    }
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            current = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        let Some((k, _)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        let full = if current.is_empty() {
            k.to_string()
        } else {
            format!("{current}.{k}")
        };
        if full == key || (current == table && k == leaf) {
            return Some(i + 1);
        }
    }
    // The key may be absent (default) but its table present.
    text.lines()
        .position(|l| l.trim() == format!("[{table}]"))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_keys_and_layers() {
        let text = "name = \"x\"\n[optimizer]\nkind = \"sgd\"\nlr = -1\n[[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"linear\"\n[train.early-stopping]\npatience = 0\n";
        assert_eq!(locate(text, "optimizer.lr"), Some(4));
        assert_eq!(locate(text, "model.layers[1]"), Some(7));
        assert_eq!(locate(text, "train.early-stopping.patience"), Some(10));
        assert_eq!(locate(text, "optimizer.momentum"), Some(2));
        assert_eq!(locate(text, "schedule.kind"), None);
    }
}
