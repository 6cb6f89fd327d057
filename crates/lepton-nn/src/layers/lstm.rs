//! `lstm`: long short-term memory (PyTorch's `nn.LSTM`), over `[T, F]`; settings, shapes and
//! parameters in `recurrent.rs`.
//!
//! One step, gates in PyTorch's order `i, f, g, o` (rows of the weights):
//! `i = σ(·), f = σ(·), g = tanh(·), o = σ(·)`, `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`.

use candle_core::Result;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::recurrent::{Cell, RecurrentConfig};
use super::{BuildCtx, Layer, LayerConfig, ShapeCtx, Values};

/// The `lstm` settings (see [`RecurrentConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LstmConfig(pub RecurrentConfig);

impl LayerConfig for LstmConfig {
    fn kind(&self) -> &'static str {
        "lstm"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        self.0.output_shape(Cell::Lstm, x, ctx)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        self.0.values(Cell::Lstm, x, ctx)
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("hidden-size")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        self.0.build(Cell::Lstm, x, vb)
    }
}
