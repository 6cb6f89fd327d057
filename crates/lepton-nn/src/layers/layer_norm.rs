//! `layer-norm`: normalisation over the last dimension, `y = (x - μ) / sqrt(σ² + ε) · γ + β`
//! with the biased σ², by [`crate::kernels::layer_norm`] (a fused op with a backward, and the
//! plain candle composition for f64; `candle_nn::ops::layer_norm` has no backward).
//!
//! # Shapes
//! Keeps the shape `[..., F]`; `weight`, `bias`: `[F]` (PyTorch's `nn.LayerNorm(F)`).

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{eps, BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx, Values};

/// The `layer-norm` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LayerNormConfig {
    /// Added to the variance, finite and > 0. Default 1e-5.
    #[serde(default = "eps")]
    pub eps: f64,
}

impl LayerConfig for LayerNormConfig {
    fn kind(&self) -> &'static str {
        "layer-norm"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        if x.is_empty() {
            return Err(ctx.error("expects at least one dimension"));
        }
        super::check_eps(self.eps, ctx)?;
        Ok(x.to_vec())
    }

    fn values(&self, x: &[usize], _: &ShapeCtx) -> crate::Result<Values> {
        Ok(Values {
            trainable: 2 * *x.last().unwrap_or(&0) as u64,
            buffers: 0,
        })
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let features = *x.last().expect("shapes checked");
        Ok(Box::new(LayerNorm::new(features, self.eps, vb)?))
    }
}

/// A built `layer-norm`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(features: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(features, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(features, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::kernels::layer_norm(x, &self.weight, Some(&self.bias), self.eps)
    }
}

impl Layer for LayerNorm {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        LayerNorm::forward(self, x)
    }
}
