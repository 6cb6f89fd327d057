//! [`Explainer`]: a loaded model as the attribution methods see it, with its
//! [`PiecewiseNet`] compiled once and kept for the model's lifetime.
//!
//! Compiling the net copies and re-lays out every weight (a few hundred microseconds for the
//! MNIST CNN, as long as a whole saliency map). Whatever keeps a model loaded (lepton-photon's
//! loaded model, which the server keeps per served model; `lepton explain` over the rows of a
//! CSV) keeps an `Explainer` with it, and every explanation after the first reuses the net and
//! its scratch buffers.
//!
//! # Staleness
//! The net holds copies of the weights. It is kept only when they cannot change after it
//! ([`PiecewiseNet::frozen`]: no weight is a candle `Var`, as for a model loaded with
//! `VarBuilder::from_tensors`; candle never mutates a plain tensor). A model whose weights are
//! `Var`s (one being trained) gets a net compiled from its current weights on every call, as
//! [`lepton_nn::Model`] itself does. A reloaded model is a new model, with a new `Explainer`.

use std::borrow::Borrow;
use std::sync::{Arc, OnceLock};

use candle_core::Tensor;
use lepton_nn::kernels::PiecewiseNet;
use lepton_nn::Model;

use crate::scorer::Scorer;

/// A model (owned, shared or borrowed: anything that [`Borrow`]s a [`Model`]) and its
/// piecewise net, compiled on the first gradient method that needs it; see the module docs.
/// It is a [`Scorer`]: pass it to the methods (or [`crate::ExplainRequest::run`]) in place of
/// the model.
pub struct Explainer<M = Model> {
    model: M,
    /// `Some(None)`: the model is not a piecewise net (that does not change with its weights).
    net: OnceLock<Option<Arc<PiecewiseNet<f32>>>>,
}

impl<M: Borrow<Model>> Explainer<M> {
    /// An explainer for `model`; nothing is compiled until a gradient method runs.
    pub fn new(model: M) -> Self {
        Self {
            model,
            net: OnceLock::new(),
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.model.borrow()
    }

    /// The model back (the compiled net is dropped).
    pub fn into_inner(self) -> M {
        self.model
    }

    /// The kept net, when one was compiled and kept (for tests and diagnostics).
    pub fn kept_net(&self) -> Option<Arc<PiecewiseNet<f32>>> {
        self.net.get().cloned().flatten()
    }
}

impl<M: Borrow<Model> + Sync> Scorer for Explainer<M> {
    fn scores(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.model().scores(x)
    }

    /// The kept net; compiled on the first call, and kept when it is
    /// [`PiecewiseNet::frozen`] (or when the model is no piecewise net at all); a net of
    /// trainable weights is compiled anew on every call.
    fn piecewise_net(&self) -> Option<Arc<PiecewiseNet<f32>>> {
        if let Some(kept) = self.net.get() {
            return kept.clone();
        }
        let built = self.model().piecewise_net();
        if built.as_ref().is_some_and(|n| !n.frozen()) {
            return built;
        }
        // Two first calls at once may both compile; one net is kept, both are correct.
        self.net.get_or_init(|| built).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use lepton_nn::ModelSpec;

    fn spec() -> ModelSpec {
        toml::from_str(r#"layers = [{ type = "linear", out-features = 3 }, { type = "relu" }, { type = "linear", out-features = 2 }]"#).unwrap()
    }

    #[test]
    fn a_loaded_models_net_is_kept_and_a_training_models_is_not() {
        let vm = VarMap::new();
        let training = Model::new(
            &spec(),
            &[4],
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let tensors = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let loaded = Model::new(
            &spec(),
            &[4],
            VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
        )
        .unwrap();

        let e = Explainer::new(loaded);
        assert!(
            e.kept_net().is_none(),
            "nothing compiled before the first call"
        );
        let a = e.piecewise_net().expect("a piecewise model");
        assert!(a.frozen());
        assert!(
            Arc::ptr_eq(&a, &e.piecewise_net().unwrap()),
            "compiled twice"
        );
        assert!(Arc::ptr_eq(&a, &e.kept_net().unwrap()));

        let e = Explainer::new(&training);
        let a = e.piecewise_net().expect("a piecewise model");
        assert!(!a.frozen());
        assert!(
            e.kept_net().is_none(),
            "a net of trainable weights was kept"
        );
        assert!(!Arc::ptr_eq(&a, &e.piecewise_net().unwrap()));
    }
}
