//! The fusion pass over built layers: a ReLU right after a linear layer, a convolution or a batch
//! norm is computed inside that layer's kernel, and so is a max-pool right after a convolution or
//! a batch norm (or after its folded ReLU): one pass and one tensor less each, forward and
//! backward. A folded layer is replaced by a [`Folded`] identity, so layer indices, and with them
//! parameter names, do not change. Layers take part through [`Layer::foldable`] and
//! [`Layer::fold`]; this pass knows no layer type.

use candle_core::{Result, Tensor};

use super::{Ctx, Fold, Layer};

/// A layer computed by the layer before it (an identity here).
#[derive(Debug, Clone, Copy)]
pub struct Folded(pub Fold);

impl Layer for Folded {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn folded(&self) -> Option<Fold> {
        Some(self.0)
    }
}

/// Fold every foldable layer into the one before it, ReLUs first, then max-pools (which may
/// pass over their producer's folded ReLU).
pub fn fuse(layers: &mut [Box<dyn Layer>]) {
    for i in 1..layers.len() {
        if layers[i].foldable() == Some(Fold::Relu) && layers[i - 1].fold(Fold::Relu, false) {
            layers[i] = Box::new(Folded(Fold::Relu));
        }
    }
    for i in 1..layers.len() {
        let Some(pool @ Fold::MaxPool(..)) = layers[i].foldable() else {
            continue;
        };
        let (producer, after_relu) = if i >= 2 && layers[i - 1].folded() == Some(Fold::Relu) {
            (i - 2, true)
        } else {
            (i - 1, false)
        };
        if layers[producer].fold(pool, after_relu) {
            layers[i] = Box::new(Folded(pool));
        }
    }
}
