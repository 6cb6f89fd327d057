//! `transformer-block`: a pre-norm GPT block, nanoGPT's `Block`:
//! `h = x + attn(norm₁(x))`, `y = h + mlp(norm₂(h))`, with `attn` the
//! [`super::MultiHeadAttention`] and `mlp(x) = c_proj(act(c_fc(x)))` (GELU, erf form as
//! nanoGPT's `nn.GELU()`, or its tanh approximation), or SwiGLU
//! `c_proj(silu(a) ⊙ g)` with `[a, g] = c_fc(x)` (LLaMA's MLP with the gate and up projections
//! fused in one weight, `a` first). Dropout (training) on the attention and MLP outputs, as
//! nanoGPT's `resid_dropout` and MLP dropout.
//!
//! # Shapes
//! `[T, D]` -> `[T, D]`. Parameters under `layers.{i}`, named as nanoGPT's `state_dict` under
//! `transformer.h.{j}`: `ln_1.{weight,bias}`, `attn.c_attn.{weight,bias}` `[3D, D]`,
//! `attn.c_proj` `[D, D]`, `ln_2`, `mlp.c_fc` `[F, D]` (`[2F, D]` for SwiGLU), `mlp.c_proj`
//! `[D, F]`, where `F = mlp-hidden`. Biases are left out with `bias = false`, the norm biases
//! too (and RMS norm has none).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::attention::Proj;
use super::{
    dropout, eps, yes, BuildCtx, Ctx, Layer, LayerConfig, MultiHeadAttention,
    MultiHeadAttentionConfig, ShapeCtx, Values,
};
use crate::kernels::{self, Activation};

/// The block's normalisation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    /// Layer norm (the default; nanoGPT's).
    #[default]
    LayerNorm,
    /// RMS norm (LLaMA's).
    RmsNorm,
}

/// The block's MLP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MlpKind {
    /// GELU, exact erf form (the default; nanoGPT's `nn.GELU()`).
    #[default]
    Gelu,
    /// GELU with the tanh approximation (GPT-2's).
    GeluTanh,
    /// SwiGLU (LLaMA's).
    Swiglu,
}

/// The `transformer-block` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TransformerBlockConfig {
    /// The number of attention heads; it must divide the width `D`.
    pub num_heads: usize,
    /// Causal attention. Default `true`.
    #[serde(default = "yes")]
    pub causal: bool,
    /// Dropout probability on the attention and MLP outputs in training, in [0, 1). Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Biases in the projections and layer norms. Default `true`.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Rotary position embedding in the attention. Default `false`.
    #[serde(default)]
    pub rope: bool,
    /// RoPE's base θ. Default 10000.
    #[serde(default = "rope_theta")]
    pub rope_theta: f64,
    /// `layer-norm` or `rms-norm`. Default `layer-norm`.
    #[serde(default)]
    pub norm: NormKind,
    /// The norms' ε, finite and > 0. Default 1e-5.
    #[serde(default = "eps")]
    pub eps: f64,
    /// `gelu`, `gelu-tanh` or `swiglu`. Default `gelu`.
    #[serde(default)]
    pub mlp: MlpKind,
    /// The MLP's hidden width `F`. Default `4·D` (nanoGPT's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_hidden: Option<usize>,
}

fn rope_theta() -> f64 {
    10_000.0
}

impl TransformerBlockConfig {
    fn attention(&self) -> MultiHeadAttentionConfig {
        MultiHeadAttentionConfig {
            num_heads: self.num_heads,
            causal: self.causal,
            dropout: self.dropout,
            bias: self.bias,
            rope: self.rope,
            rope_theta: self.rope_theta,
        }
    }

    /// The MLP's hidden width for width `d`, or `None` on overflow.
    fn hidden(&self, d: usize) -> Option<usize> {
        self.mlp_hidden.or_else(|| d.checked_mul(4))
    }

    /// The number of columns of `c_fc` (two halves for SwiGLU).
    fn fc_out(&self, d: usize) -> Option<usize> {
        let f = self.hidden(d)?;
        match self.mlp {
            MlpKind::Swiglu => f.checked_mul(2),
            _ => Some(f),
        }
    }
}

impl LayerConfig for TransformerBlockConfig {
    fn kind(&self) -> &'static str {
        "transformer-block"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        let (t, d) = self.attention().check(x, ctx)?;
        super::check_eps(self.eps, ctx)?;
        let fc = match (self.hidden(d), self.fc_out(d)) {
            (Some(f), Some(fc)) if f > 0 => fc,
            _ => {
                return Err(ctx.size_error(
                    "mlp-hidden",
                    format!("the MLP width {:?} must be at least 1", self.mlp_hidden),
                ))
            }
        };
        // Per sample: two norms, the MLP's hidden activations, two residual sums.
        let inner = ctx
            .count("mlp-hidden", &[t, fc])?
            .saturating_add(ctx.count("mlp-hidden", &[4, t, d])?);
        ctx.activations(inner, Some("mlp-hidden"))?;
        Ok(x.to_vec())
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        let d = x[1];
        let overflow = || ctx.size_error("mlp-hidden", "the MLP's size overflows 64 bits");
        let (f, fc) = (
            self.hidden(d).ok_or_else(overflow)?,
            self.fc_out(d).ok_or_else(overflow)?,
        );
        let mlp = ctx
            .count("mlp-hidden", &[fc, d])?
            .checked_add(ctx.count("mlp-hidden", &[d, f])?)
            .ok_or_else(overflow)?;
        let biases = if self.bias { (fc + d) as u64 } else { 0 };
        let norms = match (self.norm, self.bias) {
            (NormKind::LayerNorm, true) => 4 * d as u64,
            _ => 2 * d as u64,
        };
        let total = self
            .attention()
            .parameters(d, ctx)?
            .checked_add(mlp)
            .and_then(|n| n.checked_add(biases + norms))
            .ok_or_else(overflow)?;
        Ok(Values {
            trainable: total,
            buffers: 0,
        })
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("mlp-hidden")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, ctx: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let d = x[1];
        let (f, fc) = (
            self.hidden(d).expect("shapes checked"),
            self.fc_out(d).expect("shapes checked"),
        );
        let norm = |name: &str| Norm::new(d, self.norm, self.bias, self.eps, vb.pp(name));
        let ln_1 = norm("ln_1")?;
        let attn = self.attention().build_attention(d, vb.pp("attn"), ctx)?;
        let ln_2 = norm("ln_2")?;
        let mlp = vb.pp("mlp");
        Ok(Box::new(TransformerBlock {
            ln_1,
            attn,
            ln_2,
            c_fc: Proj::new(d, fc, self.bias, mlp.pp("c_fc"))?,
            c_proj: Proj::new(f, d, self.bias, mlp.pp("c_proj"))?,
            mlp: self.mlp,
            dropout: self.dropout,
            dropout_id: if self.dropout > 0.0 {
                ctx.next_dropout()
            } else {
                0
            },
        }))
    }
}

/// Layer norm (optional bias) or RMS norm over the last dimension, as candle compositions (so
/// they have a backward).
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
    kind: NormKind,
    eps: f64,
}

impl Norm {
    pub fn new(d: usize, kind: NormKind, bias: bool, eps: f64, vb: VarBuilder) -> Result<Self> {
        use candle_nn::Init::Const;
        Ok(Self {
            weight: vb.get_with_hints(d, "weight", Const(1.0))?,
            bias: if bias && kind == NormKind::LayerNorm {
                Some(vb.get_with_hints(d, "bias", Const(0.0))?)
            } else {
                None
            },
            kind,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.kind {
            NormKind::LayerNorm => {
                kernels::layer_norm(x, &self.weight, self.bias.as_ref(), self.eps)
            }
            NormKind::RmsNorm => {
                let ms = x.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
                x.broadcast_div(&(ms + self.eps)?.sqrt()?)?
                    .broadcast_mul(&self.weight)
            }
        }
    }
}

/// A built `transformer-block`.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    ln_1: Norm,
    attn: MultiHeadAttention,
    ln_2: Norm,
    c_fc: Proj,
    c_proj: Proj,
    mlp: MlpKind,
    dropout: f64,
    dropout_id: u64,
}

impl Layer for TransformerBlock {
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let h = (x + self.attn.forward(&self.ln_1.forward(x)?, ctx)?)?;
        let n = self.ln_2.forward(&h)?;
        let a = match self.mlp {
            MlpKind::Gelu => self.c_fc.forward(&n, Activation::GeluErf, ctx.train)?,
            MlpKind::GeluTanh => self.c_fc.forward(&n, Activation::GeluTanh, ctx.train)?,
            MlpKind::Swiglu => {
                let u = self.c_fc.forward(&n, Activation::Identity, ctx.train)?;
                let f = u.dim(candle_core::D::Minus1)? / 2;
                let gate = u.narrow(candle_core::D::Minus1, 0, f)?;
                let up = u.narrow(candle_core::D::Minus1, f, f)?;
                (gate.silu()? * up)?
            }
        };
        let m = self.c_proj.forward(&a, Activation::Identity, ctx.train)?;
        let m = if ctx.train && self.dropout > 0.0 {
            dropout(&m, self.dropout, ctx.seed, ctx.step, self.dropout_id)?
        } else {
            m
        };
        h + m
    }
}
