//! Layers, models, losses and fast CPU kernels for Lepton, on candle.
//!
//! | module | what |
//! |---|---|
//! | [`budget`] | [`Budget`]: parameter and activation limits checked before allocation |
//! | [`spec`] | the `[model]` section: [`ModelSpec`], [`LayerSpec`] (dispatch to the layer configs), shape inference |
//! | [`layers`] | one file per layer: config, shape rule, `VarBuilder` builder, forward; the fusion pass |
//! | [`model`] | [`Model`]: the sequential model (`ModuleT`), seeded dropout |
//! | [`init`] | [`init_seeded`]: reproducible PyTorch-style initialisation |
//! | [`loss`](mod@loss) | [`LossSpec`], [`loss()`], output activations |
//! | [`kernels`] | CPU kernels as candle ops, tested against the plain candle ops |

pub mod budget;
pub mod error;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod model;
pub mod spec;

pub use budget::Budget;
pub use error::{Error, Result};
pub use init::{init_seeded, var_builder};
pub use loss::{activate, loss, LossSpec, OutputActivation};
pub use model::Model;
pub use spec::{LayerSpec, ModelSpec};
