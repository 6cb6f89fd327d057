//! BERT-family encoders from a Hugging Face folder, run by Lepton's fused CPU kernels.
//!
//! `config.json` is read into [`BertConfig`] (the fields BERT needs; others ignored), checked,
//! and the weights file is checked tensor by tensor against the shapes the config implies
//! ([`expected_tensors`]) before it is memory-mapped, so a broken folder gets an error that names
//! the tensor. A dynamic-int8 folder (written by `lepton compress`, see
//! [`crate::formats::int8_encoder`]) loads through the same [`Bert::load`]: its Linear layers run
//! on the int8 kernels, everything else as in f32.
//!
//! # Shapes
//! `forward(ids [B, T] u32, type_ids [B, T] u32, mask [B, T] u32) -> [B, T, hidden] f32`.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::ops::layer_norm;
use candle_nn::VarBuilder;
use lepton_nn::kernels::{attention, Activation, AttentionMask, PackedLinear};
use lepton_quant::PackedI8;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::formats::int8_encoder::{self, Marker, TypedWeights};
use crate::hf::{check_tensors, Architecture, HfFolder};
use crate::models::linear::{EncoderLinear, Int8Linear};

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
    /// Check the config (sizes, epsilon, heads, position embeddings, activation) and return the
    /// MLP activation it names.
    pub fn check(&self, path: &std::path::Path) -> Result<Activation> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return Err(bad(format!("field {field} is 0, expected at least 1")));
            }
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(bad(format!(
                "field layer_norm_eps is {}, expected a finite positive number",
                self.layer_norm_eps
            )));
        }
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
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(bad(format!(
                "hidden_act \"{other}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
            ))),
        }
    }
}

/// Refuse a `num_hidden_layers` the weights file cannot hold before the expected-tensor list (16
/// entries per layer) is built from it: more layers than the file has tensors is refused here (the
/// tensor count is bounded by the file length); a smaller mismatch gets the precise
/// missing-tensor error from the check that follows.
pub(crate) fn check_layer_count(
    weights: &std::path::Path,
    config: &std::path::Path,
    layers: usize,
) -> Result<()> {
    let tensors = crate::hf::safetensors_shapes(weights)?.len();
    if layers > tensors {
        return Err(Error::Config {
            path: config.to_path_buf(),
            message: format!(
                "field num_hidden_layers is {layers}, but {} has only {tensors} tensors (16 per layer)",
                weights.display()
            ),
        });
    }
    Ok(())
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

/// One encoder layer, with Q/K/V fused into one `[3h, h]` projection. Every f32 linear layer's
/// weights are packed once at load time into the panels the GEMM microkernels read (see
/// `lepton_nn::kernels::PackedLinear`); int8 ones are laid out for the int8 kernels.
struct Layer {
    qkv: EncoderLinear,
    attn_out: EncoderLinear,
    ln1: (Tensor, Tensor),
    up: EncoderLinear,
    down: EncoderLinear,
    ln2: (Tensor, Tensor),
}

/// A loaded BERT encoder (f32, CPU), run by Lepton's fused kernels: linear + bias + GELU in one
/// op, attention read straight from the fused QKV output with the padding mask applied in the
/// softmax. `candle-transformers`' BERT is the reference it is tested against.
pub struct Bert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    ln: (Tensor, Tensor),
    layers: Vec<Layer>,
    act: Activation,
    pub config: BertConfig,
    pub weights: PathBuf,
    /// The folder's int8 marker; `None` for f32.
    pub int8: Option<Marker>,
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
        let act = config.check(&cfg_path)?;
        let weights = folder.weights()?;
        check_layer_count(&weights, &cfg_path, config.num_hidden_layers)?;
        let int8 = Marker::read(&folder.dir)?;
        let expected = match int8 {
            Some(_) => int8_encoder::expected_tensors(&config),
            None => expected_tensors(&config),
        };
        let prefix = check_tensors(&weights, &expected, &["", "bert."])?;
        let typed = TypedWeights::open(&weights, &prefix)?;
        if int8.is_none() {
            int8_encoder::refuse_unmarked_int8(&typed, &config, &folder.dir)?;
        }
        let device = Device::Cpu;
        // SAFETY: the file is only read; it must not be modified while the model is loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(Error::candle(format!(
            "memory-mapping {}",
            weights.display()
        )))?;
        let vb = if prefix.is_empty() { vb } else { vb.pp("bert") };
        let c = &config;
        let h = c.hidden_size;
        let err = |name: &str| Error::candle(format!("loading {name} from {}", weights.display()));
        let get = |name: &str, shape: &[usize]| vb.get(shape, name).map_err(err(name));
        let pack = |w: &Tensor, b: &Tensor, name: &str| {
            PackedLinear::new(w, Some(b)).map_err(err(&format!("packing {name}")))
        };
        // The Linear layers `parts` (each `[o, in]`), fused along the outputs (Q/K/V) or alone.
        let linear = |parts: &[&str], o: usize, i: usize| -> Result<EncoderLinear> {
            let name = parts.join("+");
            if int8.is_some() {
                let (mut codes, mut scales, mut bias) = (Vec::new(), Vec::new(), Vec::new());
                for p in parts {
                    codes.extend(typed.i8(&format!("{p}.weight"), &[o, i])?);
                    scales.extend(typed.f32_exact(&format!("{p}.weight_scale"), &[o])?);
                    bias.extend(typed.f32(&format!("{p}.bias"), &[o])?);
                }
                let rows = o * parts.len();
                let w =
                    PackedI8::new(rows, i, &codes, scales, &name).map_err(|e| Error::Config {
                        path: weights.clone(),
                        message: format!("int8 layer {prefix}{name}: {e}"),
                    })?;
                let l = Int8Linear::new(w, bias).map_err(err(&name))?;
                return Ok(EncoderLinear::Int8(l));
            }
            let ws = parts
                .iter()
                .map(|p| get(&format!("{p}.weight"), &[o, i]))
                .collect::<Result<Vec<_>>>()?;
            let bs = parts
                .iter()
                .map(|p| get(&format!("{p}.bias"), &[o]))
                .collect::<Result<Vec<_>>>()?;
            let w = Tensor::cat(&ws, 0).map_err(err(&name))?;
            let b = Tensor::cat(&bs, 0).map_err(err(&name))?;
            Ok(EncoderLinear::F32(pack(&w, &b, &name)?))
        };
        let norm = |p: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                get(&format!("{p}.weight"), &[h])?,
                get(&format!("{p}.bias"), &[h])?,
            ))
        };
        let mut layers = Vec::new();
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let s = |n: &str| format!("{p}.attention.self.{n}");
            layers.push(Layer {
                qkv: linear(&[&s("query"), &s("key"), &s("value")], h, h)?,
                attn_out: linear(&[&format!("{p}.attention.output.dense")], h, h)?,
                ln1: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(
                    &[&format!("{p}.intermediate.dense")],
                    c.intermediate_size,
                    h,
                )?,
                down: linear(&[&format!("{p}.output.dense")], h, c.intermediate_size)?,
                ln2: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            word: get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[c.max_position_embeddings, h],
            )?,
            token_type: get(
                "embeddings.token_type_embeddings.weight",
                &[c.type_vocab_size, h],
            )?,
            ln: norm("embeddings.LayerNorm")?,
            layers,
            act,
            config,
            weights,
            int8,
            device,
        })
    }

    /// `int8-dynamic` for a compressed folder, else `f32`.
    pub fn precision(&self) -> &'static str {
        match self.int8 {
            Some(_) => "int8-dynamic",
            None => "f32",
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Hidden states of the last layer, `[B, T, hidden]`; `mask` is 1 for tokens, 0 for padding.
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.forward_inner(ids, type_ids, mask)
            .map_err(Error::candle("BERT forward pass"))
    }

    fn forward_inner(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let c = &self.config;
        if t > c.max_position_embeddings {
            candle_core::bail!(
                "{t} tokens exceed max_position_embeddings {}",
                c.max_position_embeddings
            );
        }
        let (h, heads) = (c.hidden_size, c.num_attention_heads);
        let eps = c.layer_norm_eps as f32;
        let emb = |table: &Tensor, ids: &Tensor| -> candle_core::Result<Tensor> {
            table
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, h))
        };
        let x = (emb(&self.word, ids)? + emb(&self.token_type, type_ids)?)?
            .broadcast_add(&self.position.narrow(0, 0, t)?)?;
        let mut x = layer_norm(&x, &self.ln.0, &self.ln.1, eps)?;
        let keys: Vec<Vec<bool>> = mask
            .to_vec2::<u32>()?
            .into_iter()
            .map(|r| r.into_iter().map(|m| m != 0).collect())
            .collect();
        let mask = AttentionMask {
            causal: false,
            keys: Some(keys),
        };
        let scale = 1.0 / ((h / heads) as f32).sqrt();
        for l in &self.layers {
            let qkv =
                l.qkv
                    .forward(&x, Activation::Identity)?
                    .reshape((b, t, 3, heads, h / heads))?;
            let part = |i| qkv.narrow(2, i, 1)?.squeeze(2);
            let ctx =
                attention(&part(0)?, &part(1)?, &part(2)?, scale, &mask)?.reshape((b, t, h))?;
            let a = l.attn_out.forward(&ctx, Activation::Identity)?;
            x = layer_norm(&(x + a)?, &l.ln1.0, &l.ln1.1, eps)?;
            let up = l.up.forward(&x, self.act)?;
            let down = l.down.forward(&up, Activation::Identity)?;
            x = layer_norm(&(x + down)?, &l.ln2.0, &l.ln2.1, eps)?;
        }
        Ok(x)
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
