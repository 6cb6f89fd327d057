//! The `[finetune]` section of a spec (and the options of `lepton finetune`), with the
//! `[optimizer]` and `[schedule]` sections of lepton-train reused as they are.
//!
//! ```toml
//! [finetune]
//! base = "SmolLM2-135M-Instruct.Q4_1.gguf"   # GGUF file or Hugging Face Llama folder
//! data = "shakespeare.txt"                   # .txt: packed text; .jsonl: chat messages
//! lora-r = 8
//! lora-alpha = 16
//! targets = ["q_proj", "v_proj"]
//! steps = 40
//! base-precision = "f32"                    # or "quantized" (QLoRA-style, GGUF blocks)
//!
//! [optimizer]
//! kind = "adamw"
//! lr = 2e-3
//! ```

use std::path::{Path, PathBuf};

use lepton_train::{AdamConfig, OptimizerSpec, ScheduleSpec};
use serde::{Deserialize, Serialize};

use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::weight::BasePrecision;

/// How the data file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// `.jsonl` is chat, anything else plain text. The default.
    #[default]
    Auto,
    /// Plain text, tokenized and packed into windows of `seq-len` tokens.
    Text,
    /// One `{"messages": [{"role", "content"}, ...]}` per line, rendered with the chat template.
    Chat,
}

fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}
fn default_seq_len() -> usize {
    128
}
fn default_batch() -> usize {
    4
}
fn default_val_fraction() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

/// The `[finetune]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FinetuneSpec {
    /// The base model: a GGUF file or a Hugging Face Llama folder. Required.
    pub base: PathBuf,
    /// Training data. Required.
    pub data: PathBuf,
    /// Default auto (by extension).
    #[serde(default)]
    pub format: DataFormat,
    /// Validation data; default: the last `val-fraction` of the windows of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_data: Option<PathBuf>,
    /// Share of the windows held out for validation when there is no `val-data`. Default 0.1.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// At most this many validation windows (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_val_windows: Option<usize>,
    /// LoRA rank. Default 8.
    #[serde(default = "default_r")]
    pub lora_r: usize,
    /// LoRA α (scaling α / r). Default 16.
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    /// Dropout on the adapter input while training. Default 0.
    #[serde(default)]
    pub lora_dropout: f32,
    /// Adapted modules (PEFT's `target_modules`). Default ["q_proj", "v_proj"].
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// Tokens per window. Default 128.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Windows per step. Default 4.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Optimizer steps; exclusive with `epochs`. Default: one epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Shuffle the training windows each epoch (seeded). Default true.
    #[serde(default = "default_true")]
    pub shuffle: bool,
    /// Seeds the adapter initialisation, dropout and shuffling. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Validate every this many steps (and at the end). Default: only at the start and the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,
    /// Write a checkpoint every this many steps (and at the end). Default: only at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    /// Gradient-norm clip (L2 over all adapter gradients). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// `f32` (default: PEFT's numbers on the dequantized base) or `quantized` (the GGUF blocks
    /// on the integer kernels, QLoRA-style: faster, less memory); see [`BasePrecision`].
    #[serde(default)]
    pub base_precision: BasePrecision,
}

/// A spec file: `[finetune]` plus the optional `[optimizer]` (default AdamW, lr 2e-4) and
/// `[schedule]` (default constant) sections of lepton-train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FinetuneFile {
    pub finetune: FinetuneSpec,
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: ScheduleSpec,
}

pub fn default_optimizer() -> OptimizerSpec {
    OptimizerSpec::AdamW(AdamConfig {
        lr: 2e-4,
        ..AdamConfig::default()
    })
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::Config {
        field: field.into(),
        message: message.into(),
    }
}

impl FinetuneSpec {
    /// Defaults for everything but the base and the data.
    pub fn new(base: impl Into<PathBuf>, data: impl Into<PathBuf>) -> Self {
        Self {
            base: base.into(),
            data: data.into(),
            format: DataFormat::Auto,
            val_data: None,
            val_fraction: default_val_fraction(),
            max_val_windows: None,
            lora_r: default_r(),
            lora_alpha: default_alpha(),
            lora_dropout: 0.0,
            targets: default_targets(),
            seq_len: default_seq_len(),
            batch_size: default_batch(),
            steps: None,
            epochs: None,
            shuffle: true,
            seed: 0,
            eval_every: None,
            checkpoint_every: None,
            max_grad_norm: None,
            base_precision: BasePrecision::F32,
        }
    }

    /// Range and cross-field checks; errors name the field (cheap: no file is opened).
    pub fn validate(&self) -> Result<()> {
        if self.lora_r == 0 {
            return Err(bad("lora-r", "the rank must be at least 1 (got 0)"));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(bad(
                "lora-alpha",
                format!("must be > 0 (got {})", self.lora_alpha),
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(bad(
                "lora-dropout",
                format!("must be in [0, 1) (got {})", self.lora_dropout),
            ));
        }
        if self.targets.is_empty() {
            return Err(bad("targets", "name at least one module"));
        }
        for t in &self.targets {
            Decoder::check_target(t)?;
        }
        if self.seq_len < 2 {
            return Err(bad(
                "seq-len",
                format!("must be at least 2 (got {})", self.seq_len),
            ));
        }
        if self.batch_size == 0 {
            return Err(bad("batch-size", "must be at least 1"));
        }
        if self.steps.is_some() && self.epochs.is_some() {
            return Err(bad("steps", "give steps or epochs, not both"));
        }
        if self.steps == Some(0) || self.epochs == Some(0) {
            return Err(bad(
                if self.steps == Some(0) {
                    "steps"
                } else {
                    "epochs"
                },
                "must be at least 1",
            ));
        }
        if self.val_data.is_none() && !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return Err(bad(
                "val-fraction",
                format!("must be in (0, 1) (got {})", self.val_fraction),
            ));
        }
        if self.eval_every == Some(0) {
            return Err(bad("eval-every", "must be at least 1"));
        }
        if self.checkpoint_every == Some(0) {
            return Err(bad("checkpoint-every", "must be at least 1"));
        }
        Ok(())
    }

    /// The data format, `auto` resolved by the extension of `data`.
    pub fn data_format(&self) -> DataFormat {
        match self.format {
            DataFormat::Auto if self.data.extension().is_some_and(|e| e == "jsonl") => {
                DataFormat::Chat
            }
            DataFormat::Auto => DataFormat::Text,
            f => f,
        }
    }
}

impl FinetuneFile {
    /// Read a spec; relative paths resolve against the spec's folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(Error::io("reading the spec", path))?;
        Self::from_str_in(&text, path)
    }

    /// Parse spec text read from `origin` (named in errors; relative paths resolve against its
    /// folder) and validate it.
    pub fn from_str_in(text: &str, origin: &Path) -> Result<Self> {
        let mut spec: FinetuneFile = toml::from_str(text).map_err(|source| Error::Toml {
            path: origin.into(),
            source,
        })?;
        let dir = origin.parent().unwrap_or(Path::new("."));
        let f = &mut spec.finetune;
        for p in [Some(&mut f.base), Some(&mut f.data), f.val_data.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<()> {
        self.finetune.validate()?;
        self.schedule.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_zero_is_refused_naming_the_field() {
        let mut s = FinetuneSpec::new("b.gguf", "d.txt");
        s.lora_r = 0;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("lora-r") && e.contains("got 0"), "{e}");
    }

    #[test]
    fn unknown_target_is_named_with_the_existing_modules() {
        let mut s = FinetuneSpec::new("b.gguf", "d.txt");
        s.targets = vec!["q_proj".into(), "qkv_proj".into()];
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("\"qkv_proj\"") && e.contains("q_proj, k_proj, v_proj"),
            "{e}"
        );
    }

    #[test]
    fn base_precision_defaults_to_f32_and_names_a_bad_value() {
        let ok = "[finetune]\nbase = \"m.gguf\"\ndata = \"d.txt\"\n";
        let f: FinetuneFile = toml::from_str(ok).unwrap();
        assert_eq!(f.finetune.base_precision, BasePrecision::F32);
        let q: FinetuneFile =
            toml::from_str(&format!("{ok}base-precision = \"quantized\"\n")).unwrap();
        assert_eq!(q.finetune.base_precision, BasePrecision::Quantized);
        let e = toml::from_str::<FinetuneFile>(&format!("{ok}base-precision = \"int4\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("int4") && e.contains("quantized"), "{e}");
    }

    #[test]
    fn spec_keys_are_kebab_case_and_strict() {
        let ok = "[finetune]\nbase = \"m.gguf\"\ndata = \"d.txt\"\nlora-r = 4\nsteps = 3\n[optimizer]\nkind = \"adamw\"\nlr = 0.002\n";
        let f: FinetuneFile = toml::from_str(ok).unwrap();
        assert_eq!(f.finetune.lora_r, 4);
        assert_eq!(f.finetune.lora_alpha, 16.0);
        f.validate().unwrap();
        let typo = ok.replace("lora-r", "lora-rank");
        let e = toml::from_str::<FinetuneFile>(&typo)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lora-rank"), "{e}");
    }
}
