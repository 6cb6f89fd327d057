//! The `[model]` section: a sequence of layers, and shape inference over it.
//!
//! Shapes are per sample (no batch dimension): `[C, H, W]` for images, `[F]` for features.

use serde::{Deserialize, Serialize};

use crate::budget::{self, Budget};
use crate::error::{Error, Result};

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn bn_momentum() -> f64 {
    0.1
}
fn eps() -> f64 {
    1e-5
}
fn slope() -> f64 {
    0.01
}

/// One layer. `type` selects the variant; the other keys are its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `y = x Wᵀ + b` on the last dimension. `in-features` is inferred; when given it must match.
    #[serde(rename_all = "kebab-case")]
    Linear {
        out_features: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_features: Option<usize>,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// 2-D convolution over `[C, H, W]`. Defaults: stride 1, padding 0, dilation 1, groups 1, bias.
    #[serde(rename_all = "kebab-case")]
    Conv2d {
        out_channels: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "one")]
        dilation: usize,
        #[serde(default = "one")]
        groups: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Max pooling; stride defaults to the kernel size.
    #[serde(rename_all = "kebab-case")]
    MaxPool2d {
        kernel: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
        #[serde(default)]
        padding: usize,
    },
    /// Average pooling (zero padding counted, as PyTorch's default); stride defaults to the kernel.
    #[serde(rename_all = "kebab-case")]
    AvgPool2d {
        kernel: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
        #[serde(default)]
        padding: usize,
    },
    /// Mean over the spatial dimensions: `[C, H, W]` -> `[C]`.
    GlobalAvgPool,
    /// Batch norm over `[F]` features. Momentum 0.1 and eps 1e-5 as PyTorch.
    #[serde(rename_all = "kebab-case")]
    BatchNorm1d {
        #[serde(default = "bn_momentum")]
        momentum: f64,
        #[serde(default = "eps")]
        eps: f64,
    },
    /// Batch norm over the channels of `[C, H, W]`.
    #[serde(rename_all = "kebab-case")]
    BatchNorm2d {
        #[serde(default = "bn_momentum")]
        momentum: f64,
        #[serde(default = "eps")]
        eps: f64,
    },
    /// Layer norm over the last dimension.
    #[serde(rename_all = "kebab-case")]
    LayerNorm {
        #[serde(default = "eps")]
        eps: f64,
    },
    /// Inverted dropout with probability `p` (training only).
    Dropout {
        p: f64,
    },
    /// `[d1, d2, ...]` -> `[d1 * d2 * ...]`.
    Flatten,
    /// `y = x + f(x)` where `f` is the inner layers; `f` must keep the shape.
    Residual {
        layers: Vec<LayerSpec>,
    },
    Relu,
    #[serde(rename_all = "kebab-case")]
    LeakyRelu {
        #[serde(default = "slope")]
        slope: f64,
    },
    /// The exact (erf) GELU, as PyTorch's default.
    Gelu,
    Sigmoid,
    Tanh,
    /// Softmax over the last dimension (do not put it before a cross-entropy loss, which applies
    /// its own).
    Softmax,
}

impl LayerSpec {
    /// The kebab-case type name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::MaxPool2d { .. } => "max-pool2d",
            LayerSpec::AvgPool2d { .. } => "avg-pool2d",
            LayerSpec::GlobalAvgPool => "global-avg-pool",
            LayerSpec::BatchNorm1d { .. } => "batch-norm1d",
            LayerSpec::BatchNorm2d { .. } => "batch-norm2d",
            LayerSpec::LayerNorm { .. } => "layer-norm",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Residual { .. } => "residual",
            LayerSpec::Relu => "relu",
            LayerSpec::LeakyRelu { .. } => "leaky-relu",
            LayerSpec::Gelu => "gelu",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Softmax => "softmax",
        }
    }

    /// The output shape for input shape `x`, or why the layer cannot take it.
    pub fn output_shape(&self, x: &[usize]) -> std::result::Result<Vec<usize>, String> {
        let need_image = |x: &[usize]| {
            if x.len() == 3 {
                Ok((x[0], x[1], x[2]))
            } else {
                Err(format!(
                    "expects an image [C, H, W], got {x:?} (add or remove a flatten?)"
                ))
            }
        };
        let pooled = |len: usize,
                      k: usize,
                      s: usize,
                      p: usize,
                      d: usize|
         -> std::result::Result<usize, String> {
            let span = (k - 1)
                .checked_mul(d)
                .and_then(|v| v.checked_add(1))
                .ok_or_else(|| format!("kernel {k} with dilation {d} overflows"))?;
            let padded = p
                .checked_mul(2)
                .and_then(|v| v.checked_add(len))
                .ok_or_else(|| format!("padding {p} overflows"))?;
            if padded < span {
                return Err(format!(
                    "kernel {k} (dilation {d}) is larger than the padded input size {padded}"
                ));
            }
            Ok((padded - span) / s + 1)
        };
        match self {
            LayerSpec::Linear {
                out_features,
                in_features,
                ..
            } => {
                let last = *x.last().ok_or("expects at least one dimension")?;
                if let Some(i) = in_features {
                    if *i != last {
                        return Err(format!("in-features = {i} but the input is {x:?}, whose last dimension is {last}"));
                    }
                }
                if *out_features == 0 {
                    return Err("out-features must be at least 1".into());
                }
                let mut y = x.to_vec();
                *y.last_mut().expect("checked non-empty") = *out_features;
                Ok(y)
            }
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => {
                let (c, h, w) = need_image(x)?;
                if *kernel == 0
                    || *stride == 0
                    || *dilation == 0
                    || *groups == 0
                    || *out_channels == 0
                {
                    return Err(
                        "kernel, stride, dilation, groups and out-channels must be at least 1"
                            .into(),
                    );
                }
                if c % groups != 0 || out_channels % groups != 0 {
                    return Err(format!("groups = {groups} must divide the input channels ({c}) and out-channels ({out_channels})"));
                }
                Ok(vec![
                    *out_channels,
                    pooled(h, *kernel, *stride, *padding, *dilation)?,
                    pooled(w, *kernel, *stride, *padding, *dilation)?,
                ])
            }
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            }
            | LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
            } => {
                let (c, h, w) = need_image(x)?;
                let s = stride.unwrap_or(*kernel);
                if *kernel == 0 || s == 0 {
                    return Err("kernel and stride must be at least 1".into());
                }
                if *padding > *kernel / 2 {
                    return Err(format!(
                        "padding {padding} must be at most half the kernel ({kernel})"
                    ));
                }
                Ok(vec![
                    c,
                    pooled(h, *kernel, s, *padding, 1)?,
                    pooled(w, *kernel, s, *padding, 1)?,
                ])
            }
            LayerSpec::GlobalAvgPool => Ok(vec![need_image(x)?.0]),
            LayerSpec::BatchNorm1d { momentum, .. } => {
                if x.len() != 1 {
                    return Err(format!(
                        "expects features [F], got {x:?} (use batch-norm2d for images)"
                    ));
                }
                check_momentum(*momentum)?;
                Ok(x.to_vec())
            }
            LayerSpec::BatchNorm2d { momentum, .. } => {
                need_image(x)?;
                check_momentum(*momentum)?;
                Ok(x.to_vec())
            }
            LayerSpec::LayerNorm { .. } => {
                if x.is_empty() {
                    return Err("expects at least one dimension".into());
                }
                Ok(x.to_vec())
            }
            LayerSpec::Dropout { p } => {
                if !(0.0..1.0).contains(p) {
                    return Err(format!("p = {p} must be in [0, 1)"));
                }
                Ok(x.to_vec())
            }
            LayerSpec::Flatten => Ok(vec![budget::elements(x)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("{x:?} has more elements than fit in memory"))?]),
            LayerSpec::Residual { .. } => {
                unreachable!("residual shapes are checked by ModelSpec::shapes")
            }
            LayerSpec::LeakyRelu { slope } if !(0.0..1.0).contains(slope) => {
                Err(format!("slope = {slope} must be in [0, 1)"))
            }
            _ => Ok(x.to_vec()),
        }
    }
}

impl LayerSpec {
    /// The values this layer allocates for input shape `x` (already accepted by
    /// [`LayerSpec::output_shape`]): `(trainable, buffers)`, or the field whose size overflows.
    /// Nested layers (residual) are counted by [`ModelSpec::shapes_within`].
    fn values(&self, x: &[usize]) -> std::result::Result<(u64, u64), &'static str> {
        let last = x.last().copied().unwrap_or(1);
        Ok(match self {
            LayerSpec::Linear {
                out_features, bias, ..
            } => {
                let w = budget::product(&[*out_features, last]).ok_or("out-features")?;
                let b = if *bias { *out_features as u64 } else { 0 };
                (w.checked_add(b).ok_or("out-features")?, 0)
            }
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                groups,
                bias,
                ..
            } => {
                let field = if kernel > out_channels {
                    "kernel"
                } else {
                    "out-channels"
                };
                let w = budget::product(&[*out_channels, x[0] / groups, *kernel, *kernel])
                    .ok_or(field)?;
                let b = if *bias { *out_channels as u64 } else { 0 };
                (w.checked_add(b).ok_or(field)?, 0)
            }
            LayerSpec::BatchNorm1d { .. } | LayerSpec::BatchNorm2d { .. } => {
                (2 * x[0] as u64, 2 * x[0] as u64)
            }
            LayerSpec::LayerNorm { .. } => (2 * last as u64, 0),
            _ => (0, 0),
        })
    }

    /// The setting that sets this layer's output size, named in budget errors.
    fn size_field(&self) -> Option<&'static str> {
        match self {
            LayerSpec::Linear { .. } => Some("out-features"),
            LayerSpec::Conv2d { .. } => Some("out-channels"),
            LayerSpec::MaxPool2d { .. } | LayerSpec::AvgPool2d { .. } => Some("padding"),
            _ => None,
        }
    }
}

fn check_momentum(m: f64) -> std::result::Result<(), String> {
    if (0.0..=1.0).contains(&m) {
        Ok(())
    } else {
        Err(format!("momentum = {m} must be in [0, 1]"))
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

    fn check(&self, input: &[usize], budget: &Budget) -> Result<(Vec<Vec<usize>>, Totals)> {
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
        let mut totals = Totals::default();
        let shapes = shapes_checked(&self.layers, input, "", budget, &mut totals)?;
        Ok((shapes, totals))
    }

    /// The number of trainable values (buffers such as running statistics excluded), computed
    /// from the spec without allocating; the spec must fit the default [`Budget`].
    pub fn parameter_count(&self, input: &[usize]) -> Result<u64> {
        Ok(self.check(input, &Budget::default())?.1.trainable)
    }

    /// The output shape per sample.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shapes(input)?.pop().expect("at least one layer"))
    }
}

/// Running totals of [`ModelSpec::shapes_within`].
#[derive(Debug, Default)]
struct Totals {
    trainable: u64,
    values: u64,
    activations: u64,
}

pub(crate) fn shapes_of(
    layers: &[LayerSpec],
    input: &[usize],
    prefix: &str,
) -> Result<Vec<Vec<usize>>> {
    shapes_checked(
        layers,
        input,
        prefix,
        &Budget::default(),
        &mut Totals::default(),
    )
}

fn shapes_checked(
    layers: &[LayerSpec],
    input: &[usize],
    prefix: &str,
    budget: &Budget,
    totals: &mut Totals,
) -> Result<Vec<Vec<usize>>> {
    let mut out = Vec::with_capacity(layers.len());
    let mut x = input.to_vec();
    for (i, layer) in layers.iter().enumerate() {
        let index = format!("{prefix}{i}");
        let y = match layer {
            LayerSpec::Residual { layers: inner } => {
                if inner.is_empty() {
                    return Err(Error::Layer {
                        index,
                        kind: "residual",
                        message: "needs at least one inner layer".into(),
                    });
                }
                let inner_shapes =
                    shapes_checked(inner, &x, &format!("{index}].layers["), budget, totals)?;
                let last = inner_shapes.last().expect("non-empty");
                if *last != x {
                    return Err(Error::Layer {
                        index,
                        kind: "residual",
                        message: format!("the inner layers turn {x:?} into {last:?}; a residual block must keep the shape"),
                    });
                }
                // The sum is one more activation of the block's shape.
                totals.activations = totals
                    .activations
                    .saturating_add(budget::elements(&x).unwrap_or(u64::MAX));
                if totals.activations > budget.max_activations {
                    return Err(Error::Layer {
                        index,
                        kind: "residual",
                        message: format!(
                            "the block's sum brings the activations to {} values per sample, over the budget of {}",
                            totals.activations, budget.max_activations
                        ),
                    });
                }
                x.clone()
            }
            _ => {
                let y = layer.output_shape(&x).map_err(|message| Error::Layer {
                    index: index.clone(),
                    kind: layer.kind(),
                    message,
                })?;
                let size_error = |field: &'static str, message: String| Error::Size {
                    index: index.clone(),
                    kind: layer.kind(),
                    field,
                    message,
                };
                let (trainable, buffers) = layer.values(&x).map_err(|field| {
                    size_error(
                        field,
                        format!("the weights for input {x:?} overflow 64 bits"),
                    )
                })?;
                totals.trainable = totals.trainable.saturating_add(trainable);
                totals.values = totals
                    .values
                    .saturating_add(trainable.saturating_add(buffers));
                let over = |message: String| match layer.size_field() {
                    Some(field) => size_error(field, message),
                    None => Error::Layer {
                        index: index.clone(),
                        kind: layer.kind(),
                        message,
                    },
                };
                if totals.values > budget.max_parameters {
                    return Err(over(format!(
                        "this layer's {} parameter values (input {x:?}, output {y:?}) bring the model to {}, over the budget of {}",
                        trainable + buffers, totals.values, budget.max_parameters
                    )));
                }
                let out = budget::elements(&y).unwrap_or(u64::MAX);
                totals.activations = totals.activations.saturating_add(out);
                if totals.activations > budget.max_activations {
                    return Err(over(format!(
                        "the output {y:?} ({out} values per sample) brings the activations to {} per sample, over the budget of {}",
                        totals.activations, budget.max_activations
                    )));
                }
                y
            }
        };
        out.push(y.clone());
        x = y;
    }
    Ok(out)
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
}
