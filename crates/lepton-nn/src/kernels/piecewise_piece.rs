//! [`Piece`]: one eval-mode operation of a layer, as a layer describes itself to
//! [`super::PiecewiseNet::new`] (`Layer::pieces`).

use candle_core::Tensor;

use super::Conv2dParams;

/// One eval-mode operation of a layer, as a layer describes itself to [`super::PiecewiseNet::new`]
/// (`Layer::pieces`). Per-sample shapes; the batch dimension is implicit.
#[derive(Debug, Clone)]
pub enum Piece {
    /// `conv2d(x, weight) + bias` over `[C, H, W]`.
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        params: Conv2dParams,
    },
    /// `x·weightᵀ + bias` over the last dimension; `weight: [out, in]`.
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// `x·scale[c] + shift[c]` per channel (the first per-sample dimension): eval batch norm.
    Scale {
        scale: Vec<f64>,
        shift: Vec<f64>,
    },
    Relu,
    /// Max-pool `[C, H, W]`, padding `-inf`, first maximum (PyTorch).
    MaxPool {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// `[...] -> [product]`.
    Flatten,
}

impl Piece {
    /// The piece's name in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Piece::Conv { .. } => "conv",
            Piece::Linear { .. } => "linear",
            Piece::Scale { .. } => "scale",
            Piece::Relu => "relu",
            Piece::MaxPool { .. } => "max-pool",
            Piece::Flatten => "flatten",
        }
    }
}
