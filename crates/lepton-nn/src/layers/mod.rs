//! Layers built from [`LayerSpec`]s. Parameter names mirror PyTorch's `state_dict`
//! (`{prefix}.weight`, `{prefix}.bias`, `{prefix}.running_mean`, ...).

mod dropout;
mod norm;

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::kernels::{self, Activation, Conv2dParams};
use crate::spec::LayerSpec;

pub use dropout::dropout;
pub use norm::{BatchNorm, LayerNorm};

/// What a forward pass needs besides the input.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub train: bool,
    pub seed: u64,
    pub step: u64,
}

/// One built layer.
#[derive(Debug, Clone)]
pub enum Layer {
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
        /// The activation after this layer, computed in the same op (see [`fuse`]).
        act: Activation,
    },
    Conv2d {
        weight: Tensor,
        bias: Option<Tensor>,
        params: Conv2dParams,
        /// The ReLU after this layer is computed here (see [`fuse`]).
        relu: bool,
        /// The max-pool `(kernel, stride, padding)` after this layer (and its ReLU) is computed here.
        pool: Option<(usize, usize, usize)>,
    },
    MaxPool2d {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    AvgPool2d {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    GlobalAvgPool,
    BatchNorm(BatchNorm),
    LayerNorm(LayerNorm),
    Dropout {
        p: f64,
        id: u64,
    },
    Flatten,
    Residual(Vec<Layer>),
    Relu,
    LeakyRelu(f64),
    Gelu,
    Sigmoid,
    Tanh,
    Softmax,
    /// A ReLU computed by the layer before it (an identity here).
    FusedRelu,
    /// A max-pool computed by the convolution before it (an identity here).
    FusedPool,
}

/// Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for linear and conv layers; the
/// values are replaced by [`crate::init_seeded`] for reproducible training.
fn kaiming(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// Build the layers of `specs` for input shape `input` (per sample). `next_id` numbers dropout
/// layers for their seeds.
pub(crate) fn build(
    specs: &[LayerSpec],
    input: &[usize],
    vb: &VarBuilder,
    prefix: &str,
    next_id: &mut u64,
) -> Result<Vec<Layer>> {
    let shapes = crate::spec::shapes_of(specs, input, "")
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut x = input.to_vec();
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let vb = vb.pp(format!("{prefix}{i}"));
        let layer = match spec {
            LayerSpec::Linear {
                out_features, bias, ..
            } => {
                let fan_in = *x.last().expect("shapes checked");
                let weight =
                    vb.get_with_hints((*out_features, fan_in), "weight", kaiming(fan_in))?;
                let bias = if *bias {
                    Some(vb.get_with_hints(*out_features, "bias", kaiming(fan_in))?)
                } else {
                    None
                };
                Layer::Linear {
                    weight,
                    bias,
                    act: Activation::Identity,
                }
            }
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                let fan_in = x[0] / groups * kernel * kernel;
                let weight = vb.get_with_hints(
                    (*out_channels, x[0] / groups, *kernel, *kernel),
                    "weight",
                    kaiming(fan_in),
                )?;
                let bias = if *bias {
                    Some(vb.get_with_hints(*out_channels, "bias", kaiming(fan_in))?)
                } else {
                    None
                };
                Layer::Conv2d {
                    weight,
                    bias,
                    params: Conv2dParams {
                        stride: *stride,
                        padding: *padding,
                        dilation: *dilation,
                        groups: *groups,
                    },
                    relu: false,
                    pool: None,
                }
            }
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            } => Layer::MaxPool2d {
                kernel: *kernel,
                stride: stride.unwrap_or(*kernel),
                padding: *padding,
            },
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
            } => Layer::AvgPool2d {
                kernel: *kernel,
                stride: stride.unwrap_or(*kernel),
                padding: *padding,
            },
            LayerSpec::GlobalAvgPool => Layer::GlobalAvgPool,
            LayerSpec::BatchNorm1d { momentum, eps } | LayerSpec::BatchNorm2d { momentum, eps } => {
                Layer::BatchNorm(BatchNorm::new(x[0], *momentum, *eps, vb)?)
            }
            LayerSpec::LayerNorm { eps } => Layer::LayerNorm(LayerNorm::new(
                *x.last().expect("shapes checked"),
                *eps,
                vb,
            )?),
            LayerSpec::Dropout { p } => {
                *next_id += 1;
                Layer::Dropout {
                    p: *p,
                    id: *next_id,
                }
            }
            LayerSpec::Flatten => Layer::Flatten,
            LayerSpec::Residual { layers } => {
                Layer::Residual(build(layers, &x, &vb, "layers.", next_id)?)
            }
            LayerSpec::Relu => Layer::Relu,
            LayerSpec::LeakyRelu { slope } => Layer::LeakyRelu(*slope),
            LayerSpec::Gelu => Layer::Gelu,
            LayerSpec::Sigmoid => Layer::Sigmoid,
            LayerSpec::Tanh => Layer::Tanh,
            LayerSpec::Softmax => Layer::Softmax,
        };
        out.push(layer);
        x = shapes[i].clone();
    }
    fuse(&mut out);
    Ok(out)
}

/// A ReLU right after a linear layer, a convolution or a batch norm is computed inside that
/// layer's kernel, and so is a max-pool right after a convolution or a batch norm (or after its
/// fused ReLU): one pass and one tensor less each, forward and backward. The absorbed layers
/// become [`Layer::FusedRelu`] / [`Layer::FusedPool`]; layer indices, and so parameter names, do
/// not change.
fn fuse(layers: &mut [Layer]) {
    for i in 1..layers.len() {
        if !matches!(layers[i], Layer::Relu) {
            continue;
        }
        let fused = match &mut layers[i - 1] {
            Layer::Linear { act, .. } if *act == Activation::Identity => {
                *act = Activation::Relu;
                true
            }
            Layer::Conv2d { relu, .. } => {
                *relu = true;
                true
            }
            Layer::BatchNorm(bn) => {
                bn.fuse_relu();
                true
            }
            _ => false,
        };
        if fused {
            layers[i] = Layer::FusedRelu;
        }
    }
    for i in 1..layers.len() {
        let Layer::MaxPool2d {
            kernel,
            stride,
            padding,
        } = layers[i]
        else {
            continue;
        };
        let conv = if matches!(layers[i - 1], Layer::FusedRelu) && i >= 2 {
            i - 2
        } else {
            i - 1
        };
        // A FusedRelu between them must be this convolution's (or batch norm's) own ReLU.
        let fused = match &mut layers[conv] {
            Layer::Conv2d { relu, pool, .. } if pool.is_none() && (conv == i - 1 || *relu) => {
                *pool = Some((kernel, stride, padding));
                true
            }
            Layer::BatchNorm(bn) if !bn.fused().1 && (conv == i - 1 || bn.fused().0) => {
                bn.fuse_pool((kernel, stride, padding));
                true
            }
            _ => false,
        };
        if fused {
            layers[i] = Layer::FusedPool;
        }
    }
}

impl Layer {
    /// Forward over a batch `[B, ...]`.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        match self {
            Layer::Linear { weight, bias, act } => kernels::linear(x, weight, bias.as_ref(), *act),
            Layer::Conv2d {
                weight,
                bias,
                params,
                relu,
                pool,
            } => match pool {
                Some(pool) => kernels::conv2d_pool(x, weight, bias.as_ref(), *params, *relu, *pool),
                None => kernels::conv2d_act(x, weight, bias.as_ref(), *params, *relu),
            },
            Layer::MaxPool2d {
                kernel,
                stride,
                padding,
            } => kernels::max_pool2d(x, *kernel, *stride, *padding),
            Layer::AvgPool2d {
                kernel,
                stride,
                padding,
            } => kernels::avg_pool2d(x, *kernel, *stride, *padding),
            Layer::GlobalAvgPool => x.mean(D::Minus1)?.mean(D::Minus1),
            Layer::BatchNorm(bn) => bn.forward_t(x, ctx.train),
            Layer::LayerNorm(ln) => ln.forward(x),
            Layer::Dropout { p, id } => {
                if ctx.train {
                    dropout(x, *p, ctx.seed, ctx.step, *id)
                } else {
                    Ok(x.clone())
                }
            }
            Layer::Flatten => x.flatten_from(1),
            Layer::Residual(layers) => {
                let mut y = x.clone();
                for l in layers {
                    y = l.forward(&y, ctx)?;
                }
                x + y
            }
            Layer::Relu => kernels::relu(x),
            Layer::FusedRelu | Layer::FusedPool => Ok(x.clone()),
            Layer::LeakyRelu(s) => x.maximum(&(x * *s)?),
            Layer::Gelu => x.gelu_erf(),
            Layer::Sigmoid => candle_nn::ops::sigmoid(x),
            Layer::Tanh => x.tanh(),
            Layer::Softmax => candle_nn::ops::softmax(x, D::Minus1),
        }
    }
}

/// Lets a single layer be used as a plain candle module (eval mode).
impl Module for Layer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Layer::forward(
            self,
            x,
            &Ctx {
                train: false,
                seed: 0,
                step: 0,
            },
        )
    }
}
