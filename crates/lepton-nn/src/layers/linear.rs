//! `linear`: `y = x Wᵀ + b` on the last dimension.
//!
//! # Shapes
//! `[..., in]` -> `[..., out-features]`; `weight: [out-features, in]`, `bias: [out-features]`
//! (PyTorch's `nn.Linear`). A following ReLU is folded into the kernel (see `fuse.rs`).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{kaiming, yes, BuildCtx, Ctx, Fold, Layer, LayerConfig, ShapeCtx, Values};
use crate::kernels::{self, Activation};

/// The `linear` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LinearConfig {
    /// Output features (at least 1).
    pub out_features: usize,
    /// Input features: inferred from the input shape; when given it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_features: Option<usize>,
    /// Add a bias. Default `true`.
    #[serde(default = "yes")]
    pub bias: bool,
}

impl LayerConfig for LinearConfig {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        let last = *x
            .last()
            .ok_or_else(|| ctx.error("expects at least one dimension"))?;
        if let Some(i) = self.in_features {
            if i != last {
                return Err(ctx.error(format!(
                    "in-features = {i} but the input is {x:?}, whose last dimension is {last}"
                )));
            }
        }
        if self.out_features == 0 {
            return Err(ctx.error("out-features must be at least 1"));
        }
        let mut y = x.to_vec();
        *y.last_mut().expect("checked non-empty") = self.out_features;
        Ok(y)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        let field = "out-features";
        let w = ctx.count(field, &[self.out_features, *x.last().unwrap_or(&1)])?;
        let b = if self.bias {
            self.out_features as u64
        } else {
            0
        };
        Ok(Values {
            trainable: w
                .checked_add(b)
                .ok_or_else(|| ctx.size_error(field, "weights and bias overflow 64 bits"))?,
            buffers: 0,
        })
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("out-features")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let fan_in = *x.last().expect("shapes checked");
        let weight = vb.get_with_hints((self.out_features, fan_in), "weight", kaiming(fan_in))?;
        let bias = if self.bias {
            Some(vb.get_with_hints(self.out_features, "bias", kaiming(fan_in))?)
        } else {
            None
        };
        Ok(Box::new(Linear {
            weight,
            bias,
            act: Activation::Identity,
        }))
    }
}

/// A built `linear` layer.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    /// The activation after this layer, computed in the same op (see `fuse.rs`).
    act: Activation,
}

impl Layer for Linear {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        kernels::linear(x, &self.weight, self.bias.as_ref(), self.act)
    }

    fn fold(&mut self, op: Fold, _: bool) -> bool {
        if op == Fold::Relu && self.act == Activation::Identity {
            self.act = Activation::Relu;
            return true;
        }
        false
    }
}
