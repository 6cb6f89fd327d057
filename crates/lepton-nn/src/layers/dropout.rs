//! `dropout`: inverted dropout with seeded masks, in training only. The mask of dropout layer `i`
//! at optimizer step `s` comes from ChaCha seeded with `(model seed, s, i)`, so runs are
//! reproducible and resumable (candle's own dropout draws from an unseeded generator).
//!
//! # Shapes
//! Keeps the shape. No parameters.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx};

/// The `dropout` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DropoutConfig {
    /// The probability of zeroing a value, in [0, 1) (required).
    pub p: f64,
}

impl LayerConfig for DropoutConfig {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(ctx.error(format!("p = {} must be in [0, 1)", self.p)));
        }
        Ok(x.to_vec())
    }

    fn build(&self, _: &[usize], _: VarBuilder, ctx: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Dropout {
            p: self.p,
            id: ctx.next_dropout(),
        }))
    }
}

/// A built `dropout` layer: `id` numbers it among the model's dropout layers.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f64,
    id: u64,
}

impl Layer for Dropout {
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        if ctx.train {
            dropout(x, self.p, ctx.seed, ctx.step, self.id)
        } else {
            Ok(x.clone())
        }
    }

    /// The identity: explanations run in eval mode.
    fn pieces(&self) -> Result<Option<Vec<crate::kernels::Piece>>> {
        Ok(Some(Vec::new()))
    }

    /// Int8 models run in eval mode, where a dropout is the identity.
    fn passes_codes(&self) -> bool {
        true
    }
}

/// `x` with a seeded inverted-dropout mask applied: each value zeroed with probability `p`, the
/// others scaled by `1 / (1 - p)`.
pub fn dropout(x: &Tensor, p: f64, seed: u64, step: u64, layer: u64) -> Result<Tensor> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(layer + 1);
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < p {
                0.0
            } else {
                keep as f32
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}
