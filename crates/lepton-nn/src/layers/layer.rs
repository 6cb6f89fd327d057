//! [`Layer`]: a built layer (its tensors and its forward), and [`Fold`], what the fusion pass
//! (`fuse.rs`) may fold into the layer before it.

use std::fmt::Debug;

use candle_core::{Module, Result, Tensor};

use crate::kernels::Piece;

/// What a forward pass needs besides the input.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Training mode: batch statistics for batch norm, dropout on.
    pub train: bool,
    /// The model's seed, for dropout masks.
    pub seed: u64,
    /// The optimizer step, for dropout masks.
    pub step: u64,
}

impl Ctx {
    /// Evaluation mode.
    pub const EVAL: Ctx = Ctx {
        train: false,
        seed: 0,
        step: 0,
    };
}

/// An element-wise operation a layer may compute inside the kernel of the layer before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    Relu,
    /// A max-pool `(kernel, stride, padding)`.
    MaxPool(usize, usize, usize),
}

/// A built layer: its tensors (from a `VarBuilder` path) and its forward over a batch `[B, ...]`.
pub trait Layer: Debug + Send + Sync {
    /// Forward over a batch `[B, ...]`.
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor>;

    /// The operation this layer is, if the layer before it may compute it instead.
    fn foldable(&self) -> Option<Fold> {
        None
    }

    /// The operation this placeholder stands for, when the layer before computes it.
    fn folded(&self) -> Option<Fold> {
        None
    }

    /// Compute `op` (the layer after this one, or the one after this layer's own folded ReLU when
    /// `after_relu`) inside this layer's kernel; returns whether it did.
    fn fold(&mut self, op: Fold, after_relu: bool) -> bool {
        let _ = (op, after_relu);
        false
    }

    /// This layer in eval mode, with the operations folded into it, as the affine, ReLU and
    /// max-pool [`Piece`]s of a [`crate::kernels::PiecewiseNet`] (what explanations
    /// differentiate); `None` (the default) for any other layer.
    fn pieces(&self) -> Result<Option<Vec<Piece>>> {
        Ok(None)
    }

    /// A batch norm (with what is folded into it) that the layer before it may compute in eval
    /// mode, as [`crate::layers::BatchNorm`] (sharing its tensors); `None` (the default) for
    /// any other layer.
    fn eval_norm(&self) -> Option<super::BatchNorm> {
        None
    }

    /// Compute `norm` (the batch norm after this layer) inside this layer's kernel in eval
    /// mode; returns whether it did (the batch norm then passes its input through in eval mode).
    fn absorb_eval_norm(&mut self, norm: &super::BatchNorm) -> bool {
        let _ = norm;
        false
    }

    /// In eval mode, pass the input through: the layer before computes this one (a batch norm
    /// after [`Layer::absorb_eval_norm`]).
    fn set_eval_absorbed(&mut self) {}

    /// When this layer writes u8 codes (an int8 layer with `output-scale`) of an output
    /// `[C, H, W]` and could write them in height × width × channels order instead: that shape.
    /// The fusion pass then asks the int8 layer that reads them ([`Layer::take_hwc_codes`]).
    fn hwc_codes_out(&self) -> Option<[usize; 3]> {
        None
    }

    /// Write the codes in height × width × channels order (a `u8` tensor `[N, H, W, C]`): the
    /// layer that reads them agreed.
    fn set_hwc_codes_out(&mut self) {}

    /// Read u8 codes of a `[C, H, W]` activation (`chw`) stored in height × width × channels
    /// order from now on; returns whether this layer can (the default: no).
    fn take_hwc_codes(&mut self, chw: [usize; 3]) -> bool {
        let _ = chw;
        false
    }

    /// Whether this layer passes u8 codes through with their order unchanged (a flatten, a
    /// dropout, a folded layer), so that the codes' producer and reader may agree on an order
    /// across it.
    fn passes_codes(&self) -> bool {
        false
    }

    /// An `embedding`'s table `[num-embeddings, dim]`, which the layer after it may fold in.
    fn lookup_table(&self) -> Option<&Tensor> {
        None
    }

    /// Compute the lookup in `table` (the `embedding` before this layer) inside this layer,
    /// which then reads the token ids; returns whether it did.
    fn fold_lookup(&mut self, table: &Tensor) -> bool {
        let _ = table;
        false
    }
}

/// A single layer as a plain candle module (evaluation mode).
impl Module for dyn Layer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Layer::forward(self, x, &Ctx::EVAL)
    }
}
