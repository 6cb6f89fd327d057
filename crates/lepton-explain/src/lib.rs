//! Explanations for Lepton models: which parts of an input a prediction rests on, and what the
//! layers in between see.
//!
//! | module | what |
//! |---|---|
//! | [`scorer`] | [`Scorer`]: the batched, differentiable forward pass the methods call |
//! | [`explainer`] | [`Explainer`]: a loaded model with its piecewise net compiled once |
//! | [`saliency`](mod@saliency) | `|∂y/∂x|` and gradient × input |
//! | [`integrated_gradients`](mod@integrated_gradients) | path integral from a [`Baseline`], Gauss-Legendre or trapezoid, batched steps, completeness check |
//! | [`occlusion`](mod@occlusion) | sliding-window occlusion, batched |
//! | [`kernel_shap`](mod@kernel_shap) | Shapley values of tabular features against a background sample |
//! | [`permutation`] | permutation importance on a dataset |
//! | [`feature_maps`](mod@feature_maps) | a layer's output for one input |
//! | [`request`] | [`ExplainRequest`]: a method and its parameters, checked against [`Limits`], then run |
//! | [`heatmap`] | PNG overlays and feature-map grids on perceptual colormaps |
//! | [`attribution`] | [`Attribution`], [`Method`]: the answer every method returns |
//! | [`error`] | [`Error`], [`Result`] |
//!
//! Every method takes one sample (the model's per-sample shape) and a target output; the gradient
//! methods need lepton-nn's kernels to differentiate the input, which they do through frozen
//! weights without computing weight gradients, and a model made of convolutions, linear layers,
//! batch norms, ReLUs and max-pools runs as a [`lepton_nn::kernels::PiecewiseNet`]
//! ([`Scorer::piecewise_net`]): no autograd graph at all; an [`Explainer`] compiles it once per
//! loaded model.

pub mod attribution;
pub mod error;
pub mod explainer;
pub mod feature_maps;
pub mod heatmap;
pub mod integrated_gradients;
pub mod kernel_shap;
pub mod occlusion;
pub mod permutation;
pub mod request;
pub mod saliency;
pub mod scorer;

pub use attribution::{Attribution, Method};
pub use error::{Error, Result};
pub use explainer::Explainer;
pub use feature_maps::{feature_maps, resolve_layer, FeatureMaps};
pub use integrated_gradients::{integrated_gradients, quadrature, Baseline, IgConfig, Rule};
pub use kernel_shap::{kernel_shap, KernelShapConfig};
pub use occlusion::{occlusion, OcclusionConfig};
pub use permutation::{permutation_importance, PermutationConfig};
pub use request::{predicted, BaselineKind, ExplainRequest, Limits};
pub use saliency::saliency;
pub use scorer::{FnScorer, Scorer};
