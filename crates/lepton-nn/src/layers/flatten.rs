//! `flatten`: `[d1, d2, ...]` -> `[d1 · d2 · ...]` per sample. No parameters.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx};
use crate::budget;

/// `flatten` (no settings; also the built layer).
#[derive(Debug, Clone, Copy)]
pub struct Flatten;

impl LayerConfig for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        let n = budget::elements(x)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ctx.error(format!("{x:?} has more values than fit in memory")))?;
        Ok(vec![n])
    }

    fn build(&self, _: &[usize], _: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Flatten))
    }
}

impl Layer for Flatten {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        x.flatten_from(1)
    }

    fn pieces(&self) -> Result<Option<Vec<crate::kernels::Piece>>> {
        Ok(Some(vec![crate::kernels::Piece::Flatten]))
    }

    fn passes_codes(&self) -> bool {
        true
    }
}
