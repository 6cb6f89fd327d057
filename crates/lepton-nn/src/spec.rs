//! The `[model]` section: a sequence of layers, and shape inference over it.
//!
//! Shapes are per sample (no batch dimension): `[C, H, W]` for images, `[F]` for features.

use serde::{Deserialize, Serialize};

use crate::budget::{self, Budget};
use crate::error::{Error, Result};
use crate::layers::{
    AvgPool2dConfig, BatchNorm1dConfig, BatchNorm2dConfig, Conv2dConfig, DropoutConfig,
    EmbeddingConfig, Flatten, Gelu, GlobalAvgPool, GruConfig, LayerConfig, LayerNormConfig,
    LeakyReluConfig, LinearConfig, LstmConfig, MaxPool2dConfig, Relu, ResidualConfig,
    RmsNormConfig, RnnConfig, ShapeCtx, Sigmoid, Softmax, Tanh,
};
use crate::layers::{Conv2dInt8Config, LinearInt8Config};
use crate::layers::{
    MultiHeadAttentionConfig, PositionalEmbeddingConfig, SequencePoolConfig, TransformerBlockConfig,
};

/// One layer. `type` selects the variant; the other keys are its settings, documented on each
/// config type (in `layers/`). This enum only dispatches: [`LayerSpec::config`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `y = x Wᵀ + b` on the last dimension.
    Linear(LinearConfig),
    /// 2-D convolution over `[C, H, W]`.
    Conv2d(Conv2dConfig),
    /// Max pooling over `[C, H, W]`.
    MaxPool2d(MaxPool2dConfig),
    /// Average pooling over `[C, H, W]`.
    AvgPool2d(AvgPool2dConfig),
    /// Mean over the spatial dimensions: `[C, H, W]` -> `[C]`.
    GlobalAvgPool {},
    /// Batch norm over `[F]` features.
    BatchNorm1d(BatchNorm1dConfig),
    /// Batch norm over the channels of `[C, H, W]`.
    BatchNorm2d(BatchNorm2dConfig),
    /// Layer norm over the last dimension.
    LayerNorm(LayerNormConfig),
    /// Inverted dropout (training only).
    Dropout(DropoutConfig),
    /// `[d1, d2, ...]` -> `[d1 * d2 * ...]`.
    Flatten {},
    /// `y = x + f(x)` where `f` is the inner layers.
    Residual(ResidualConfig),
    Relu {},
    LeakyRelu(LeakyReluConfig),
    /// The exact (erf) GELU, as PyTorch's default.
    Gelu {},
    Sigmoid {},
    Tanh {},
    /// Softmax over the last dimension.
    Softmax {},
    /// RMS norm over the last dimension.
    RmsNorm(RmsNormConfig),
    /// Token ids to vectors: `[...]` -> `[..., embedding-dim]`.
    Embedding(EmbeddingConfig),
    /// Long short-term memory over `[T, F]` (PyTorch's `nn.LSTM`).
    Lstm(LstmConfig),
    /// Gated recurrent unit over `[T, F]` (PyTorch's `nn.GRU`).
    Gru(GruConfig),
    /// Elman RNN with tanh over `[T, F]` (PyTorch's `nn.RNN`).
    Rnn(RnnConfig),
    /// Self-attention over `[T, D]` (nanoGPT's `CausalSelfAttention`).
    MultiHeadAttention(MultiHeadAttentionConfig),
    /// Adds a learned or sinusoidal position table to `[T, D]`.
    PositionalEmbedding(PositionalEmbeddingConfig),
    /// A pre-norm transformer block over `[T, D]` (nanoGPT's `Block`).
    TransformerBlock(TransformerBlockConfig),
    /// `[T, D]` -> `[D]`: last, mean or max over positions.
    SequencePool(SequencePoolConfig),
    /// `linear` with int8 weights (written by `lepton compress`).
    LinearInt8(LinearInt8Config),
    /// `conv2d` with int8 weights (written by `lepton compress`).
    Conv2dInt8(Conv2dInt8Config),
}

impl LayerSpec {
    /// The layer's config: its shape rule, size and builder.
    pub fn config(&self) -> &dyn LayerConfig {
        match self {
            LayerSpec::Linear(c) => c,
            LayerSpec::Conv2d(c) => c,
            LayerSpec::MaxPool2d(c) => c,
            LayerSpec::AvgPool2d(c) => c,
            LayerSpec::GlobalAvgPool {} => &GlobalAvgPool,
            LayerSpec::BatchNorm1d(c) => c,
            LayerSpec::BatchNorm2d(c) => c,
            LayerSpec::LayerNorm(c) => c,
            LayerSpec::Dropout(c) => c,
            LayerSpec::Flatten {} => &Flatten,
            LayerSpec::Residual(c) => c,
            LayerSpec::Relu {} => &Relu,
            LayerSpec::LeakyRelu(c) => c,
            LayerSpec::Gelu {} => &Gelu,
            LayerSpec::Sigmoid {} => &Sigmoid,
            LayerSpec::Tanh {} => &Tanh,
            LayerSpec::Softmax {} => &Softmax,
            LayerSpec::RmsNorm(c) => c,
            LayerSpec::Embedding(c) => c,
            LayerSpec::Lstm(c) => c,
            LayerSpec::Gru(c) => c,
            LayerSpec::Rnn(c) => c,
            LayerSpec::MultiHeadAttention(c) => c,
            LayerSpec::PositionalEmbedding(c) => c,
            LayerSpec::TransformerBlock(c) => c,
            LayerSpec::SequencePool(c) => c,
            LayerSpec::LinearInt8(c) => c,
            LayerSpec::Conv2dInt8(c) => c,
        }
    }

    /// The kebab-case type name, for messages.
    pub fn kind(&self) -> &'static str {
        self.config().kind()
    }

    /// The output shape for per-sample input shape `x`, or why the layer cannot take it (the
    /// error names the layer as `model.layers[0]`), within the default [`Budget`].
    pub fn output_shape(&self, x: &[usize]) -> Result<Vec<usize>> {
        let shapes = ShapeCtx::new(&Budget::default()).layers(std::slice::from_ref(self), x, "")?;
        Ok(shapes.into_iter().next().expect("one layer"))
    }
}

/// The `[model]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelSpec {
    /// Per-sample input shape; filled from the data when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<usize>>,
    pub layers: Vec<LayerSpec>,
}

impl ModelSpec {
    /// `int8` when a layer holds int8 weights (`linear-int8`, `conv2d-int8`), else `f32`.
    pub fn precision(&self) -> &'static str {
        let int8 = self
            .layers
            .iter()
            .any(|l| matches!(l, LayerSpec::LinearInt8(_) | LayerSpec::Conv2dInt8(_)));
        if int8 {
            "int8"
        } else {
            "f32"
        }
    }

    /// The shape after each layer (top-level layers only), or an error naming the first layer that
    /// cannot take its input.
    ///
    /// Sizes are checked against the default [`Budget`] (see [`ModelSpec::shapes_within`]).
    pub fn shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        self.shapes_within(input, &Budget::default())
    }

    /// [`ModelSpec::shapes`] with an explicit budget: every size is computed with checked
    /// arithmetic, and the values in the model's tensors and the activation values per sample are
    /// compared with `budget` before anything is allocated. An error names the layer, the field
    /// and the numbers.
    pub fn shapes_within(&self, input: &[usize], budget: &Budget) -> Result<Vec<Vec<usize>>> {
        Ok(self.check(input, budget)?.0)
    }

    fn check(&self, input: &[usize], budget: &Budget) -> Result<(Vec<Vec<usize>>, u64)> {
        if self.layers.is_empty() {
            return Err(Error::Spec("needs at least one layer".into()));
        }
        if let Some(declared) = &self.input {
            if declared.as_slice() != input {
                return Err(Error::Spec(format!(
                    "model.input is {declared:?} but the data gives samples of shape {input:?}"
                )));
            }
        }
        if input.is_empty() || input.contains(&0) {
            return Err(Error::Spec(format!(
                "input shape {input:?} must be non-empty with no zero dimension"
            )));
        }
        if budget::elements(input).is_none_or(|n| n > budget.max_activations) {
            return Err(Error::Spec(format!(
                "input shape {input:?} has more than {} values per sample",
                budget.max_activations
            )));
        }
        let mut ctx = ShapeCtx::new(budget);
        let shapes = ctx.layers(&self.layers, input, "")?;
        Ok((shapes, ctx.totals.trainable))
    }

    /// The number of trainable values (buffers such as running statistics excluded), computed
    /// from the spec without allocating; the spec must fit the default [`Budget`].
    pub fn parameter_count(&self, input: &[usize]) -> Result<u64> {
        Ok(self.check(input, &Budget::default())?.1)
    }

    /// The output shape per sample.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shapes(input)?.pop().expect("at least one layer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ModelSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn lenet_shapes() {
        let m = spec(
            r#"layers = [
            { type = "conv2d", out-channels = 32, kernel = 3 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
            { type = "conv2d", out-channels = 64, kernel = 3 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
            { type = "flatten" }, { type = "linear", out-features = 128 }, { type = "relu" }, { type = "linear", out-features = 10 }]"#,
        );
        let s = m.shapes(&[1, 28, 28]).unwrap();
        assert_eq!(s[2], vec![32, 13, 13]);
        assert_eq!(s[6], vec![1600]);
        assert_eq!(s[9], vec![10]);
    }

    #[test]
    fn impossible_shapes_name_the_layer_and_the_shapes() {
        let m = spec(
            r#"layers = [{ type = "flatten" }, { type = "linear", out-features = 10, in-features = 700 }]"#,
        );
        let e = m.shapes(&[1, 28, 28]).unwrap_err().to_string();
        assert!(
            e.contains("model.layers[1] (linear)") && e.contains("700") && e.contains("784"),
            "{e}"
        );
        let m = spec(r#"layers = [{ type = "conv2d", out-channels = 4, kernel = 9 }]"#);
        let e = m.shapes(&[1, 5, 5]).unwrap_err().to_string();
        assert!(
            e.contains("layers[0] (conv2d)") && e.contains("larger"),
            "{e}"
        );
        let m = spec(r#"layers = [{ type = "conv2d", out-channels = 4, kernel = 1, groups = 3 }]"#);
        assert!(m
            .shapes(&[4, 5, 5])
            .unwrap_err()
            .to_string()
            .contains("groups"));
        let m = spec(
            r#"layers = [{ type = "residual", layers = [{ type = "linear", out-features = 3 }] }]"#,
        );
        let e = m.shapes(&[4]).unwrap_err().to_string();
        assert!(
            e.contains("layers[0] (residual)") && e.contains("[3]"),
            "{e}"
        );
        let m = spec(r#"layers = [{ type = "dropout", p = 1.5 }]"#);
        assert!(m.shapes(&[4]).unwrap_err().to_string().contains("p = 1.5"));
    }

    #[test]
    fn huge_out_features_is_a_size_error_naming_the_field_and_the_numbers() {
        let m = spec(
            r#"layers = [{ type = "flatten" }, { type = "linear", out-features = 1000000000000 }]"#,
        );
        let e = m.shapes(&[1, 28, 28]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Size {
                    field: "out-features",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("model.layers[1].out-features (linear)")
                && e.contains("785000000000000")
                && e.contains(&crate::budget::DEFAULT_MAX_PARAMETERS.to_string()),
            "{e}"
        );
        // So large that the weight count overflows 64 bits.
        let m = spec(&format!(
            r#"layers = [{{ type = "linear", out-features = {} }}]"#,
            u64::MAX / 2
        ));
        let e = m.shapes(&[4]).unwrap_err().to_string();
        assert!(
            e.contains("model.layers[0].out-features") && e.contains("overflow"),
            "{e}"
        );
    }

    #[test]
    fn huge_kernels_paddings_and_channels_are_errors_not_overflows() {
        let huge = u64::MAX / 2;
        for (layer, want) in [
            (
                format!(
                    r#"{{ type = "conv2d", out-channels = 2, kernel = {huge}, dilation = 3 }}"#
                ),
                "overflows",
            ),
            (
                format!(r#"{{ type = "conv2d", out-channels = 2, kernel = 3, padding = {huge} }}"#),
                "overflows",
            ),
            (
                format!(r#"{{ type = "max-pool2d", kernel = 2, padding = {huge} }}"#),
                "padding",
            ),
            (
                format!(r#"{{ type = "conv2d", out-channels = {huge}, kernel = 1 }}"#),
                "out-channels",
            ),
            (
                r#"{ type = "conv2d", out-channels = 8, kernel = 100000 }"#.to_string(),
                "larger",
            ),
            (
                r#"{ type = "conv2d", out-channels = 100000000, kernel = 3, padding = 1 }"#
                    .to_string(),
                "layers[0].out-channels",
            ),
        ] {
            let m = spec(&format!("layers = [{layer}]"));
            let e = m.shapes(&[3, 28, 28]).unwrap_err().to_string();
            assert!(
                e.contains("model.layers[0]") && e.contains(want),
                "{layer}: {e}"
            );
        }
    }

    #[test]
    fn activations_per_sample_are_checked_against_the_budget() {
        let budget = Budget::default().with_max_activations(1000);
        let m = spec(r#"layers = [{ type = "linear", out-features = 2000 }]"#);
        let e = m.shapes_within(&[4], &budget).unwrap_err().to_string();
        assert!(
            e.contains("model.layers[0].out-features (linear)")
                && e.contains("2000")
                && e.contains("1000"),
            "{e}"
        );
        // Shape-keeping layers count too: 600 + 600 > 1000 at the ReLU.
        let m = spec(r#"layers = [{ type = "linear", out-features = 600 }, { type = "relu" }]"#);
        let e = m.shapes_within(&[4], &budget).unwrap_err().to_string();
        assert!(
            e.contains("model.layers[1] (relu)") && e.contains("1200"),
            "{e}"
        );
        assert!(m.shapes_within(&[4], &Budget::default()).is_ok());
        // The per-sample input itself.
        let e = m.shapes(&[usize::MAX, 2]).unwrap_err().to_string();
        assert!(e.contains("input shape"), "{e}");
        let e = spec(r#"layers = [{ type = "flatten" }]"#)
            .shapes(&[1 << 20, 1 << 20])
            .unwrap_err()
            .to_string();
        assert!(e.contains("input shape"), "{e}");
    }

    #[test]
    fn nan_and_out_of_range_settings_are_errors() {
        for (layer, input, want) in [
            (
                r#"{ type = "batch-norm1d", eps = nan }"#,
                vec![4],
                "eps = NaN",
            ),
            (
                r#"{ type = "batch-norm2d", eps = -1.0 }"#,
                vec![2, 3, 3],
                "eps = -1",
            ),
            (
                r#"{ type = "batch-norm1d", momentum = nan }"#,
                vec![4],
                "momentum = NaN",
            ),
            (
                r#"{ type = "layer-norm", eps = inf }"#,
                vec![4],
                "eps = inf",
            ),
            (r#"{ type = "rms-norm", eps = 0.0 }"#, vec![4], "eps = 0"),
            (r#"{ type = "dropout", p = nan }"#, vec![4], "p = NaN"),
            (
                r#"{ type = "leaky-relu", slope = nan }"#,
                vec![4],
                "slope = NaN",
            ),
        ] {
            let e = spec(&format!("layers = [{layer}]"))
                .shapes(&input)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("model.layers[0]") && e.contains(want),
                "{layer}: {e}"
            );
        }
    }

    #[test]
    fn parameter_count_comes_from_the_spec() {
        let m = spec(
            r#"layers = [{ type = "conv2d", out-channels = 4, kernel = 3 }, { type = "batch-norm2d" },
            { type = "flatten" }, { type = "linear", out-features = 100 },
            { type = "residual", layers = [{ type = "linear", out-features = 100 }] },
            { type = "linear", out-features = 3, bias = false }]"#,
        );
        // conv 4·1·9 + 4, bn 2·4 (running stats excluded), linear 400·100 + 100, residual linear
        // 100·100 + 100, linear 3·100.
        assert_eq!(
            m.parameter_count(&[1, 12, 12]).unwrap(),
            40 + 8 + 40_100 + 10_100 + 300
        );
    }

    #[test]
    fn unknown_keys_and_types_are_rejected() {
        assert!(
            toml::from_str::<ModelSpec>(r#"layers = [{ type = "linear", out-featurs = 3 }]"#)
                .is_err()
        );
        assert!(
            toml::from_str::<ModelSpec>(r#"layers = [{ type = "lineer", out-features = 3 }]"#)
                .is_err()
        );
    }

    /// The serde format (what specs and photons store) is the one of the struct-variant enum that
    /// preceded the per-layer configs, key for key.
    #[test]
    fn serde_format_of_every_layer_is_unchanged() {
        let m = spec(
            r#"layers = [
            { type = "conv2d", out-channels = 32, kernel = 3 }, { type = "batch-norm2d" },
            { type = "max-pool2d", kernel = 2 }, { type = "avg-pool2d", kernel = 3, stride = 1, padding = 1 },
            { type = "global-avg-pool" }, { type = "batch-norm1d", momentum = 0.2 }, { type = "layer-norm" },
            { type = "dropout", p = 0.5 }, { type = "flatten" }, { type = "linear", out-features = 10 },
            { type = "linear", out-features = 4, in-features = 10, bias = false },
            { type = "residual", layers = [{ type = "relu" }, { type = "leaky-relu" }] },
            { type = "gelu" }, { type = "sigmoid" }, { type = "tanh" }, { type = "softmax" }]"#,
        );
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"layers":[{"type":"conv2d","out-channels":32,"kernel":3,"stride":1,"padding":0,"dilation":1,"groups":1,"bias":true},"#,
                r#"{"type":"batch-norm2d","momentum":0.1,"eps":0.00001},{"type":"max-pool2d","kernel":2,"padding":0},"#,
                r#"{"type":"avg-pool2d","kernel":3,"stride":1,"padding":1},{"type":"global-avg-pool"},"#,
                r#"{"type":"batch-norm1d","momentum":0.2,"eps":0.00001},{"type":"layer-norm","eps":0.00001},"#,
                r#"{"type":"dropout","p":0.5},{"type":"flatten"},{"type":"linear","out-features":10,"bias":true},"#,
                r#"{"type":"linear","out-features":4,"in-features":10,"bias":false},"#,
                r#"{"type":"residual","layers":[{"type":"relu"},{"type":"leaky-relu","slope":0.01}]},"#,
                r#"{"type":"gelu"},{"type":"sigmoid"},{"type":"tanh"},{"type":"softmax"}]}"#
            )
        );
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), m);
        let toml = toml::to_string(&m).unwrap();
        assert_eq!(toml::from_str::<ModelSpec>(&toml).unwrap(), m);
        // Unknown keys are errors inside the per-layer configs, and on settings-free layers (which,
        // as unit variants, used to ignore them: `{ type = "relu", slope = 0.1 }` was a plain ReLU).
        for bad in [
            r#"{ type = "conv2d", out-channels = 2, kernel = 3, strides = 2 }"#,
            r#"{ type = "max-pool2d", kernel = 2, strid = 2 }"#,
            r#"{ type = "batch-norm2d", momentun = 0.1 }"#,
            r#"{ type = "residual", layers = [], extra = 1 }"#,
            r#"{ type = "relu", slope = 0.1 }"#,
            r#"{ type = "flatten", start-dim = 2 }"#,
        ] {
            assert!(
                toml::from_str::<ModelSpec>(&format!("layers = [{bad}]")).is_err(),
                "{bad}"
            );
        }
    }
}
