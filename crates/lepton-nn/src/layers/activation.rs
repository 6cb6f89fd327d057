//! Element-wise activations: `relu`, `leaky-relu`, `gelu` (exact erf form, PyTorch's default),
//! `sigmoid`, `tanh`, and `softmax` over the last dimension (do not put it before a
//! cross-entropy loss, which applies its own). They keep the shape and have no parameters; a
//! ReLU after a linear layer, convolution or batch norm is folded into it (see `fuse.rs`).

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Fold, Layer, LayerConfig, ShapeCtx};
use crate::kernels;

/// A settings-free activation that is its own config and its own built layer.
macro_rules! activation {
    ($(#[$m:meta])* $name:ident, $kind:literal, |$x:ident| $forward:expr $(, fold = $fold:expr)? $(, piece = $piece:expr)?) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl LayerConfig for $name {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn output_shape(&self, x: &[usize], _: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
                Ok(x.to_vec())
            }

            fn build(&self, _: &[usize], _: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
                Ok(Box::new($name))
            }
        }

        impl Layer for $name {
            fn forward(&self, $x: &Tensor, _: &Ctx) -> Result<Tensor> {
                $forward
            }
            $(
                fn foldable(&self) -> Option<Fold> {
                    Some($fold)
                }
            )?
            $(
                fn pieces(&self) -> Result<Option<Vec<kernels::Piece>>> {
                    Ok(Some(vec![$piece]))
                }
            )?
        }
    };
}

activation!(
    /// `max(x, 0)`.
    Relu, "relu", |x| kernels::relu(x), fold = Fold::Relu, piece = kernels::Piece::Relu
);
activation!(
    /// `x·Φ(x)`, the exact (erf) GELU.
    Gelu, "gelu", |x| x.gelu_erf()
);
activation!(
    /// `1 / (1 + e^-x)`.
    Sigmoid, "sigmoid", |x| candle_nn::ops::sigmoid(x)
);
activation!(
    /// `tanh(x)`.
    Tanh, "tanh", |x| x.tanh()
);
activation!(
    /// Softmax over the last dimension.
    Softmax, "softmax", |x| candle_nn::ops::softmax(x, D::Minus1)
);

fn slope() -> f64 {
    0.01
}

/// The `leaky-relu` settings: `max(x, slope·x)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LeakyReluConfig {
    /// The slope for negative inputs, in [0, 1). Default 0.01.
    #[serde(default = "slope")]
    pub slope: f64,
}

impl LayerConfig for LeakyReluConfig {
    fn kind(&self) -> &'static str {
        "leaky-relu"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.slope) {
            return Err(ctx.error(format!("slope = {} must be in [0, 1)", self.slope)));
        }
        Ok(x.to_vec())
    }

    fn build(&self, _: &[usize], _: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(LeakyRelu(self.slope)))
    }
}

/// A built `leaky-relu`.
#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu(f64);

impl Layer for LeakyRelu {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        x.maximum(&(x * self.0)?)
    }
}
