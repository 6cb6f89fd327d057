//! The fusion pass over built layers: a ReLU right after a linear layer, a convolution or a batch
//! norm is computed inside that layer's kernel, and so is a max-pool right after a convolution or
//! a batch norm (or after its folded ReLU): one pass and one tensor less each, forward and
//! backward. A folded layer is replaced by a [`Folded`] identity, so layer indices, and with them
//! parameter names, do not change. Layers take part through [`Layer::foldable`] and
//! [`Layer::fold`]; this pass knows no layer type. An embedding's lookup folds forward into the
//! layer after it when that layer can use the table directly ([`Layer::fold_lookup`]: a
//! recurrent layer projects the table once instead of every token); the embedding then passes
//! the token ids through ([`TokenIds`]). Last, an int8 layer that writes codes and the int8
//! layer that reads them agree on height × width × channels order when both can
//! ([`Layer::hwc_codes_out`], [`Layer::take_hwc_codes`]).

use candle_core::{Result, Tensor};

use super::{Ctx, Fold, Layer};
use crate::kernels::Piece;

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

    fn passes_codes(&self) -> bool {
        true
    }

    /// Nothing: the producer's pieces hold the folded operation.
    fn pieces(&self) -> Result<Option<Vec<crate::kernels::Piece>>> {
        Ok(Some(Vec::new()))
    }
}

/// An `embedding` whose lookup the layer after it computes: passes the token ids through.
#[derive(Debug, Clone, Copy)]
pub struct TokenIds;

impl Layer for TokenIds {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        Ok(x.clone())
    }
}

/// Fold every foldable layer into the one before it, ReLUs first, then max-pools (which may
/// pass over their producer's folded ReLU); then embeddings' lookups into the layer after them.
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
    // After the ReLUs and pools, so that the batch norm carries them: in eval mode the
    // convolution before it computes the whole block.
    for i in 1..layers.len() {
        let Some(norm) = layers[i].eval_norm() else {
            continue;
        };
        if layers[i - 1].absorb_eval_norm(&norm) {
            layers[i].set_eval_absorbed();
        }
    }
    // Codes handed from one int8 layer to the next in height × width × channels order when
    // the reader can take them so (no transposition on either side).
    for i in 0..layers.len() {
        let Some(chw) = layers[i].hwc_codes_out() else {
            continue;
        };
        let Some(j) = (i + 1..layers.len()).find(|&j| !layers[j].passes_codes()) else {
            continue;
        };
        if layers[j].take_hwc_codes(chw) {
            layers[i].set_hwc_codes_out();
        }
    }
    for i in 1..layers.len() {
        let Some(table) = layers[i - 1].lookup_table().cloned() else {
            continue;
        };
        if layers[i].fold_lookup(&table) {
            layers[i - 1] = Box::new(TokenIds);
        }
    }
}

/// The pieces of a ReLU and a max-pool `(kernel, stride, padding)` folded into a layer.
pub(super) fn fold_pieces(relu: bool, pool: Option<(usize, usize, usize)>) -> Vec<Piece> {
    let mut p = Vec::new();
    if relu {
        p.push(Piece::Relu);
    }
    if let Some((kernel, stride, padding)) = pool {
        p.push(Piece::MaxPool {
            kernel,
            stride,
            padding,
        });
    }
    p
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::layers::BuildCtx;
    use crate::ModelSpec;

    /// What each built layer of `layers` became: `None` for a layer that runs, the fold otherwise.
    fn folds(layers: &str, input: &[usize]) -> Vec<Option<Fold>> {
        let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let built = BuildCtx::default()
            .build_all(&spec.layers, input, &vb)
            .unwrap();
        built.iter().map(|l| l.folded()).collect()
    }

    #[test]
    fn relus_and_max_pools_fold_into_the_layer_that_can_compute_them() {
        let pool = Some(Fold::MaxPool(2, 2, 0));
        let relu = Some(Fold::Relu);
        let conv = r#"{ type = "conv2d", out-channels = 2, kernel = 3, padding = 1 }"#;
        let cases = [
            // conv + bn + relu + pool: the batch norm computes the ReLU and the pool.
            (
                format!(r#"{conv}, {{ type = "batch-norm2d" }}, {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }}"#),
                vec![None, None, relu, pool],
            ),
            (
                format!(r#"{conv}, {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }}"#),
                vec![None, relu, pool],
            ),
            // A pool before the ReLU: the ReLU runs on its own.
            (
                format!(r#"{conv}, {{ type = "max-pool2d", kernel = 2 }}, {{ type = "relu" }}"#),
                vec![None, pool, None],
            ),
            // Nothing folds into an average pool, nor a second pool into a first.
            (
                r#"{ type = "avg-pool2d", kernel = 1 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 }"#.into(),
                vec![None, None, None],
            ),
            (
                format!(r#"{conv}, {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }}, {{ type = "max-pool2d", kernel = 2 }}"#),
                vec![None, relu, pool, None],
            ),
            // linear + relu; a second ReLU runs.
            (
                r#"{ type = "flatten" }, { type = "linear", out-features = 3 }, { type = "relu" }, { type = "relu" }"#.into(),
                vec![None, None, relu, None],
            ),
        ];
        for (layers, want) in cases {
            assert_eq!(folds(&layers, &[2, 8, 8]), want, "{layers}");
        }
    }

    #[test]
    fn the_pass_runs_inside_residual_blocks() {
        let spec: ModelSpec = toml::from_str(
            r#"layers = [{ type = "residual", layers = [{ type = "linear", out-features = 4 }, { type = "relu" }] }]"#,
        )
        .unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let built = BuildCtx::default()
            .build_all(&spec.layers, &[4], &vb)
            .unwrap();
        let debug = format!("{built:?}");
        assert!(
            debug.contains("Folded(Relu)") && debug.contains("act: Relu"),
            "{debug}"
        );
    }
}
