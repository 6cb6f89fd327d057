//! `linear`: `y = x Wᵀ + b` on the last dimension.
//!
//! # Shapes
//! `[..., in]` -> `[..., out-features]`; `weight: [out-features, in]`, `bias: [out-features]`
//! (PyTorch's `nn.Linear`). A following ReLU is folded into the kernel (see `fuse.rs`).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{kaiming, yes, BuildCtx, Ctx, Fold, Layer, LayerConfig, ShapeCtx, Values};
use crate::kernels::{self, Activation, Piece};

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
    /// Weight tying: the index `i` of an earlier top-level `embedding` (`model.layers[i]`) whose
    /// weight `[num-embeddings, embedding-dim]` this layer uses as its own `[out, in]` weight,
    /// `y = x·Eᵀ (+ b)`; `out-features` must equal `num-embeddings` and the input's last
    /// dimension `embedding-dim`. The weight is stored once (under the embedding) and its
    /// gradient sums both uses. Only on a top-level layer. Default: none (an own weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie: Option<usize>,
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
        if let Some(tie) = self.tie {
            if !ctx.is_top_level() {
                return Err(ctx.error(format!(
                    "tie = {tie}: only a top-level layer can share an embedding's weight"
                )));
            }
            let Some([rows, cols]) = ctx.shared_table(tie) else {
                return Err(ctx.error(format!(
                    "tie = {tie} must name an earlier top-level embedding layer, model.layers[{tie}]"
                )));
            };
            if [rows, cols] != [self.out_features, last] {
                return Err(ctx.error(format!(
                    "tie = {tie}: the embedding's weight is [{rows}, {cols}] but this layer needs [out-features, in] = [{}, {last}]",
                    self.out_features
                )));
            }
        }
        let mut y = x.to_vec();
        *y.last_mut().expect("checked non-empty") = self.out_features;
        Ok(y)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        let field = "out-features";
        let w = match self.tie {
            Some(_) => 0,
            None => ctx.count(field, &[self.out_features, *x.last().unwrap_or(&1)])?,
        };
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

    fn build(&self, x: &[usize], vb: VarBuilder, ctx: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let fan_in = *x.last().expect("shapes checked");
        let weight = match self.tie {
            Some(tie) => ctx
                .shared(tie)
                .ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "linear: tie = {tie} names no built embedding (a nested layer?)"
                    ))
                })?
                .clone(),
            None => vb.get_with_hints((self.out_features, fan_in), "weight", kaiming(fan_in))?,
        };
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

    fn pieces(&self) -> Result<Option<Vec<Piece>>> {
        let mut p = vec![Piece::Linear {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
        }];
        match self.act {
            Activation::Identity => {}
            Activation::Relu => p.push(Piece::Relu),
            _ => return Ok(None),
        }
        Ok(Some(p))
    }

    fn fold(&mut self, op: Fold, _: bool) -> bool {
        if op == Fold::Relu && self.act == Activation::Identity {
            self.act = Activation::Relu;
            return true;
        }
        false
    }
}
