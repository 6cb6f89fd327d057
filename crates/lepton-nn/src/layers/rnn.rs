//! `rnn`: the Elman recurrent layer with tanh (PyTorch's `nn.RNN`, `nonlinearity = "tanh"`),
//! over `[T, F]`; settings, shapes and parameters in `recurrent.rs`.
//!
//! One step: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.

use candle_core::Result;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::recurrent::{Cell, RecurrentConfig};
use super::{BuildCtx, Layer, LayerConfig, ShapeCtx, Values};

/// The `rnn` settings (see [`RecurrentConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RnnConfig(pub RecurrentConfig);

impl LayerConfig for RnnConfig {
    fn kind(&self) -> &'static str {
        "rnn"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        self.0.output_shape(Cell::Rnn, x, ctx)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        self.0.values(Cell::Rnn, x, ctx)
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("hidden-size")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        self.0.build(Cell::Rnn, x, vb)
    }
}
