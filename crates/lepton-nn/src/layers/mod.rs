//! Layers, one file per layer (or family). Each file holds the layer's config (its keys in the
//! spec: serde, `deny_unknown_fields`, kebab-case, documented defaults), its shape rule, its
//! parameters built through a `VarBuilder` path that mirrors PyTorch's `state_dict`
//! (`layers.{i}.weight`, `layers.{i}.running_mean`, ...), and its forward.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | [`LayerConfig`] (shape rule, size, builder), [`ShapeCtx`], [`BuildCtx`] |
//! | `layer.rs` | [`Layer`] (a built layer's forward), [`Ctx`], [`Fold`] |
//! | `fuse.rs` | the pass that folds ReLUs and max-pools into the layer before them |
//! | `linear.rs` | `linear` |
//! | `conv2d.rs` | `conv2d` |
//! | `linear_int8.rs`, `conv2d_int8.rs` | `linear-int8`, `conv2d-int8` (compressed packages) |
//! | `pool.rs` | `max-pool2d`, `avg-pool2d`, `global-avg-pool` |
//! | `batch_norm.rs` | `batch-norm1d`, `batch-norm2d` |
//! | `layer_norm.rs` | `layer-norm` |
//! | `rms_norm.rs` | `rms-norm` |
//! | `embedding.rs` | `embedding` (token ids to vectors) |
//! | `positional.rs` | `positional-embedding` (learned, sinusoidal), RoPE |
//! | `attention.rs` | `multi-head-attention` |
//! | `transformer_block.rs` | `transformer-block` (pre-norm, GELU/SwiGLU MLP) |
//! | `sequence_pool.rs` | `sequence-pool` (`[T, D]` -> `[D]`) |
//! | `recurrent.rs` | the recurrent family's settings, shapes, parameters and time loop |
//! | `recurrent_cells.rs` | one time step of each cell (LSTM, GRU, RNN) |
//! | `lstm.rs`, `gru.rs`, `rnn.rs` | `lstm`, `gru`, `rnn` (their configs) |
//! | `dropout.rs` | `dropout` (seeded masks) |
//! | `flatten.rs` | `flatten` |
//! | `residual.rs` | `residual` |
//! | `activation.rs` | `relu`, `leaky-relu`, `gelu`, `sigmoid`, `tanh`, `softmax` |
//!
//! A new layer is a new file implementing [`LayerConfig`] and [`Layer`], plus its variant in
//! [`crate::LayerSpec`] and the line of [`crate::LayerSpec::config`] that returns it.

mod activation;
mod attention;
mod batch_norm;
mod config;
mod conv2d;
mod conv2d_int8;
mod dropout;
mod embedding;
mod flatten;
mod fuse;
mod gru;
mod layer;
mod layer_norm;
mod linear;
mod linear_int8;
mod lstm;
mod pool;
mod positional;
mod recurrent;
mod recurrent_cells;
mod residual;
mod rms_norm;
mod rnn;
mod sequence_pool;
mod transformer_block;

use candle_nn::Init;

pub use activation::{Gelu, LeakyRelu, LeakyReluConfig, Relu, Sigmoid, Softmax, Tanh};
pub use attention::{MultiHeadAttention, MultiHeadAttentionConfig};
pub use batch_norm::{BatchNorm, BatchNorm1dConfig, BatchNorm2dConfig, BatchNormConfig};
pub use config::{BuildCtx, LayerConfig, ShapeCtx, Values};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use conv2d_int8::{Conv2dInt8, Conv2dInt8Config};
pub use dropout::{dropout, Dropout, DropoutConfig};
pub use embedding::{Embedding, EmbeddingConfig};
pub use flatten::Flatten;
pub use fuse::{fuse, Folded};
pub use gru::GruConfig;
pub use layer::{Ctx, Fold, Layer};
pub use layer_norm::{LayerNorm, LayerNormConfig};
pub use linear::{Linear, LinearConfig};
pub use linear_int8::{LinearInt8, LinearInt8Config};
pub use lstm::LstmConfig;
pub use pool::{
    AvgPool2d, AvgPool2dConfig, GlobalAvgPool, MaxPool2d, MaxPool2dConfig, Pool2dConfig,
};
pub use positional::{
    rope, sinusoidal, PositionalEmbedding, PositionalEmbeddingConfig, PositionalKind,
};
pub use recurrent::{Cell, Recurrent, RecurrentConfig};
pub use residual::{Residual, ResidualConfig};
pub use rms_norm::{RmsNorm, RmsNormConfig};
pub use rnn::RnnConfig;
pub use sequence_pool::{SequencePool, SequencePoolConfig, SequencePoolMode};
pub use transformer_block::{MlpKind, NormKind, TransformerBlock, TransformerBlockConfig};

/// Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for linear and conv layers; the
/// values are replaced by [`crate::init_seeded`] for reproducible training.
fn kaiming(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// Serde default: 1.
fn one() -> usize {
    1
}

/// Serde default: `true`.
fn yes() -> bool {
    true
}

/// Serde default for norm epsilons: 1e-5.
fn eps() -> f64 {
    1e-5
}

/// A norm's `eps`: finite and > 0 (NaN, infinite, zero or negative values make NaN outputs).
fn check_eps(eps: f64, ctx: &ShapeCtx) -> crate::Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(ctx.error(format!("eps = {eps} must be finite and > 0")))
    }
}
