//! BERT-family encoders from a Hugging Face folder, run by `candle-transformers`' BERT.
//!
//! `config.json` is read into [`BertConfig`] (the fields BERT needs; others ignored), checked,
//! and the weights file is checked tensor by tensor against the shapes the config implies
//! ([`expected_tensors`]) before it is memory-mapped, so a broken folder gets an error that names
//! the tensor.
//!
//! # Shapes
//! `forward(ids [B, T] u32, type_ids [B, T] u32, mask [B, T] u32) -> [B, T, hidden] f32`.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hf::{check_tensors, Architecture, HfFolder};

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}
fn default_type_vocab() -> usize {
    2
}

/// The `config.json` fields a BERT encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// `gelu` (erf), `gelu_new` / `gelu_pytorch_tanh` (tanh approximation) or `relu`. Default gelu.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    /// Default 2.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Default 1e-12.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only "absolute" is supported. Default absolute.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

impl BertConfig {
    /// Check the config and turn it into candle's.
    pub fn to_candle(&self, path: &std::path::Path) -> Result<bert::Config> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if let Some(p) = &self.position_embedding_type {
            if p != "absolute" {
                return Err(bad(format!(
                    "position_embedding_type \"{p}\" is not supported (only \"absolute\")"
                )));
            }
        }
        let hidden_act = match self.hidden_act.as_str() {
            "gelu" => bert::HiddenAct::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => bert::HiddenAct::GeluApproximate,
            "relu" => bert::HiddenAct::Relu,
            other => {
                return Err(bad(format!(
                "hidden_act \"{other}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
            )))
            }
        };
        Ok(bert::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act,
            hidden_dropout_prob: 0.0,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            initializer_range: 0.02,
            layer_norm_eps: self.layer_norm_eps,
            pad_token_id: self.pad_token_id,
            position_embedding_type: bert::PositionEmbeddingType::Absolute,
            use_cache: false,
            classifier_dropout: None,
            model_type: Some("bert".into()),
        })
    }
}

/// Every tensor a BERT encoder with `c` needs, with its shape (names without a `bert.` prefix).
pub fn expected_tensors(c: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let h = c.hidden_size;
    let mut t = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![c.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![c.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![c.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![c.intermediate_size, h]),
            ("intermediate.dense.bias", vec![c.intermediate_size]),
            ("output.dense.weight", vec![h, c.intermediate_size]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            t.push((format!("{p}.{name}"), shape));
        }
    }
    t
}

/// A loaded BERT encoder (f32, CPU).
pub struct Bert {
    model: bert::BertModel,
    pub config: BertConfig,
    pub weights: PathBuf,
    device: Device,
}

impl Bert {
    /// Load from a folder whose `config.json` says BERT; the weights are checked, then mmapped.
    pub fn load(folder: &HfFolder) -> Result<Self> {
        let cfg_path = folder.dir.join("config.json");
        if folder.architecture != Architecture::Bert {
            return Err(Error::Config {
                path: cfg_path,
                message: format!("expected a BERT encoder, found {:?}", folder.architecture),
            });
        }
        let config: BertConfig = folder.typed_config()?;
        let candle_cfg = config.to_candle(&cfg_path)?;
        let weights = folder.weights()?;
        let prefix = check_tensors(&weights, &expected_tensors(&config), &["", "bert."])?;
        let device = Device::Cpu;
        // SAFETY: the file is only read; it must not be modified while the model is loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(Error::candle(format!(
            "memory-mapping {}",
            weights.display()
        )))?;
        let vb = if prefix.is_empty() { vb } else { vb.pp("bert") };
        let model = bert::BertModel::load(vb, &candle_cfg).map_err(Error::candle(format!(
            "loading BERT weights from {}",
            weights.display()
        )))?;
        Ok(Bert {
            model,
            config,
            weights,
            device,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Hidden states of the last layer, `[B, T, hidden]`; `mask` is 1 for tokens, 0 for padding.
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.model
            .forward(ids, type_ids, Some(mask))
            .map_err(Error::candle("BERT forward pass"))
    }

    /// Multiply-adds of one forward pass over a `[b, t]` batch, times two (FLOPs): the linear
    /// layers (4 h² for Q/K/V/O, 2 h·i for the MLP per token) and attention (2 t·h per token).
    pub fn flops(&self, b: usize, t: usize) -> f64 {
        let c = &self.config;
        let (h, i) = (c.hidden_size as f64, c.intermediate_size as f64);
        let per_token = 4.0 * h * h + 2.0 * h * i + 2.0 * t as f64 * h;
        2.0 * per_token * (b * t) as f64 * c.num_hidden_layers as f64
    }
}
