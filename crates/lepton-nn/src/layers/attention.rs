//! `multi-head-attention`: self-attention over a sequence, nanoGPT's `CausalSelfAttention`.
//!
//! `qkv = x·W_attnᵀ + b_attn` (one fused projection, split into `q, k, v` of `H` heads of
//! `hd = D/H`), optionally RoPE on `q` and `k` ([`super::rope`]), then
//! `softmax(q·kᵀ/√hd + mask)·v` per head by the fused kernel [`crate::kernels::attention`]
//! (causal mask: position `t` sees `0..=t`), heads concatenated, `y = o·W_projᵀ + b_proj`, and
//! dropout on `y` in training (nanoGPT's `resid_dropout`; there is no dropout on the attention
//! probabilities).
//!
//! # Shapes
//! `[T, D]` -> `[T, D]`; `c_attn.weight: [3D, D]`, `c_attn.bias: [3D]`, `c_proj.weight: [D, D]`,
//! `c_proj.bias: [D]` (nanoGPT's `state_dict` names under `layers.{i}`). Any `T` works at run time.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{dropout, kaiming, rope, yes, BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx, Values};
use crate::kernels::{self, Activation, AttentionMask};

/// Serde default for `rope-theta`: 10000.
fn rope_theta() -> f64 {
    10_000.0
}

/// The `multi-head-attention` settings (also the attention half of `transformer-block`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MultiHeadAttentionConfig {
    /// The number of heads; it must divide the width `D`.
    pub num_heads: usize,
    /// Causal mask: position `t` attends to `0..=t` only. Default `true` (a language model);
    /// `false` for an encoder that sees the whole sequence (e.g. before a `sequence-pool`).
    #[serde(default = "yes")]
    pub causal: bool,
    /// Dropout probability on the output projection in training, in [0, 1). Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Biases in the projections. Default `true` (nanoGPT's `bias = True`).
    #[serde(default = "yes")]
    pub bias: bool,
    /// Rotary position embedding on queries and keys (the head size must be even). Default
    /// `false`.
    #[serde(default)]
    pub rope: bool,
    /// RoPE's base θ, finite and > 1. Default 10000.
    #[serde(default = "rope_theta")]
    pub rope_theta: f64,
}

impl MultiHeadAttentionConfig {
    /// The shape rule shared with `transformer-block`: `[T, D]` with `num-heads` dividing `D`.
    pub(crate) fn check(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<(usize, usize)> {
        let &[t, d] = x else {
            return Err(ctx.error(format!(
                "expects [T, D] per sample (a sequence of vectors), got {x:?}"
            )));
        };
        if self.num_heads == 0 || d % self.num_heads != 0 {
            return Err(ctx.size_error(
                "num-heads",
                format!(
                    "num-heads = {} must be at least 1 and divide the width D = {d}",
                    self.num_heads
                ),
            ));
        }
        if self.rope && (d / self.num_heads) % 2 != 0 {
            return Err(ctx.error(format!(
                "rope needs an even head size, D / num-heads = {d} / {} is odd",
                self.num_heads
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(ctx.error(format!(
                "rope-theta = {} must be finite and > 1",
                self.rope_theta
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ctx.error(format!("dropout = {} must be in [0, 1)", self.dropout)));
        }
        // Inside the layer: qkv [T, 3D], the heads' output [T, D], and the probabilities
        // [H, T, T] the backward pass recomputes.
        let inner = ctx
            .count("num-heads", &[self.num_heads, t, t])?
            .saturating_add(ctx.count("num-heads", &[4, t, d])?);
        ctx.activations(inner, Some("num-heads"))?;
        Ok((t, d))
    }

    /// Parameter values for width `d`.
    pub(crate) fn parameters(&self, d: usize, ctx: &ShapeCtx) -> crate::Result<u64> {
        let w = ctx.count("num-heads", &[4, d, d])?;
        Ok(w + if self.bias { 4 * d as u64 } else { 0 })
    }

    /// Build for width `d` under `vb` (`c_attn`, `c_proj`).
    pub(crate) fn build_attention(
        &self,
        d: usize,
        vb: VarBuilder,
        ctx: &mut BuildCtx,
    ) -> Result<MultiHeadAttention> {
        Ok(MultiHeadAttention {
            c_attn: Proj::new(d, 3 * d, self.bias, vb.pp("c_attn"))?,
            c_proj: Proj::new(d, d, self.bias, vb.pp("c_proj"))?,
            heads: self.num_heads,
            causal: self.causal,
            rope: self.rope.then_some(self.rope_theta),
            dropout: self.dropout,
            dropout_id: if self.dropout > 0.0 {
                ctx.next_dropout()
            } else {
                0
            },
        })
    }
}

impl LayerConfig for MultiHeadAttentionConfig {
    fn kind(&self) -> &'static str {
        "multi-head-attention"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        self.check(x, ctx)?;
        Ok(x.to_vec())
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        Ok(Values {
            trainable: self.parameters(x[1], ctx)?,
            buffers: 0,
        })
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("num-heads")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, ctx: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(self.build_attention(x[1], vb, ctx)?))
    }
}

/// A linear projection `[out, in]` with an optional bias (nanoGPT's `nn.Linear` names).
#[derive(Debug, Clone)]
pub(crate) struct Proj {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Proj {
    pub fn new(fan_in: usize, out: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints((out, fan_in), "weight", kaiming(fan_in))?,
            bias: if bias {
                Some(vb.get_with_hints(out, "bias", kaiming(fan_in))?)
            } else {
                None
            },
        })
    }

    /// `act(x·Wᵀ + b)`; in training a GELU is its own op (see [`kernels::linear_train`]).
    pub fn forward(&self, x: &Tensor, act: Activation, train: bool) -> Result<Tensor> {
        if train {
            kernels::linear_train(x, &self.weight, self.bias.as_ref(), act)
        } else {
            kernels::linear(x, &self.weight, self.bias.as_ref(), act)
        }
    }
}

/// A built `multi-head-attention`.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    c_attn: Proj,
    c_proj: Proj,
    heads: usize,
    causal: bool,
    /// RoPE's θ when on.
    rope: Option<f64>,
    dropout: f64,
    dropout_id: u64,
}

impl Layer for MultiHeadAttention {
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let (b, t, d) = x.dims3().map_err(|_| {
            candle_core::Error::Msg(format!(
                "multi-head-attention: expects [B, T, D], got {:?}",
                x.dims()
            ))
        })?;
        let (h, hd) = (self.heads, d / self.heads);
        let qkv = self
            .c_attn
            .forward(x, Activation::Identity, ctx.train)?
            .reshape((b, t, 3, h, hd))?;
        let mask = AttentionMask {
            causal: self.causal,
            keys: None,
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let o = match self.rope {
            None => kernels::attention_qkv(&qkv, scale, &mask)?,
            Some(theta) => {
                let part = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2);
                let (q, k) = (rope(&part(0)?, theta)?, rope(&part(1)?, theta)?);
                kernels::attention(&q, &k, &part(2)?, scale, &mask)?
            }
        };
        let y = self
            .c_proj
            .forward(&o.reshape((b, t, d))?, Activation::Identity, ctx.train)?;
        if ctx.train && self.dropout > 0.0 {
            dropout(&y, self.dropout, ctx.seed, ctx.step, self.dropout_id)
        } else {
            Ok(y)
        }
    }
}
