//! The `[model]` section: a sequence of layers, and shape inference over it.
//!
//! Shapes are per sample (no batch dimension): `[C, H, W]` for images, `[F]` for features.

use serde::{Deserialize, Serialize};

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
            let span = d * (k - 1) + 1;
            if len + 2 * p < span {
                return Err(format!(
                    "kernel {k} (dilation {d}) is larger than the padded input size {}",
                    len + 2 * p
                ));
            }
            Ok((len + 2 * p - span) / s + 1)
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
                if 2 * padding > *kernel {
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
            LayerSpec::Flatten => Ok(vec![x.iter().product()]),
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
    pub fn shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
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
        shapes_of(&self.layers, input, "")
    }

    /// The output shape per sample.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shapes(input)?.pop().expect("at least one layer"))
    }
}

pub(crate) fn shapes_of(
    layers: &[LayerSpec],
    input: &[usize],
    prefix: &str,
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
                let inner_shapes = shapes_of(inner, &x, &format!("{index}].layers["))?;
                let last = inner_shapes.last().expect("non-empty");
                if *last != x {
                    return Err(Error::Layer {
                        index,
                        kind: "residual",
                        message: format!("the inner layers turn {x:?} into {last:?}; a residual block must keep the shape"),
                    });
                }
                x.clone()
            }
            _ => layer.output_shape(&x).map_err(|message| Error::Layer {
                index,
                kind: layer.kind(),
                message,
            })?,
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
