//! `gru`: gated recurrent unit (PyTorch's `nn.GRU`), over `[T, F]`; settings, shapes and
//! parameters in `recurrent.rs`.
//!
//! One step, gates in PyTorch's order `r, z, n` (rows of the weights):
//! `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 - z) ⊙ n + z ⊙ h`.

use candle_core::Result;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::recurrent::{Cell, RecurrentConfig};
use super::{BuildCtx, Layer, LayerConfig, ShapeCtx, Values};

/// The `gru` settings (see [`RecurrentConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GruConfig(pub RecurrentConfig);

impl LayerConfig for GruConfig {
    fn kind(&self) -> &'static str {
        "gru"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        self.0.output_shape(Cell::Gru, x, ctx)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        self.0.values(Cell::Gru, x, ctx)
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("hidden-size")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        self.0.build(Cell::Gru, x, vb)
    }
}
