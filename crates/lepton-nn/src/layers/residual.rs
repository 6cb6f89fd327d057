//! `residual`: `y = x + f(x)`, where `f` is the inner layers, which must keep the shape. Inner
//! layer `j` of layer `i` has its parameters under `layers.{i}.layers.{j}` and its errors under
//! `model.layers[i].layers[j]`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx};
use crate::spec::LayerSpec;

/// The `residual` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResidualConfig {
    /// The inner layers `f` (at least one).
    pub layers: Vec<LayerSpec>,
}

impl LayerConfig for ResidualConfig {
    fn kind(&self) -> &'static str {
        "residual"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        if self.layers.is_empty() {
            return Err(ctx.error("needs at least one inner layer"));
        }
        let shapes = ctx.nested(&self.layers, x)?;
        let last = shapes.last().expect("non-empty");
        if last != x {
            return Err(ctx.error(format!(
                "the inner layers turn {x:?} into {last:?}; a residual block must keep the shape"
            )));
        }
        Ok(x.to_vec())
    }

    fn build(&self, x: &[usize], vb: VarBuilder, ctx: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Residual(ctx.build_all(
            &self.layers,
            x,
            &vb.pp("layers"),
        )?)))
    }
}

/// A built `residual` block.
#[derive(Debug)]
pub struct Residual(Vec<Box<dyn Layer>>);

impl Layer for Residual {
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let mut y = x.clone();
        for l in &self.0 {
            y = l.forward(&y, ctx)?;
        }
        x + y
    }
}
