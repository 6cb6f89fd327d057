//! `rms-norm`: `y = x / sqrt(mean(x²) + ε) · γ` over the last dimension, as a composition of
//! candle ops (so it has a backward; `candle_nn::ops::rms_norm` has none).
//!
//! # Shapes
//! Keeps the shape `[..., F]`; `weight`: `[F]` (PyTorch's `nn.RMSNorm(F)`).

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx, Values};

fn rms_eps() -> f64 {
    1e-6
}

/// The `rms-norm` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RmsNormConfig {
    /// Added to the mean square, finite and > 0. Default 1e-6 (LLaMA's).
    #[serde(default = "rms_eps")]
    pub eps: f64,
}

impl LayerConfig for RmsNormConfig {
    fn kind(&self) -> &'static str {
        "rms-norm"
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
            trainable: *x.last().unwrap_or(&0) as u64,
            buffers: 0,
        })
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let features = *x.last().expect("shapes checked");
        Ok(Box::new(RmsNorm {
            weight: vb.get_with_hints(features, "weight", Init::Const(1.0))?,
            eps: self.eps,
        }))
    }
}

/// A built `rms-norm`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl Layer for RmsNorm {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(ms + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    #[test]
    fn matches_a_hand_computed_example() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let layer = RmsNormConfig { eps: 0.0 }
            .build(&[2], vb, &mut BuildCtx::default())
            .unwrap();
        let x = Tensor::new(&[[3f64, 4.0], [1.0, -1.0]], &Device::Cpu).unwrap();
        let y = layer
            .forward(&x, &Ctx::EVAL)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        // rms([3, 4]) = sqrt(12.5), rms([1, -1]) = 1.
        let r = 12.5f64.sqrt();
        assert_eq!(y, [[3.0 / r, 4.0 / r], [1.0, -1.0]]);
    }
}
